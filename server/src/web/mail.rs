//! The parts of the webmail that are not Leptos pages: the sanitised HTML
//! body a message page frames, attachment downloads, and the compose form
//! (multipart, for file uploads), which sends or saves a draft.
//!
//! Each checks the session cookie itself; the compose POST also checks the
//! session's CSRF token, on top of the cross-site check every POST gets.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mailcore::sessions::WebSession;
use mailcore::submission::{SendError, SendLimits, SubmissionError};
use mailcore::view::{AttachmentData, MessageView, safe_filename};
use mailcore::{Core, CoreError, Flags};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use app::WebSettings;

pub(crate) fn plain(status: actix_web::http::StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{body}\n"))
}

pub(crate) fn core_failure(e: CoreError) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        CoreError::NotFound(_) => plain(StatusCode::NOT_FOUND, "Not found"),
        e if e.is_temporary() => plain(StatusCode::SERVICE_UNAVAILABLE, app::auth::UNAVAILABLE),
        e => plain(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

pub(crate) async fn session(core: &Core, req: &HttpRequest) -> Result<WebSession, HttpResponse> {
    let token = req
        .cookie(app::auth::ssr::SECURE_COOKIE)
        .or_else(|| req.cookie(app::auth::ssr::COOKIE))
        .map(|c| c.value().to_owned());
    let Some(token) = token else {
        return Err(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login"))
            .finish());
    };
    match core.session(&token).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login"))
            .finish()),
        Err(e) => Err(core_failure(e)),
    }
}

#[derive(Deserialize)]
pub struct MsgQuery {
    f: String,
    uid: i64,
    #[serde(default)]
    images: u8,
    #[serde(default)]
    n: u32,
}

async fn open_mailbox(
    core: &Core,
    account: &mailcore::AccountRef,
    name: &str,
) -> Result<mailcore::OwnedMailbox, HttpResponse> {
    match core.mail(account.id).mailbox(name).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(core_failure(CoreError::NotFound(name.into()))),
        Err(e) => Err(core_failure(e)),
    }
}

/// The mailbox a message request names, of the signed-in account.
async fn account_mailbox(
    core: &Core,
    req: &HttpRequest,
    folder: &str,
) -> Result<mailcore::OwnedMailbox, HttpResponse> {
    let s = session(core, req).await?;
    open_mailbox(core, &s.account, folder).await
}

/// `GET /msg/body?f=&uid=&images=`: the HTML part, sanitised, as its own
/// document for the sandboxed iframe on the message page.
pub async fn body(
    core: web::Data<Core>,
    req: HttpRequest,
    q: web::Query<MsgQuery>,
) -> HttpResponse {
    let mbox = match account_mailbox(&core, &req, &q.f).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let view = match mbox.view(mailcore::Uid(q.uid)).await {
        Ok(v) => v,
        Err(e) => return core_failure(e),
    };
    html_frame(&view.html.unwrap_or_default(), q.images == 1)
}

/// A message's HTML, cleaned, as the document of the sandboxed frame the
/// read page shows it in (no script; remote images only when `allow`).
pub(crate) fn html_frame(html: &str, allow: bool) -> HttpResponse {
    let cleaned = app::mailhtml::sanitize(html, allow);
    let doc = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <style>body{{font-family:system-ui,sans-serif;margin:0;padding:8px;word-wrap:break-word}}\
         img{{max-width:100%;height:auto}}</style></head><body>{}</body></html>",
        cleaned.html
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", app::mailhtml::frame_csp(allow)))
        .insert_header(("X-Frame-Options", "SAMEORIGIN"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "private, no-store"))
        .body(doc)
}

/// RFC 5987 attr-char: what may stay unescaped in `filename*`.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// RFC 6266 §4.3: an ASCII `filename` for old clients and a UTF-8
/// `filename*` for the rest, both from a name with no path, control or
/// bidi characters left in it.
pub fn content_disposition(name: &str) -> String {
    let safe = safe_filename(name);
    let ascii: String = safe
        .chars()
        .map(|c| if c.is_ascii() && c != '\\' { c } else { '_' })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(&safe, ATTR)
    )
}

/// `GET /msg/att?f=&uid=&n=`: one attachment, always as a download.
pub async fn attachment(
    core: web::Data<Core>,
    req: HttpRequest,
    q: web::Query<MsgQuery>,
) -> HttpResponse {
    let mbox = match account_mailbox(&core, &req, &q.f).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match mbox.attachment(mailcore::Uid(q.uid), q.n).await {
        Ok(a) => attachment_download(a),
        Err(e) => core_failure(e),
    }
}

