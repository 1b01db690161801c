//! Outside messages' HTML frame and attachments, and live new mail for an
//! open outside folder (JavaScript on): a Server-Sent Events stream fed by
//! IMAP IDLE on the outside server. The
//! page shows "new mail" when an `exists` event comes. Each IDLE lasts a
//! minute, then the next one starts, so a closed page is noticed within a
//! minute (the write fails) and its IMAP connection goes.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use mailcore::Core;
use mailcore::outside::{OutsideAccountId, OutsideError};
use serde::Deserialize;

use super::live::Slots;
use super::mail::{attachment_download, core_failure, html_frame, plain, session};

/// Open streams per local account: each holds an IMAP connection at the
/// provider, and providers limit those (Gmail allows 15).
const MAX_STREAMS_PER_ACCOUNT: usize = 4;
const WINDOW: Duration = Duration::from_secs(60);

static OPEN: Slots = Slots::new(MAX_STREAMS_PER_ACCOUNT);

#[derive(Deserialize)]
pub struct Q {
    a: i32,
    #[serde(default)]
    f: String,
}

pub async fn events(
    core: web::Data<Core>,
    outside: web::Data<app::outside::ssr::OutsideClient>,
    req: HttpRequest,
    q: web::Query<Q>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let s = match session(&core, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let login = match core
        .outside_login(s.account.id, OutsideAccountId(q.a), &s.csrf_token)
        .await
    {
        Ok(Some(l)) => l,
        Ok(None) => return plain(StatusCode::FORBIDDEN, "enter the account's password first"),
        Err(e) => return core_failure(e),
    };
    let Some(slot) = OPEN.take(s.account.id) else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many live outside folders open at once",
        );
    };
    let folder = if q.f.is_empty() {
        "INBOX".to_owned()
    } else {
        q.f.clone()
    };
    let client = outside.0.clone();
    // First an event that says the stream is up (pages and tests wait for
    // it), then one event per change, a comment per quiet minute.
    let stream = futures_util::stream::unfold((Some(slot), true), move |(slot, first)| {
        let client = client.clone();
        let login = login.clone();
        let folder = folder.clone();
        async move {
            let slot = slot?;
            if first {
                return Some((
                    Ok::<_, actix_web::Error>(Bytes::from_static(b"event: ready\ndata: 1\n\n")),
                    (Some(slot), false),
                ));
            }
            match client.wait_for_change(&login, &folder, WINDOW).await {
                Ok(Some(n)) => Some((
                    Ok(Bytes::from(format!("event: exists\ndata: {n}\n\n"))),
                    (Some(slot), false),
                )),
                Ok(None) => Some((
                    Ok(Bytes::from_static(b": still here\n\n")),
                    (Some(slot), false),
                )),
                Err(e) => {
                    let msg = match e {
                        OutsideError::Unsupported(m) => m,
                        other => other.to_string(),
                    };
                    let line = msg.replace(['\r', '\n'], " ");
                    // The error is the last event; the stream ends.
                    Some((
                        Ok(Bytes::from(format!("event: error\ndata: {line}\n\n"))),
                        (None, false),
                    ))
                }
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream)
}

#[derive(Deserialize)]
pub struct MsgQ {
    a: i32,
    f: String,
    id: String,
    #[serde(default)]
    images: u8,
    #[serde(default)]
    n: u32,
}

/// The raw message, read from the outside server for this session.
async fn outside_raw(
    core: &Core,
    outside: &app::outside::ssr::OutsideClient,
    req: &HttpRequest,
    q: &MsgQ,
) -> Result<Vec<u8>, HttpResponse> {
    use actix_web::http::StatusCode;
    let s = session(core, req).await?;
    let login = match core
        .outside_login(s.account.id, OutsideAccountId(q.a), &s.csrf_token)
        .await
    {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "enter the account's password first",
            ));
        }
        Err(e) => return Err(core_failure(e)),
    };
    outside
        .0
        .message(&login, &q.f, &mailcore::outside::MessageRef(q.id.clone()))
        .await
        .map_err(|e| match e {
            OutsideError::NotFound(m) => plain(StatusCode::NOT_FOUND, &format!("{m} not found")),
            other => plain(StatusCode::BAD_GATEWAY, &other.to_string()),
        })
}

/// `GET /outside/msg/body?a=&f=&id=&images=`: the HTML part, cleaned, in
/// the same sandboxed frame as local mail.
pub async fn body(
    core: web::Data<Core>,
    outside: web::Data<app::outside::ssr::OutsideClient>,
    req: HttpRequest,
    q: web::Query<MsgQ>,
) -> HttpResponse {
    match outside_raw(&core, &outside, &req, &q).await {
        Ok(raw) => html_frame(
            &mailcore::view::MessageView::parse(&raw)
                .html
                .unwrap_or_default(),
            q.images == 1,
        ),
        Err(r) => r,
    }
}

/// `GET /outside/msg/att?a=&f=&id=&n=`: one attachment, as a download.
pub async fn attachment(
    core: web::Data<Core>,
    outside: web::Data<app::outside::ssr::OutsideClient>,
    req: HttpRequest,
    q: web::Query<MsgQ>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    match outside_raw(&core, &outside, &req, &q).await {
        Ok(raw) => match mailcore::view::MessageView::attachment(&raw, q.n) {
            Some(a) => attachment_download(a),
            None => plain(StatusCode::NOT_FOUND, "no such attachment"),
        },
        Err(r) => r,
    }
}
