//! A folder as an mbox file, from the webmail: `GET /mail/export?f=` sends
//! it (streamed a page of messages at a time, so a large folder never sits
//! in memory whole; `&format=maildir` sends the folder, or without `f` the
//! whole account, as a Maildir zip, `mailcore::maildir`), and `POST /mail/import` adds an uploaded one, skipping
//! what the folder already has by Message-ID (`mailcore::mbox`). Larger
//! imports belong to `tern import`, which has no upload limit.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use mailcore::Core;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::mail::{
    FormError, content_disposition, core_failure, multipart, plain, session, too_big,
};

/// The largest mbox file the webmail takes.
pub const IMPORT_MAX: usize = 100 * 1024 * 1024;

#[derive(Deserialize)]
pub struct ExportQuery {
    /// The folder; none with `format=maildir` is the whole account.
    #[serde(default)]
    f: Option<String>,
    /// `mbox` (the default) or `maildir` (a zip).
    #[serde(default)]
    format: Option<String>,
}

/// The zip's file name: the folder's (or "mail"), safe in a header.
fn zip_name(folder: Option<&str>) -> String {
    let base: String = folder
        .unwrap_or("mail")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}.maildir.zip")
}

/// A body streamed from a task that sends chunks.
fn streamed(
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|c| (Ok::<_, actix_web::Error>(web::Bytes::from(c)), rx))
    })
}

pub async fn export(
    core: web::Data<Core>,
    req: HttpRequest,
    q: web::Query<ExportQuery>,
) -> HttpResponse {
    let s = match session(&core, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if q.format.as_deref() == Some("maildir") {
        let mail = core.mail(s.account.id);
        if let Some(f) = &q.f {
            match mail.mailbox(f).await {
                Ok(Some(_)) => {}
                Ok(None) => return plain(StatusCode::NOT_FOUND, "No such folder"),
                Err(e) => return core_failure(e),
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let folder = q.f.clone();
        tokio::spawn(async move {
            let r = mail
                .export_maildir_zip(folder.as_deref(), |chunk| {
                    let tx = tx.clone();
                    async move { tx.send(chunk).await.is_ok() }
                })
                .await;
            if let Err(e) = r {
                // The zip stops short of its end record, so the client
                // sees a damaged file, not a complete-looking partial one.
                tracing::warn!(error = %e, "maildir export stopped");
            }
        });
        return HttpResponse::Ok()
            .content_type("application/zip")
            .insert_header((
                header::CONTENT_DISPOSITION,
                content_disposition(&zip_name(q.f.as_deref())),
            ))
            .streaming(streamed(rx));
    }
    let Some(folder) = q.f.clone() else {
        return plain(StatusCode::BAD_REQUEST, "Which folder?");
    };
    let mbox = match core.mail(s.account.id).mailbox(&folder).await {
        Ok(Some(m)) => m,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "No such folder"),
        Err(e) => return core_failure(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    tokio::spawn(async move {
        let r = mbox
            .export_mbox(|chunk| {
                let tx = tx.clone();
                async move { tx.send(chunk).await.is_ok() }
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "mbox export stopped");
        }
    });
    HttpResponse::Ok()
        .content_type("application/mbox")
        .insert_header((
            header::CONTENT_DISPOSITION,
            content_disposition(&format!("{folder}.mbox")),
        ))
        .streaming(streamed(rx))
}

fn back(note: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/folders?{note}")))
        .finish()
}

pub async fn import(
    core: web::Data<Core>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let s = match session(&core, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut mp = match multipart(&req, payload, IMPORT_MAX).await {
        Ok(m) => m,
        Err(FormError::TooBig(max)) => {
            return too_big("The file", max, " `tern import` takes any size.");
        }
        Err(FormError::Bad(m)) => return plain(StatusCode::BAD_REQUEST, &m),
    };
    let (mut csrf, mut folder, mut data) = (String::new(), String::new(), Vec::new());
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "f" => folder = String::from_utf8_lossy(&bytes).into_owned(),
            "file" => data = bytes.to_vec(),
            _ => {}
        }
    }
    if !mailcore::auth::constant_time_eq(csrf.as_bytes(), s.csrf_token.as_bytes()) {
        return plain(
            StatusCode::FORBIDDEN,
            "403 Forbidden: bad or missing CSRF token",
        );
    }
    let mbox = match core.mail(s.account.id).mailbox(&folder).await {
        Ok(Some(m)) => m,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "No such folder"),
        Err(e) => return core_failure(e),
    };
    match core.start_import(s.account.id, mbox, data) {
        Ok(()) => back(&format!(
            "importing={}",
            utf8_percent_encode(&folder, NON_ALPHANUMERIC)
        )),
        Err(mailcore::CoreError::Conflict(_)) => back("error=An+import+is+already+running."),
        Err(e) => core_failure(e),
    }
}