/// An attachment, always as a download: never rendered by the browser.
pub(crate) fn attachment_download(a: AttachmentData) -> HttpResponse {
    let cd = content_disposition(&a.filename);
    let mut resp = HttpResponse::Ok();
    // Octet-stream plus nosniff, and a sandbox should it be opened anyway.
    resp.content_type("application/octet-stream")
        .insert_header(("Cache-Control", "private, no-store"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"));
    if let Ok(v) = HeaderValue::from_str(&cd) {
        resp.insert_header((header::CONTENT_DISPOSITION, v));
    }
    resp.body(a.bytes)
}

/// An outside account's login for this session, or the page that says
/// what is missing.
async fn outside_login(
    core: &Core,
    s: &mailcore::sessions::WebSession,
    a: i32,
) -> Result<mailcore::outside::OutsideLogin, HttpResponse> {
    use actix_web::http::StatusCode;
    match core
        .outside_login(
            s.account.id,
            mailcore::outside::OutsideAccountId(a),
            &s.csrf_token,
        )
        .await
    {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(plain(
            StatusCode::FORBIDDEN,
            "Enter the outside account's password (open the account) before sending from it.",
        )),
        Err(e) => Err(core_failure(e)),
    }
}

/// The compose form, as posted.
#[derive(Default, Debug)]
struct Draft {
    csrf: String,
    action: String,
    to: String,
    cc: String,
    bcc: String,
    subject: String,
    body: String,
    /// The message replied to or forwarded: folder and uid.
    ref_f: String,
    ref_uid: Option<i64>,
    /// Or a message of an outside account: its id there, in `ref_f`.
    ref_a: Option<i32>,
    ref_id: String,
    /// "" for the account's address, `o:<id>` for an outside account.
    from: String,
    mode: String,
    /// The draft this form was opened from, replaced on save, removed on send.
    draft_uid: Option<i64>,
    /// For "send later": `YYYY-MM-DDTHH:MM`, UTC.
    send_at: String,
    files: Vec<AttachmentData>,
}

/// No CR or LF may reach a header from a form field (header injection):
/// they become spaces.
fn one_line(s: &str) -> String {
    s.replace("\r\n", " ")
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// An address field as a person types it (RFC 5322 §3.4 address-list):
/// `bob@x, "Bob, B." <bob@y>; Carol <carol@z>`. Commas and semicolons
/// inside quotes or angle brackets do not split; each piece keeps its text
/// for the error message.
fn split_addrs(s: &str) -> Vec<String> {
    let s = one_line(s);
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

fn parse_mailbox(a: &str) -> Result<Mailbox, String> {
    a.parse::<Mailbox>()
        .map_err(|_| format!("{a}: not a valid address"))
}

/// The envelope recipients of a field: the bare addresses, names dropped.
fn field_recipients(s: &str) -> Result<Vec<String>, String> {
    split_addrs(s)
        .iter()
        .map(|a| parse_mailbox(a).map(|m| m.email.to_string()))
        .collect()
}

pub(crate) enum FormError {
    Bad(String),
    TooBig(usize),
}

/// A multipart form body, read whole up to `max` bytes of content (plus
/// room for the form fields). actix's payload is not Send and multer wants
/// a Send stream, so the body is read first.
pub(crate) async fn multipart(
    req: &HttpRequest,
    payload: web::Payload,
    max: usize,
) -> Result<multer::Multipart<'static>, FormError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(ct)
        .map_err(|_| FormError::Bad("expected a multipart form".into()))?;
    let cap = max + 64 * 1024;
    let mut payload = payload;
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| FormError::Bad(e.to_string()))?;
        if buf.len() + chunk.len() > cap {
            return Err(FormError::TooBig(max));
        }
        buf.extend_from_slice(&chunk);
    }
    let body = buf.freeze();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    Ok(multer::Multipart::new(stream, boundary))
}

async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    max: usize,
) -> Result<Draft, FormError> {
    let mut mp = multipart(req, payload, max).await?;
    let mut d = Draft::default();
    let mut total = 0usize;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(FormError::Bad(e.to_string())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let ctype = field
            .content_type()
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_else(|| "application/octet-stream".into());
        let bytes = field
            .bytes()
            .await
            .map_err(|e| FormError::Bad(e.to_string()))?;
        total += bytes.len();
        if total > max {
            return Err(FormError::TooBig(max));
        }
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "csrf" => d.csrf = text(),
            "action" => d.action = text(),
            "to" => d.to = text(),
            "cc" => d.cc = text(),
            "bcc" => d.bcc = text(),
            "subject" => d.subject = text(),
            "body" => d.body = text(),
            "ref_f" => d.ref_f = text(),
            "ref_uid" => d.ref_uid = text().trim().parse().ok(),
            "ref_a" => d.ref_a = text().trim().parse().ok(),
            "ref_id" => d.ref_id = one_line(&text()),
            "from" => d.from = text().trim().to_owned(),
            "mode" => d.mode = text(),
            "draft_uid" => d.draft_uid = text().trim().parse().ok(),
            "send_at" => d.send_at = text().trim().to_owned(),
            "attachment" => {
                if let Some(f) = filename.filter(|f| !f.is_empty()) {
                    d.files.push(AttachmentData {
                        filename: f,
                        content_type: ctype,
                        bytes: bytes.to_vec(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Builds the MIME message (lettre does the header encoding; every value
/// that reaches a header is single-line first).
fn build(
    from: &str,
    d: &Draft,
    reference: Option<&MessageView>,
    forwarded: Vec<AttachmentData>,
    keep_bcc: bool,
) -> Result<(lettre::Message, Vec<String>), String> {
    let parse = parse_mailbox;
    // A draft (keep_bcc) keeps what it can: invalid addresses are left out
    // and reported, so saving never fails on a half-typed address.
    let mut invalid = Vec::new();
    let mut b = lettre::Message::builder()
        .from(parse(from)?)
        .subject(one_line(&d.subject));
    for (field, text) in [("to", &d.to), ("cc", &d.cc), ("bcc", &d.bcc)] {
        for a in split_addrs(text) {
            match parse(&a) {
                Ok(m) => {
                    b = match field {
                        "to" => b.to(m),
                        "cc" => b.cc(m),
                        _ => b.bcc(m),
                    }
                }
                Err(_) if keep_bcc => invalid.push(a),
                Err(e) => return Err(e),
            }
        }
    }
    if keep_bcc {
        b = b.keep_bcc();
    }
    if let Some(r) = reference
        && d.mode != "forward"
        && !r.message_id.is_empty()
    {
        let id = format!("<{}>", one_line(&r.message_id));
        b = b.in_reply_to(id.clone());
        let mut refs: Vec<String> = r
            .references
            .iter()
            .map(|x| format!("<{}>", one_line(x)))
            .collect();
        refs.push(id);
        b = b.references(refs.join(" "));
    }
    let text = SinglePart::plain(d.body.replace("\r\n", "\n"));
    let mut files = forwarded;
    files.extend(d.files.iter().cloned());
    let msg = if files.is_empty() {
        b.singlepart(text)
    } else {
        let mut mp = MultiPart::mixed().singlepart(text);
        for f in files {
            let ct = ContentType::parse(&f.content_type)
                .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("valid"));
            mp = mp.singlepart(Attachment::new(safe_filename(&f.filename)).body(f.bytes, ct));
        }
        b.multipart(mp)
    };
    msg.map(|m| (m, invalid)).map_err(|e| e.to_string())
}

/// After a send from the form (at once or later): the message replied to
/// is marked answered, and the draft the form came from goes.
async fn sent_from_form<F, Fut>(
    replied: Option<(mailcore::OwnedMailbox, mailcore::Uid)>,
    d: &Draft,
    drop_old_draft: &F,
) where
    F: Fn(Option<i64>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if let Some((mbox, uid)) = replied
        && d.mode != "forward"
    {
        let _ = mbox
            .set_flags(&[uid], mailcore::messages::FlagOp::Add, Flags::ANSWERED)
            .await;
    }
    drop_old_draft(d.draft_uid).await;
}

/// The answer to a form body over its limit.
pub(crate) fn too_big(what: &str, max: usize, more: &str) -> HttpResponse {
    plain(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "{what} is too big: the limit is {} MB.{more}",
            max / (1024 * 1024)
        ),
    )
}

fn back_to_compose(error: &str) -> HttpResponse {
    let loc = format!(
        "/compose?error={}",
        utf8_percent_encode(error, NON_ALPHANUMERIC)
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, loc))
        .finish()
}

/// `POST /compose`: send (`action=send`) or save to Drafts (`action=draft`).
pub async fn compose(
    core: web::Data<Core>,
    settings: web::Data<WebSettings>,
    outside: web::Data<app::outside::ssr::OutsideClient>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let s = match session(&core, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let d = match read_form(&req, payload, settings.max_message_size).await {
        Ok(d) => d,
        Err(FormError::TooBig(max)) => return too_big("The message", max, ""),
        Err(FormError::Bad(m)) => return plain(StatusCode::BAD_REQUEST, &m),
    };
    if !mailcore::auth::constant_time_eq(d.csrf.as_bytes(), s.csrf_token.as_bytes()) {
        return plain(
            StatusCode::FORBIDDEN,
            "403 Forbidden: bad or missing CSRF token",
        );
    }
    let account = s.account.clone();
    // The message replied to or forwarded, and its attachments for a forward.
    let mut reference: Option<MessageView> = None;
    let mut forwarded: Vec<AttachmentData> = Vec::new();
    let mut ref_box = None;
    if let Some(uid) = d.ref_uid
        && !d.ref_f.is_empty()
    {
        let uid = mailcore::Uid(uid);
        let mbox = match open_mailbox(&core, &account, &d.ref_f).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        let raw = match mbox.raw(uid).await {
            Ok(r) => r,
            Err(e) => return core_failure(e),
        };
        let view = MessageView::parse(&raw);
        if d.mode == "forward" {
            forwarded = MessageView::all_attachments(&raw);
        }
        reference = Some(view);
        ref_box = Some((mbox, uid));
    }
    // A message of an outside account, read from its server again.
    let outside_ref = match d.ref_a {
        Some(a) if !d.ref_id.is_empty() => match outside_login(&core, &s, a).await {
            Ok(login) => {
                let id = mailcore::outside::MessageRef(d.ref_id.clone());
                match outside.0.message(&login, &d.ref_f, &id).await {
                    Ok(raw) => {
                        if d.mode == "forward" {
                            forwarded = MessageView::all_attachments(&raw);
                        }
                        reference = Some(MessageView::parse(&raw));
                        Some((login, id))
                    }
                    Err(e) => return plain(StatusCode::BAD_GATEWAY, &e.to_string()),
                }
            }
            Err(r) => return r,
        },
        _ => None,
    };
    // Sending as an outside address goes through that provider.
    let sender = match d.from.strip_prefix("o:").map(str::parse::<i32>) {
        None => None,
        Some(Ok(a)) => match outside_login(&core, &s, a).await {
            Ok(login) => Some((a, login)),
            Err(r) => return r,
        },
        Some(Err(_)) => return plain(StatusCode::BAD_REQUEST, "unknown sender"),
    };
    // One of the account's identities (its name on the From: line), or
    // the outside account's address.
    let from_address = match &sender {
        Some((_, l)) => l.settings.address.clone(),
        None => {
            let ids = match core.identities(&account).await {
                Ok(i) => i,
                Err(e) => return core_failure(e),
            };
            let wanted = if d.from.is_empty() {
                account.address.as_str()
            } else {
                d.from.as_str()
            };
            match ids.iter().find(|i| i.address.eq_ignore_ascii_case(wanted)) {
                Some(i) => i.mailbox(),
                None => return plain(StatusCode::BAD_REQUEST, "unknown sender"),
            }
        }
    };
    let drafts = match open_mailbox(&core, &account, "Drafts").await {
        Ok(m) => m,
        Err(r) => return r,
    };
    // A form opened from a draft carries the draft's attachments (which
    // already include any forwarded ones).
    if let Some(uid) = d.draft_uid {
        match drafts.raw(mailcore::Uid(uid)).await {
            Ok(raw) => {
                forwarded = MessageView::all_attachments(&raw);
            }
            Err(CoreError::NotFound(_)) => {}
            Err(e) => return core_failure(e),
        }
    }
    let drop_old_draft = |uid: Option<i64>| {
        let drafts = drafts.clone();
        async move {
            if let Some(uid) = uid {
                let _ = drafts.destroy(&[mailcore::Uid(uid)]).await;
            }
        }
    };
    // Saves the form as a draft and shows it again; with `error`, that is
    // how a refused send keeps everything the user wrote, attachments too.
    let store_draft = || {
        let drafts = drafts.clone();
        let d = &d;
        let reference = reference.as_ref();
        let forwarded = forwarded.clone();
        let from = from_address.clone();
        let drop_old_draft = &drop_old_draft;
        async move {
            let (msg, invalid) = match build(&from, d, reference, forwarded, true) {
                Ok(m) => m,
                Err(e) => return Err(back_to_compose(&e)),
            };
            let uid = match drafts
                .append(&msg.formatted(), Flags::DRAFT.union(Flags::SEEN), None)
                .await
            {
                Ok(uid) => uid,
                Err(e) => return Err(core_failure(e)),
            };
            drop_old_draft(d.draft_uid).await;
            Ok((uid, invalid))
        }
    };
    let save_draft = |error: Option<String>| {
        let store_draft = &store_draft;
        async move {
            let (uid, invalid) = match store_draft().await {
                Ok(x) => x,
                Err(r) => return r,
            };
            let note = match (error, invalid.is_empty()) {
                (Some(e), _) => format!("&error={}", utf8_percent_encode(&e, NON_ALPHANUMERIC)),
                (None, false) => format!(
                    "&error={}",
                    utf8_percent_encode(
                        &format!(
                            "Not valid addresses, left out of the draft: {}",
                            invalid.join(", ")
                        ),
                        NON_ALPHANUMERIC
                    )
                ),
                (None, true) => "&saved=1".to_owned(),
            };
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/compose?draft={uid}{note}")))
                .finish()
        }
    };
    if d.action == "draft" {
        return save_draft(None).await;
    }
    // The compose page's timer (JavaScript on): the new draft's UID as
    // text, which the page puts in the form so the next save replaces it.
    if d.action == "autosave" {
        return match store_draft().await {
            Ok((uid, _)) => HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(uid.to_string()),
            Err(r) => r,
        };
    }
    let mut rcpts = Vec::new();
    for field in [&d.to, &d.cc, &d.bcc] {
        match field_recipients(field) {
            Ok(r) => rcpts.extend(r),
            Err(e) => return save_draft(Some(e)).await,
        }
    }
    let msg = match build(
        &from_address,
        &d,
        reference.as_ref(),
        forwarded.clone(),
        false,
    ) {
        Ok((m, _)) => m,
        Err(e) => return save_draft(Some(e)).await,
    };
    let raw = msg.formatted();
    if let Some((a, login)) = &sender {
        if rcpts.is_empty() {
            return save_draft(Some("Not sent: no recipients".into())).await;
        }
        return match outside.0.send(login, &rcpts, &raw).await {
            Ok(report) => {
                tracing::info!(user = %account.address, from = %login.settings.address, rcpts = ?rcpts, reply = %report.reply, sent_copy = ?report.filed_in, "web send through an outside provider");
                if let Some((rlogin, id)) = &outside_ref
                    && d.mode != "forward"
                {
                    let _ = outside
                        .0
                        .set_flag(
                            rlogin,
                            &d.ref_f,
                            id,
                            mailcore::outside::OutsideFlag::Answered,
                            true,
                        )
                        .await;
                }
                drop_old_draft(d.draft_uid).await;
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, format!("/outside/box?a={a}&sent=1")))
                    .finish()
            }
            Err(e) => save_draft(Some(format!("Not sent: {e}"))).await,
        };
    }
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let received = format!(
        "Received: from webmail ([{ip}])\r\n\tby {} (Tern) with HTTPS id web;\r\n\t{}\r\n",
        settings.hostname,
        mailcore::submission::rfc5322_date(core.clock().now()),
    );
    let limits = SendLimits {
        max_recipients: settings.max_recipients,
        max_message_size: settings.max_message_size,
    };
    // Later: "send later" at the time asked, or the undo window. Checked
    // now as a send is, so a wrong address is said now, not at send time.
    let now = core.clock().now();
    let send_at = if d.action == "later" {
        let zone = app::mail::ssr::zone_for(&core, account.id, &req).await;
        match zone.parse(&d.send_at) {
            Some(t) if t > now => Some(t),
            Some(_) => return save_draft(Some("Not scheduled: that time has passed".into())).await,
            None => return save_draft(Some("Not scheduled: choose a date and time".into())).await,
        }
    } else if settings.undo_send_secs > 0 {
        Some(now + settings.undo_send_secs as i64)
    } else {
        None
    };
    if let Some(send_at) = send_at {
        if let Err(e) = core.check_send(&account, &rcpts, &raw, limits).await {
            return match e {
                SendError::Submission(SubmissionError::Core(e)) => core_failure(e),
                e => save_draft(Some(format!("Not sent: {e}"))).await,
            };
        }
        // The draft form of the message (Bcc kept), for an undo.
        let draft = match build(
            &from_address,
            &d,
            reference.as_ref(),
            forwarded.clone(),
            true,
        ) {
            Ok((m, _)) => m.formatted(),
            Err(e) => return save_draft(Some(e)).await,
        };
        let kind = if d.action == "later" {
            mailcore::scheduled::ScheduleKind::Later
        } else {
            mailcore::scheduled::ScheduleKind::Undo
        };
        let id = match core
            .schedule(
                account.id,
                mailcore::scheduled::NewScheduled {
                    kind,
                    mail_from: account.address.clone(),
                    recipients: rcpts.clone(),
                    received: received.clone(),
                    raw: raw.clone(),
                    draft: Some(draft),
                    send_at,
                    require_tls: false,
                },
            )
            .await
        {
            Ok(id) => id,
            Err(e) => return core_failure(e),
        };
        tracing::info!(user = %account.address, rcpts = ?rcpts, id, send_at, "web send scheduled");
        sent_from_form(ref_box, &d, &drop_old_draft).await;
        let to = if kind == mailcore::scheduled::ScheduleKind::Later {
            "/scheduled".to_owned()
        } else {
            format!("/mail?f=INBOX&sent=1&undo={id}")
        };
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish();
    }
    match core
        .send(
            &account,
            &rcpts,
            &raw,
            &settings.hostname,
            &received,
            limits,
        )
        .await
    {
        Ok(sent) => {
            metrics::counter!("tern_messages_total", "event" => "accepted").increment(1);
            tracing::info!(user = %account.address, rcpts = ?rcpts, local = sent.local, queued = sent.queued, "web send");
            sent_from_form(ref_box, &d, &drop_old_draft).await;
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/mail?f=INBOX&sent=1"))
                .finish()
        }
        Err(SendError::Submission(SubmissionError::Core(e))) => core_failure(e),
        Err(e) => save_draft(Some(format!("Not sent: {e}"))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_fields_take_display_names() {
        // The forms the compose autocomplete offers, and RFC 5322 lists.
        let field = r#"Bob <bob@example.test>, "Bob B" <bob2@example.test>; "Smith, Carol" <carol@example.test>,dave@example.test"#;
        assert_eq!(
            split_addrs(field),
            vec![
                "Bob <bob@example.test>",
                "\"Bob B\" <bob2@example.test>",
                "\"Smith, Carol\" <carol@example.test>",
                "dave@example.test",
            ]
        );
        assert_eq!(
            field_recipients(field).unwrap(),
            vec![
                "bob@example.test",
                "bob2@example.test",
                "carol@example.test",
                "dave@example.test"
            ]
        );
        assert!(field_recipients("Bob <not an address>").is_err());
        assert_eq!(field_recipients(" , ;").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn disposition_is_safe_and_rfc6266() {
        assert_eq!(
            content_disposition("../../r\u{e9}sum\u{e9}\r\n.pdf"),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        assert_eq!(
            content_disposition("a\u{202e}gpj.exe"),
            "attachment; filename=\"agpj.exe\"; filename*=UTF-8''agpj.exe"
        );
    }

    #[test]
    fn header_injection_is_impossible() {
        let d = Draft {
            to: "bob@example.test\r\nBcc: victim@example.org".into(),
            subject: "hi\r\nBcc: evil@example.org".into(),
            body: "text".into(),
            files: vec![AttachmentData {
                filename: "x\r\nContent-Type: text/html.txt".into(),
                content_type: "text/plain".into(),
                bytes: b"data".to_vec(),
            }],
            ..Default::default()
        };
        // The address field with CRLF is one (invalid) address, not two headers.
        assert!(build("alice@example.test", &d, None, vec![], false).is_err());
        let d = Draft {
            to: "bob@example.test".into(),
            ..d
        };
        let raw = String::from_utf8(
            build("alice@example.test", &d, None, vec![], false)
                .unwrap()
                .0
                .formatted(),
        )
        .unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(
            headers.contains("Subject: hi Bcc: evil@example.org"),
            "{headers}"
        );
        assert!(!raw.contains("\r\nContent-Type: text/html"), "{raw}");
    }
}
