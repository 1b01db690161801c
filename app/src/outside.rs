//! Outside accounts in the webmail (the mail2web feature): add another
//! provider's mailbox with its address and password, then read its folders
//! and messages here. The server does the talking (through
//! `mailcore::outside::OutsideMail`); these pages only show what it found,
//! and every text from an outside server is rendered as text (escaped).
//!
//! The add flow works without JavaScript in two steps: `/outside/add`
//! with the address shows what discovery found (autoconfig, SRV, MX,
//! common names) in editable fields; posting them with the password signs
//! in once before anything is saved. A certificate that does not verify
//! comes back as a page that shows its SHA-256 and asks whether to trust
//! it for this account.

// `outside_add` takes the form's fields one by one, so the plain HTML
// form (JavaScript off) posts flat names; the server macro forwards no
// attribute to the browser-side stub, so the allowance is for the file.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

use crate::error::AppError;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::head::PageTitle;
use crate::mail::{AttachmentRow, Frame, encode};
use crate::pages::{Shell, problem, q};

pub const OUTSIDE_PAGE_SIZE: u32 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideRow {
    pub id: i32,
    pub address: String,
    pub server: String,
    pub protocol: String,
    pub remembered: bool,
    pub last_error: Option<String>,
    /// "", "keep" or "delete".
    pub fetch_mode: String,
    /// How fetching went: counts, or the last failure.
    pub fetch_status: String,
    pub pop3: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideListData {
    pub frame: Frame,
    pub accounts: Vec<OutsideRow>,
}

/// The fields of the add form, as found or as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideForm {
    pub address: String,
    pub username: String,
    pub protocol: String,
    pub in_host: String,
    pub in_port: String,
    pub in_security: String,
    pub out_host: String,
    pub out_port: String,
    pub out_security: String,
    /// The outgoing server's user name, when it is not the incoming one.
    pub smtp_username: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddData {
    pub frame: Frame,
    pub form: OutsideForm,
    /// Where the settings came from, or why there are none.
    pub found_by: Option<String>,
    pub searched: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideMsg {
    /// The message's id on its server (IMAP UID or POP3 UIDL).
    pub id: String,
    pub from: String,
    pub subject: String,
    pub date: String,
    pub size: String,
    pub seen: bool,
    pub flagged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxData {
    pub frame: Frame,
    pub account: OutsideRow,
    /// (name as the server has it, name to show, not selectable).
    pub folders: Vec<(String, String, bool)>,
    /// The open folder's name to show.
    pub folder_label: String,
    pub folder: String,
    /// A search, when the page shows one.
    pub query: String,
    /// The account is POP3: no folders, flags or search.
    pub pop3: bool,
    pub rows: Vec<OutsideMsg>,
    pub total: u32,
    pub page: u32,
    pub pages: u32,
    /// The server could not be used: this says why; the page still renders.
    pub error: Option<String>,
    /// The password was kept for an earlier session: ask for it.
    pub needs_password: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideReadData {
    pub frame: Frame,
    pub account: OutsideRow,
    pub folder: String,
    pub folder_label: String,
    pub id: String,
    /// (name, name to show) of the folders a message can move to.
    pub folders: Vec<(String, String)>,
    pub pop3: bool,
    pub can_send: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub date: String,
    pub text: String,
    pub has_html: bool,
    /// Remote images the cleaned HTML would load (hidden until asked).
    pub blocked_images: usize,
    pub attachments: Vec<AttachmentRow>,
    pub error: Option<String>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use std::sync::Arc;

    use leptos::prelude::*;
    use mailcore::outside::{
        Endpoint, OutsideAccount, OutsideAccountId, OutsideLogin, OutsideMail, OutsideSettings,
        Protocol, Security,
    };

    use super::*;

    /// The outside-mail client the server put in the context.
    #[derive(Clone)]
    pub struct OutsideClient(pub Arc<dyn OutsideMail>);

    pub fn client() -> Result<Arc<dyn OutsideMail>, AppError> {
        use_context::<OutsideClient>().map(|c| c.0).ok_or_else(|| {
            crate::error::ssr::raise(AppError::Internal(
                "outside-mail client missing from context".into(),
            ))
        })
    }

    pub fn row(a: &OutsideAccount) -> OutsideRow {
        OutsideRow {
            id: a.id.0,
            address: a.settings.address.clone(),
            server: a.settings.incoming.to_string(),
            protocol: a.settings.protocol.as_str().to_uppercase(),
            remembered: a.remembered,
            last_error: a.last_error.clone(),
            fetch_mode: a.fetch.mode.as_str().to_owned(),
            fetch_status: match (&a.fetch.status, a.fetch.mode) {
                (Some(e), _) => format!("Fetching failed: {e}"),
                (None, mailcore::outside_fetch::FetchMode::Off) => String::new(),
                (None, _) => format!(
                    "{} fetched so far.",
                    crate::pages::count(a.fetch.fetched_total, "message", "messages")
                ),
            },
            pop3: a.settings.protocol == Protocol::Pop3,
        }
    }

    pub fn form_of(s: &OutsideSettings) -> OutsideForm {
        let (out_host, out_port, out_security) = match &s.outgoing {
            Some(e) => (
                e.host.clone(),
                e.port.to_string(),
                e.security.as_str().to_owned(),
            ),
            None => (String::new(), String::new(), "tls".to_owned()),
        };
        OutsideForm {
            address: s.address.clone(),
            username: s.username.clone(),
            protocol: s.protocol.as_str().to_owned(),
            in_host: s.incoming.host.clone(),
            in_port: s.incoming.port.to_string(),
            in_security: s.incoming.security.as_str().to_owned(),
            out_host,
            out_port,
            out_security,
            smtp_username: String::new(),
        }
    }

    /// The settings a form holds, checked; an error names the field.
    pub fn settings_of(f: &OutsideForm) -> Result<OutsideSettings, String> {
        let protocol = Protocol::parse(&f.protocol).ok_or("choose IMAP or POP3")?;
        let port = |p: &str, what: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(format!("the {what} port must be a number from 1 to 65535"))
        };
        let incoming = Endpoint::new(
            f.in_host.trim(),
            port(&f.in_port, "incoming")?,
            Security::parse(&f.in_security).ok_or("choose TLS or STARTTLS")?,
        );
        let outgoing = if f.out_host.trim().is_empty() {
            None
        } else {
            Some(Endpoint::new(
                f.out_host.trim(),
                port(&f.out_port, "outgoing")?,
                Security::parse(&f.out_security).ok_or("choose TLS or STARTTLS")?,
            ))
        };
        let username = if f.username.trim().is_empty() {
            f.address.trim().to_owned()
        } else {
            f.username.trim().to_owned()
        };
        let s = OutsideSettings {
            address: f.address.trim().to_owned(),
            username,
            protocol,
            incoming,
            outgoing,
        };
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// The form as query parameters, to come back to it after a problem.
    pub fn form_query(f: &OutsideForm) -> String {
        [
            ("address", &f.address),
            ("username", &f.username),
            ("protocol", &f.protocol),
            ("in_host", &f.in_host),
            ("in_port", &f.in_port),
            ("in_security", &f.in_security),
            ("out_host", &f.out_host),
            ("out_port", &f.out_port),
            ("out_security", &f.out_security),
            ("smtp_username", &f.smtp_username),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }

    /// Settings and password of an account for this session, or None
    /// when its password must be entered again.
    pub async fn login_for(
        owner: mailcore::AccountId,
        id: i32,
        session: &str,
    ) -> Result<Option<OutsideLogin>, AppError> {
        crate::auth::ssr::core()?
            .outside_login(owner, OutsideAccountId(id), session)
            .await
            .map_err(crate::auth::ssr::core_error)
    }
}

/// The outside accounts of the signed-in user.
#[server(prefix = "/api", endpoint = "outside_list")]
pub async fn outside_list() -> Result<Option<OutsideListData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let accounts = core()?
        .outside_accounts(s.account.id)
        .await
        .map_err(core_error)?;
    Ok(Some(OutsideListData {
        frame: crate::mail::ssr::frame(&s).await?,
        accounts: accounts.iter().map(ssr::row).collect(),
    }))
}

/// The add page: with only an address, what discovery finds; with the
/// fields given (coming back from a problem), those.
#[server(prefix = "/api", endpoint = "outside_add_data")]
pub async fn outside_add_data(
    form: OutsideForm,
    discover: bool,
) -> Result<Option<AddData>, AppError> {
    use crate::auth::ssr::current_session;
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let frame = crate::mail::ssr::frame(&s).await?;
    let address = form.address.trim().to_owned();
    if !discover || address.is_empty() {
        return Ok(Some(AddData {
            frame,
            form,
            found_by: None,
            searched: false,
        }));
    }
    let found = ssr::client()?.discover(&address).await;
    Ok(Some(match found {
        Some(d) => AddData {
            frame,
            form: ssr::form_of(&d.settings),
            found_by: Some(format!("Found with {}.", d.found_by)),
            searched: true,
        },
        None => AddData {
            frame,
            form: OutsideForm {
                address,
                protocol: "imap".into(),
                in_port: "993".into(),
                in_security: "tls".into(),
                out_port: "465".into(),
                out_security: "tls".into(),
                ..Default::default()
            },
            found_by: None,
            searched: true,
        },
    }))
}

/// Signs in to the outside server with the settings and password, then
/// saves the account. A certificate problem or a refused login goes back
/// to the form with the reason; nothing is saved until the login worked.
#[server(prefix = "/api", endpoint = "outside_add")]
pub async fn outside_add(
    csrf: String,
    address: String,
    password: String,
    #[server(default)] username: String,
    #[server(default)] protocol: String,
    #[server(default)] in_host: String,
    #[server(default)] in_port: String,
    #[server(default)] in_security: String,
    #[server(default)] out_host: String,
    #[server(default)] out_port: String,
    #[server(default)] out_security: String,
    #[server(default)] remember: Option<String>,
    #[server(default)] trust: String,
    #[server(default)] smtp_username: String,
    #[server(default)] smtp_password: String,
) -> Result<(), AppError> {
    use mailcore::outside::{OutsideError, OutsideLogin};
    let s = crate::mail::ssr::require(&csrf).await?;
    let form = OutsideForm {
        address,
        username,
        protocol,
        in_host,
        in_port,
        in_security,
        out_host,
        out_port,
        out_security,
        smtp_username: smtp_username.trim().to_owned(),
    };
    let smtp = (!form.smtp_username.is_empty() || !smtp_password.is_empty())
        .then(|| (form.smtp_username.clone(), smtp_password.clone()));
    let back = |extra: String| format!("/outside/add?{}&{extra}", ssr::form_query(&form));
    let settings = match ssr::settings_of(&form) {
        Ok(v) => v,
        Err(e) => {
            leptos_actix::redirect(&back(format!("error={}", encode(&e))));
            return Ok(());
        }
    };
    let trust = trust.trim().to_ascii_lowercase();
    let pinned = (!trust.is_empty()).then_some(trust);
    let login = OutsideLogin {
        settings: settings.clone(),
        password: password.clone(),
        pinned_cert: pinned.clone(),
        smtp: smtp.clone(),
    };
    match ssr::client()?.check(&login).await {
        Ok(()) => {}
        Err(OutsideError::Certificate(p)) => {
            leptos_actix::redirect(&back(format!(
                "cert={}&cert_host={}&cert_reason={}",
                encode(&p.fingerprint),
                encode(&p.host),
                encode(&p.reason)
            )));
            return Ok(());
        }
        Err(e) => {
            leptos_actix::redirect(&back(format!("error={}", encode(&e.to_string()))));
            return Ok(());
        }
    }
    let core = crate::auth::ssr::core()?;
    match core
        .add_outside_account(
            s.account.id,
            &mailcore::outside::NewOutside {
                settings: &settings,
                password: &password,
                remember: remember.is_some(),
                session: &s.csrf_token,
                pinned_cert: pinned.as_deref(),
                smtp: smtp.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            },
        )
        .await
    {
        Ok(id) => {
            // Its INBOX joins the unified inbox now, not at the next refresh.
            core.poke_outside_cache();
            leptos_actix::redirect(&format!("/outside/box?a={id}"))
        }
        Err(e) if e.is_temporary() => return Err(crate::auth::ssr::core_error(e)),
        Err(e) => leptos_actix::redirect(&back(format!("error={}", encode(&e.to_string())))),
    }
    Ok(())
}

/// Turns fetching into the local INBOX on or off for an account.
#[server(prefix = "/api", endpoint = "outside_fetch")]
pub async fn outside_fetch(csrf: String, a: i32, mode: String) -> Result<(), AppError> {
    use mailcore::outside::OutsideAccountId;
    use mailcore::outside_fetch::FetchMode;
    let s = crate::mail::ssr::require(&csrf).await?;
    let mode = FetchMode::parse(&mode)
        .ok_or_else(|| crate::error::ssr::raise(AppError::Invalid("unknown fetch mode".into())))?;
    match crate::auth::ssr::core()?
        .set_outside_fetch(s.account.id, OutsideAccountId(a), mode)
        .await
    {
        Ok(()) => leptos_actix::redirect("/outside?ok=fetch"),
        Err(e) if e.is_temporary() => return Err(crate::auth::ssr::core_error(e)),
        Err(e) => leptos_actix::redirect(&format!("/outside?error={}", encode(&e.to_string()))),
    }
    Ok(())
}

/// Remove an account, or give the password for this session.
#[server(prefix = "/api", endpoint = "outside_action")]
pub async fn outside_action(
    csrf: String,
    op: String,
    a: i32,
    #[server(default)] password: String,
) -> Result<(), AppError> {
    use mailcore::outside::OutsideAccountId;
    let s = crate::mail::ssr::require(&csrf).await?;
    let core = crate::auth::ssr::core()?;
    let id = OutsideAccountId(a);
    let r = match op.as_str() {
        "remove" => core.remove_outside_account(s.account.id, id).await,
        "unlock" => core.outside_account(s.account.id, id).await.map(|_| {
            core.hold_outside_password(&s.csrf_token, id, &password);
        }),
        other => {
            return Err(crate::error::ssr::raise(AppError::Invalid(format!(
                "unknown action {other}"
            ))));
        }
    };
    match r {
        Ok(()) if op == "remove" => leptos_actix::redirect("/outside?ok=removed"),
        Ok(()) => leptos_actix::redirect(&format!("/outside/box?a={a}")),
        Err(e) if e.is_temporary() => return Err(crate::auth::ssr::core_error(e)),
        Err(e) => leptos_actix::redirect(&format!("/outside?error={}", encode(&e.to_string()))),
    }
    Ok(())
}

/// Flag, unflag, mark unread, move or delete one outside message, on its
/// server; then back to the message, or to its folder when it left it.
#[server(prefix = "/api", endpoint = "outside_msg_action")]
pub async fn outside_msg_action(
    csrf: String,
    a: i32,
    f: String,
    id: String,
    op: String,
    #[server(default)] target: String,
) -> Result<(), AppError> {
    use mailcore::outside::{MessageRef, OutsideFlag};
    let s = crate::mail::ssr::require(&csrf).await?;
    let Some(login) = ssr::login_for(s.account.id, a, &s.csrf_token).await? else {
        leptos_actix::redirect(&format!("/outside/box?a={a}"));
        return Ok(());
    };
    let client = ssr::client()?;
    let m = MessageRef(id.clone());
    let r = match op.as_str() {
        "flag" => {
            client
                .set_flag(&login, &f, &m, OutsideFlag::Flagged, true)
                .await
        }
        "unflag" => {
            client
                .set_flag(&login, &f, &m, OutsideFlag::Flagged, false)
                .await
        }
        "unread" => {
            client
                .set_flag(&login, &f, &m, OutsideFlag::Seen, false)
                .await
        }
        "move" => client.move_to(&login, &f, &m, &target).await,
        "delete" => client.delete(&login, &f, &m).await,
        other => {
            return Err(crate::error::ssr::raise(AppError::Invalid(format!(
                "unknown action {other}"
            ))));
        }
    };
    // The unified inbox's copy of this INBOX follows at once.
    if r.is_ok() && f.eq_ignore_ascii_case("INBOX") {
        let (gone, seen, flagged) = match op.as_str() {
            "move" | "delete" => (true, None, None),
            "unread" => (false, Some(false), None),
            "flag" => (false, None, Some(true)),
            "unflag" => (false, None, Some(false)),
            _ => (false, None, None),
        };
        let _ = crate::auth::ssr::core()?
            .touch_outside_cached(
                mailcore::outside::OutsideAccountId(a),
                &id,
                gone,
                seen,
                flagged,
            )
            .await;
    }
    let folder_page = format!("/outside/box?a={a}&f={}", encode(&f));
    match r {
        Ok(()) if matches!(op.as_str(), "move" | "delete" | "unread") => {
            leptos_actix::redirect(&format!("{folder_page}&ok={op}"))
        }
        Ok(()) => leptos_actix::redirect(&format!(
            "/outside/read?a={a}&f={}&id={}&ok={op}",
            encode(&f),
            encode(&id)
        )),
        Err(e) => {
            leptos_actix::redirect(&format!("{folder_page}&error={}", encode(&e.to_string())))
        }
    }
    Ok(())
}

/// One folder of an outside account, newest first. A server that is down
/// or refuses the login is a message on the page, not a failed page.
#[server(prefix = "/api", endpoint = "outside_box")]
pub async fn outside_box(
    a: i32,
    f: String,
    page: u32,
    #[server(default)] q: String,
) -> Result<Option<BoxData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    use mailcore::outside::OutsideAccountId;
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let core = core()?;
    let id = OutsideAccountId(a);
    let acct = core
        .outside_account(s.account.id, id)
        .await
        .map_err(core_error)?;
    let folder = if f.is_empty() { "INBOX".to_owned() } else { f };
    let page = page.max(1);
    let mut d = BoxData {
        frame: crate::mail::ssr::frame(&s).await?,
        account: ssr::row(&acct),
        folders: Vec::new(),
        folder: folder.clone(),
        folder_label: mailcore::outside::folder_label(&folder),
        query: q.clone(),
        pop3: acct.settings.protocol == mailcore::outside::Protocol::Pop3,
        rows: Vec::new(),
        total: 0,
        page,
        pages: 1,
        error: None,
        needs_password: false,
    };
    let Some(login) = ssr::login_for(s.account.id, a, &s.csrf_token).await? else {
        d.needs_password = true;
        return Ok(Some(d));
    };
    let client = ssr::client()?;
    let result = async {
        let folders = client.folders(&login).await?;
        let listing = if q.trim().is_empty() {
            client
                .messages(&login, &folder, page, OUTSIDE_PAGE_SIZE)
                .await?
        } else {
            client
                .search(&login, &folder, &q, OUTSIDE_PAGE_SIZE)
                .await?
        };
        Ok::<_, mailcore::outside::OutsideError>((folders, listing))
    }
    .await;
    match result {
        Ok((folders, listing)) => {
            d.folders = folders
                .into_iter()
                .map(|f| {
                    let label = mailcore::outside::folder_label(&f.name);
                    (f.name, label, f.noselect)
                })
                .collect();
            d.total = listing.total;
            d.pages = listing.total.div_ceil(OUTSIDE_PAGE_SIZE).max(1);
            d.rows = listing
                .rows
                .into_iter()
                .map(|r| OutsideMsg {
                    id: r.id.0,
                    from: r.from,
                    subject: r.subject,
                    date: short_rfc3339(&r.date),
                    size: crate::mail::human_size(u64::from(r.size)),
                    seen: r.seen,
                    flagged: r.flagged,
                })
                .collect();
            let _ = core.set_outside_status(s.account.id, id, None).await;
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = core.set_outside_status(s.account.id, id, Some(&msg)).await;
            d.error = Some(msg);
        }
    }
    d.account.last_error = d.error.clone();
    Ok(Some(d))
}

/// "2026-12-04T10:20:30+01:00" -> "2026-12-04 10:20".
#[cfg(feature = "ssr")]
fn short_rfc3339(s: &str) -> String {
    if s.len() >= 16 {
        format!("{} {}", &s[..10], &s[11..16])
    } else {
        s.to_owned()
    }
}

#[server(prefix = "/api", endpoint = "outside_read")]
pub async fn outside_read(
    a: i32,
    f: String,
    id: String,
) -> Result<Option<OutsideReadData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    use mailcore::outside::OutsideAccountId;
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let acct = core()?
        .outside_account(s.account.id, OutsideAccountId(a))
        .await
        .map_err(core_error)?;
    let mut d = OutsideReadData {
        frame: crate::mail::ssr::frame(&s).await?,
        account: ssr::row(&acct),
        folder: f.clone(),
        folder_label: mailcore::outside::folder_label(&f),
        id: id.clone(),
        folders: Vec::new(),
        pop3: acct.settings.protocol == mailcore::outside::Protocol::Pop3,
        can_send: acct.settings.outgoing.is_some(),
        from: String::new(),
        to: String::new(),
        cc: String::new(),
        subject: String::new(),
        date: String::new(),
        text: String::new(),
        has_html: false,
        blocked_images: 0,
        attachments: Vec::new(),
        error: None,
    };
    let Some(login) = ssr::login_for(s.account.id, a, &s.csrf_token).await? else {
        d.error = Some("Enter this account's password again to read it.".into());
        return Ok(Some(d));
    };
    let client = ssr::client()?;
    match client
        .message(&login, &f, &mailcore::outside::MessageRef(id.clone()))
        .await
    {
        Ok(raw) => {
            // Reading set \Seen at the provider (IMAP); the cache follows.
            if !d.pop3 && f.eq_ignore_ascii_case("INBOX") {
                let _ = crate::auth::ssr::core()?
                    .touch_outside_cached(
                        mailcore::outside::OutsideAccountId(a),
                        &id,
                        false,
                        Some(true),
                        None,
                    )
                    .await;
            }
            if !d.pop3
                && let Ok(folders) = client.folders(&login).await
            {
                d.folders = folders
                    .into_iter()
                    .filter(|f| !f.noselect)
                    .map(|f| {
                        let label = mailcore::outside::folder_label(&f.name);
                        (f.name, label)
                    })
                    .collect();
            }
            let v = mailcore::view::MessageView::parse(&raw);
            d.from = v.from;
            d.to = v.to;
            d.cc = v.cc;
            d.subject = v.subject;
            d.date = v.date.map(mailcore::view::short_date).unwrap_or_default();
            d.text = v.text;
            d.has_html = v.html.is_some();
            d.blocked_images = v
                .html
                .as_deref()
                .map(|h| crate::mailhtml::sanitize(h, false).blocked)
                .unwrap_or(0);
            d.attachments = v
                .attachments
                .into_iter()
                .map(|a| AttachmentRow {
                    index: a.index,
                    filename: mailcore::view::safe_filename(&a.filename),
                    content_type: a.content_type,
                    size: crate::mail::human_size(a.size),
                })
                .collect();
        }
        Err(e) => d.error = Some(e.to_string()),
    }
    Ok(Some(d))
}

#[component]
pub fn OutsidePage() -> impl IntoView {
    let act = ServerAction::<OutsideAction>::new();
    let fetch_act = ServerAction::<OutsideFetch>::new();
    let data = Resource::new(
        move || (act.version().get(), fetch_act.version().get()),
        |_| outside_list(),
    );
    let error = q("error");
    view! {
        <PageTitle text="Other accounts · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let err = error();
                        let csrf = d.frame.csrf.clone();
                        let accounts = d.accounts.clone();
                        let list = accounts.into_iter().map(move |a| {
                                        let csrf = csrf.clone();
                                        let csrf2 = csrf.clone();
                                        view! {
                                            <li>
                                                <a href=format!("/outside/box?a={}", a.id)>{a.address.clone()}</a>
                                                " "
                                                <span class="count">{format!("{} · {}", a.protocol, a.server)}</span>
                                                {(!a.remembered).then(|| view! { <span class="label">"password for this session only"</span> })}
                                                {a.last_error.clone().map(|e| view! { <p class="error">{e}</p> })}
                                                <ActionForm action=fetch_act attr:class="inline fetchform">
                                                    <input type="hidden" name="csrf" value=csrf2/>
                                                    <input type="hidden" name="a" value=a.id.to_string()/>
                                                    <select name="mode" aria-label=format!("Fetching for {}", a.address) data-testid="fetch-mode">
                                                        <option value="" selected=a.fetch_mode.is_empty()>"Read here only"</option>
                                                        <option value="keep" selected=a.fetch_mode == "keep">"Fetch new mail into my Inbox, keep it on the server"</option>
                                                        {a.pop3.then(|| view! {
                                                            <option value="delete" selected=a.fetch_mode == "delete">"Fetch new mail into my Inbox, then delete it on the server"</option>
                                                        })}
                                                    </select>
                                                    <button type="submit">"Save"</button>
                                                </ActionForm>
                                                {(!a.fetch_status.is_empty()).then(|| view! { <p class="count" data-testid="fetch-status">{a.fetch_status.clone()}</p> })}
                                                <ActionForm action=act attr:class="inline">
                                                    <input type="hidden" name="csrf" value=csrf/>
                                                    <input type="hidden" name="op" value="remove"/>
                                                    <input type="hidden" name="a" value=a.id.to_string()/>
                                                    <button type="submit">"Remove"</button>
                                                </ActionForm>
                                            </li>
                                        }
                                    }).collect_view();
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"Other accounts"</h1>
                                <p>"Read mail from another provider's mailbox here, with its address and password."</p>
                                {(!err.is_empty()).then(|| view! { <p class="error" role="alert">{err.clone()}</p> })}
                                <form method="get" action="/outside/add" class="inline">
                                    <label for="oaddr">"Address "</label>
                                    <input id="oaddr" name="address" type="email" required placeholder="you@example.com"/>
                                    <input type="hidden" name="discover" value="1"/>
                                    <button type="submit">"Find settings"</button>
                                </form>
                                <ul class="outsidelist" data-testid="outside-accounts">
                                    {list}
                                </ul>
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn OutsideAddPage() -> impl IntoView {
    let act = ServerAction::<OutsideAdd>::new();
    let query = use_query_map();
    let data = Resource::new(
        move || {
            query.with(|q| {
                let g = |k: &str| q.get(k).unwrap_or_default();
                (
                    OutsideForm {
                        address: g("address"),
                        username: g("username"),
                        protocol: g("protocol"),
                        in_host: g("in_host"),
                        in_port: g("in_port"),
                        in_security: g("in_security"),
                        out_host: g("out_host"),
                        out_port: g("out_port"),
                        out_security: g("out_security"),
                        smtp_username: g("smtp_username"),
                    },
                    g("discover") == "1",
                )
            })
        },
        |(form, discover)| outside_add_data(form, discover),
    );
    let error = q("error");
    let cert = q("cert");
    let cert_host = q("cert_host");
    let cert_reason = q("cert_reason");
    view! {
        <PageTitle text="Add an account · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let err = error();
                        let fp = cert();
                        let f = d.form.clone();
                        let sel = |v: &str, want: &str| v.eq_ignore_ascii_case(want);
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>{format!("Add {}", f.address)}</h1>
                                {d.found_by.clone().map(|m| view! { <p class="notice" role="status" data-testid="found-by">{m}</p> })}
                                {(d.searched && d.found_by.is_none()).then(|| view! {
                                    <p class="notice" role="status" data-testid="found-by">"No settings were found for this address. Enter the servers below."</p>
                                })}
                                {(!err.is_empty()).then(|| view! { <p class="error" role="alert" data-testid="add-error">{err.clone()}</p> })}
                                {(!fp.is_empty()).then(|| view! {
                                    <div class="error" role="alert" data-testid="cert-problem">
                                        <p>{format!("The certificate of {} is not trusted: {}.", cert_host(), cert_reason())}</p>
                                        <p>"SHA-256 fingerprint: " <code>{fp.clone()}</code></p>
                                        <p>"Trust it only if the provider confirms this fingerprint. Tern will then accept this certificate, and no other, for this account."</p>
                                    </div>
                                })}
                                <ActionForm action=act attr:class="outsideform">
                                    <input type="hidden" name="csrf" value=d.frame.csrf.clone()/>
                                    <input type="hidden" name="address" value=f.address.clone()/>
                                    <label for="opw">"Password"</label>
                                    <input id="opw" name="password" type="password" required autocomplete="off"/>
                                    <label class="check">
                                        <input type="checkbox" name="remember" value="1" checked/>
                                        " Remember the password (stored encrypted; untick to keep it for this session only)"
                                    </label>
                                    {(!fp.is_empty()).then(|| view! {
                                        <label class="check">
                                            <input type="checkbox" name="trust" value=fp.clone() data-testid="trust-cert"/>
                                            " Trust this certificate for this account"
                                        </label>
                                    })}
                                    <details open=d.found_by.is_none()>
                                        <summary>"Advanced: servers"</summary>
                                        <label for="ouser">"User name"</label>
                                        <input id="ouser" name="username" type="text" value=f.username.clone()/>
                                        <label for="oproto">"Protocol"</label>
                                        <select id="oproto" name="protocol">
                                            <option value="imap" selected=sel(&f.protocol, "imap")>"IMAP"</option>
                                            <option value="pop3" selected=sel(&f.protocol, "pop3")>"POP3"</option>
                                        </select>
                                        <label for="oinhost">"Incoming server"</label>
                                        <input id="oinhost" name="in_host" type="text" value=f.in_host.clone()/>
                                        <label for="oinport">"Port"</label>
                                        <input id="oinport" name="in_port" type="text" inputmode="numeric" value=f.in_port.clone()/>
                                        <label for="oinsec">"Security"</label>
                                        <select id="oinsec" name="in_security">
                                            <option value="tls" selected=sel(&f.in_security, "tls")>"TLS"</option>
                                            <option value="starttls" selected=sel(&f.in_security, "starttls")>"STARTTLS"</option>
                                        </select>
                                        <label for="oouthost">"Outgoing (SMTP) server"</label>
                                        <input id="oouthost" name="out_host" type="text" value=f.out_host.clone()/>
                                        <label for="ooutport">"Port"</label>
                                        <input id="ooutport" name="out_port" type="text" inputmode="numeric" value=f.out_port.clone()/>
                                        <label for="ooutsec">"Security"</label>
                                        <select id="ooutsec" name="out_security">
                                            <option value="tls" selected=sel(&f.out_security, "tls")>"TLS"</option>
                                            <option value="starttls" selected=sel(&f.out_security, "starttls")>"STARTTLS"</option>
                                        </select>
                                        <label for="osmtpuser">"Outgoing user name, if it is not the one above"</label>
                                        <input id="osmtpuser" name="smtp_username" type="text" value=f.smtp_username.clone() autocomplete="off"/>
                                        <label for="osmtppw">"Outgoing password, if it is not the one above"</label>
                                        <input id="osmtppw" name="smtp_password" type="password" autocomplete="off"/>
                                    </details>
                                    <button type="submit" class="primary">"Sign in and add"</button>
                                </ActionForm>
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn OutsideBoxPage() -> impl IntoView {
    let unlock = ServerAction::<OutsideAction>::new();
    let a = q("a");
    let f = q("f");
    let page = q("page");
    let query = q("q");
    let data = Resource::new(
        move || {
            (
                a().parse::<i32>().unwrap_or(0),
                f(),
                page().parse::<u32>().unwrap_or(1),
                query(),
                unlock.version().get(),
            )
        },
        |(a, f, page, q, _)| outside_box(a, f, page, q),
    );
    let action_error = q("error");
    let sent = q("sent");
    view! {
        <PageTitle text="Other account · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => view! {
                        {(!action_error().is_empty()).then(|| view! { <p class="error" role="alert" data-testid="action-error">{action_error()}</p> })}
                        {(sent() == "1").then(|| view! { <p class="notice" role="status" data-testid="sent-notice">{format!("Sent through {}.", d.account.address)}</p> })}
                        <OutsideBox d=d unlock=unlock/>
                    }.into_any(),
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
fn OutsideBox(d: BoxData, unlock: ServerAction<OutsideAction>) -> impl IntoView {
    let id = d.account.id;
    let folder = d.folder.clone();
    let href = move |f: &str, p: u32| format!("/outside/box?a={id}&f={}&page={p}", encode(f));
    // JavaScript on: new mail in this folder shows while the page is open
    // (IMAP IDLE at the provider, through /outside/events).
    let fresh = RwSignal::new(None::<u32>);
    #[cfg(feature = "hydrate")]
    if !d.pop3 && d.error.is_none() && !d.needs_password && d.query.is_empty() {
        crate::live::watch(
            format!("/outside/events?a={id}&f={}", encode(&folder)),
            fresh,
        );
    }
    let total = d.total;
    let reload = href(&folder, 1);
    let banner = move || {
        fresh.get().filter(|n| *n != total).map(|_| {
            view! {
                <p class="notice" role="status" data-testid="new-mail">
                    "New mail has arrived. " <a href=reload.clone() rel="external">"Show it"</a>
                </p>
            }
        })
    };
    let prev = (d.page > 1).then(|| href(&folder, d.page - 1));
    let next = (d.page < d.pages).then(|| href(&folder, d.page + 1));
    view! {
        <Shell frame=d.frame.clone()>
            <h1 data-testid="outside-title">{format!("{} · {}", d.account.address, d.folder_label)}</h1>
            {d.error.clone().map(|e| view! { <p class="error" role="alert" data-testid="outside-error">{e}</p> })}
            {banner}
            {d.needs_password.then(|| view! {
                <ActionForm action=unlock attr:class="inline">
                    <input type="hidden" name="csrf" value=d.frame.csrf.clone()/>
                    <input type="hidden" name="op" value="unlock"/>
                    <input type="hidden" name="a" value=id.to_string()/>
                    <label for="upw">"Password for this session "</label>
                    <input id="upw" name="password" type="password" required autocomplete="off"/>
                    <button type="submit">"Open"</button>
                </ActionForm>
            })}
            <nav class="outsidefolders" aria-label="Folders of this account">
                <ul>
                    {d.folders.iter().map(|(name, label, noselect)| {
                        let current = *name == d.folder;
                        if *noselect {
                            view! { <li>{label.clone()}</li> }.into_any()
                        } else {
                            view! {
                                <li class:current=current>
                                    <a href=href(name, 1)>{label.clone()}</a>
                                </li>
                            }.into_any()
                        }
                    }).collect_view()}
                </ul>
            </nav>
            {(!d.pop3).then(|| view! {
                <form method="get" action="/outside/box" role="search" class="inline">
                    <input type="hidden" name="a" value=id.to_string()/>
                    <input type="hidden" name="f" value=d.folder.clone()/>
                    <input type="search" name="q" value=d.query.clone() aria-label="Search this folder" placeholder="Search this folder"/>
                    <button type="submit">"Search"</button>
                </form>
            })}
            <p class="count" data-testid="outside-total">{crate::pages::count(d.total, "message", "messages")}</p>
            <table class="messages" data-testid="outside-messages">
                <tbody>
                    {d.rows.iter().map(|r| {
                        let link = format!("/outside/read?a={id}&f={}&id={}", encode(&d.folder), encode(&r.id));
                        view! {
                            <tr class:unread=!r.seen>
                                <td class="flag">{if r.flagged { "★" } else { "" }}</td>
                                <td class="from">{r.from.clone()}</td>
                                <td class="subject"><a href=link>{if r.subject.is_empty() { "(no subject)".to_owned() } else { r.subject.clone() }}</a></td>
                                <td class="date">{r.date.clone()}</td>
                                <td class="size">{r.size.clone()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <p class="pager">
                {prev.map(|h| view! { <a href=h rel="prev">"Newer"</a> })}
                {format!(" Page {} of {} ", d.page, d.pages)}
                {next.map(|h| view! { <a href=h rel="next">"Older"</a> })}
            </p>
        </Shell>
    }
}

#[component]
pub fn OutsideReadPage() -> impl IntoView {
    let a = q("a");
    let f = q("f");
    let mid = q("id");
    let images = q("images");
    let act = ServerAction::<OutsideMsgAction>::new();
    let data = Resource::new(
        move || {
            (
                a().parse::<i32>().unwrap_or(0),
                f(),
                mid(),
                act.version().get(),
            )
        },
        |(a, f, id, _)| outside_read(a, f, id),
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let back = format!("/outside/box?a={}&f={}", d.account.id, encode(&d.folder));
                        let mq = format!("a={}&f={}&id={}", d.account.id, encode(&d.folder), encode(&d.id));
                        let here = format!("/outside/read?{mq}");
                        let images_on = images() == "1";
                        let title = if d.subject.is_empty() { "(no subject)".to_owned() } else { d.subject.clone() };
                        view! {
                            <PageTitle text=format!("{title} · Tern")/>
                            <Shell frame=d.frame.clone()>
                                <p><a href=back>{format!("Back to {} · {}", d.account.address, d.folder_label)}</a></p>
                                {d.error.clone().map(|e| view! { <p class="error" role="alert" data-testid="outside-error">{e}</p> })}
                                {d.error.is_none().then(|| view! { <OutsideActions d=d.clone() act=act/> })}
                                <article class="message">
                                    <h1 data-testid="outside-subject">{title}</h1>
                                    <dl class="headers">
                                        <dt>"From"</dt><dd data-testid="outside-from">{d.from.clone()}</dd>
                                        <dt>"To"</dt><dd>{d.to.clone()}</dd>
                                        {(!d.cc.is_empty()).then(|| view! { <dt>"Cc"</dt><dd>{d.cc.clone()}</dd> })}
                                        <dt>"Date"</dt><dd>{d.date.clone()}</dd>
                                    </dl>
                                    {(d.has_html && d.blocked_images > 0 && !images_on).then(|| view! {
                                        <p class="notice" role="status">
                                            {format!("{} remote image(s) hidden to protect your privacy. ", d.blocked_images)}
                                            <a href=format!("{here}&images=1") rel="external">"Show images in this message"</a>
                                        </p>
                                    })}
                                    {if d.has_html {
                                        view! {
                                            <iframe
                                                class="htmlbody"
                                                title="Message body"
                                                src=format!("/outside/msg/body?{mq}&images={}", u8::from(images_on))
                                                sandbox="allow-popups allow-popups-to-escape-sandbox"
                                                referrerpolicy="no-referrer"
                                                data-testid="outside-html"
                                            ></iframe>
                                        }.into_any()
                                    } else {
                                        view! { <pre class="body" data-testid="outside-body">{d.text.clone()}</pre> }.into_any()
                                    }}
                                    {(!d.attachments.is_empty()).then(|| view! {
                                        <ul class="attachments" data-testid="outside-attachments">
                                            {d.attachments.iter().map(|a| view! {
                                                <li>
                                                    <a href=format!("/outside/msg/att?{mq}&n={}", a.index) download=a.filename.clone()>{a.filename.clone()}</a>
                                                    {format!(" ({}, {})", a.content_type, a.size)}
                                                </li>
                                            }).collect_view()}
                                        </ul>
                                    })}
                                </article>
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

/// What a user can do with an outside message: reply (through the
/// account's provider), flag, mark unread, move, delete.
#[component]
fn OutsideActions(d: OutsideReadData, act: ServerAction<OutsideMsgAction>) -> impl IntoView {
    let a = d.account.id;
    let q = format!("a={a}&f={}&id={}", encode(&d.folder), encode(&d.id));
    let (c, f, i) = (d.frame.csrf.clone(), d.folder.clone(), d.id.clone());
    let button = move |op: &'static str, label: &'static str| {
        action_button(act, c.clone(), a, f.clone(), i.clone(), op, label)
    };
    let imap = !d.pop3;
    let folders: Vec<(String, String)> = d
        .folders
        .iter()
        .filter(|(f, _)| *f != d.folder)
        .cloned()
        .collect();
    let mover = (imap && !folders.is_empty()).then(|| view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="csrf" value=d.frame.csrf.clone()/>
            <input type="hidden" name="a" value=a.to_string()/>
            <input type="hidden" name="f" value=d.folder.clone()/>
            <input type="hidden" name="id" value=d.id.clone()/>
            <input type="hidden" name="op" value="move"/>
            <select name="target" aria-label="Move to folder">
                {folders.iter().map(|(f, label)| view! { <option value=f.clone()>{label.clone()}</option> }).collect_view()}
            </select>
            <button type="submit" data-testid="outside-move">"Move"</button>
        </ActionForm>
    });
    let flags = imap.then(|| {
        (
            button("flag", "Flag"),
            button("unflag", "Unflag"),
            button("unread", "Mark unread"),
        )
    });
    view! {
        <div class="actions" role="toolbar" aria-label="Message actions">
            {d.can_send.then(|| view! {
                <a class="button" href=format!("/compose?mode=reply&{q}") data-testid="outside-reply">"Reply"</a>
                <a class="button" href=format!("/compose?mode=forward&{q}")>"Forward"</a>
            })}
            {flags}
            {mover}
            {button("delete", "Delete")}
        </div>
    }
}

fn action_button(
    act: ServerAction<OutsideMsgAction>,
    csrf: String,
    a: i32,
    folder: String,
    id: String,
    op: &'static str,
    label: &'static str,
) -> impl IntoView {
    view! {
        <ActionForm action=act attr:class="inline">
            <input type="hidden" name="csrf" value=csrf/>
            <input type="hidden" name="a" value=a.to_string()/>
            <input type="hidden" name="f" value=folder/>
            <input type="hidden" name="id" value=id/>
            <input type="hidden" name="op" value=op/>
            <button type="submit" data-testid=format!("outside-{op}")>{label}</button>
        </ActionForm>
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedMsg {
    /// "" for the local INBOX, else the outside address.
    pub account: String,
    pub href: String,
    pub from: String,
    pub subject: String,
    pub date: String,
    pub seen: bool,
    pub flagged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedData {
    pub frame: Frame,
    pub rows: Vec<UnifiedMsg>,
    pub total: u64,
    /// Position of the first row in the whole list (from 1).
    pub at: u64,
    /// Keys of the first and last rows, for the Newer and Older links
    /// (None when the list ends that way).
    pub newer: Option<String>,
    pub older: Option<String>,
    pub query: String,
    /// Server time to list the page (the store's part), for the footer.
    pub list_ms: u64,
}

/// The unified inbox: the local INBOX and every outside account's INBOX
/// (from the header cache), newest first, with search over all of them.
/// Paged by key: `before` (older than that row) or `after` (newer);
/// `at` is only the position shown ("51–100 of 20,000").
#[server(prefix = "/api", endpoint = "unified")]
pub async fn unified(
    before: String,
    after: String,
    at: u64,
    q: String,
) -> Result<Option<UnifiedData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    use mailcore::outside_cache::{UnifiedAt, UnifiedKey, UnifiedSource};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let t0 = std::time::Instant::now();
    let size = crate::mail::PAGE_SIZE;
    // A link that does not parse (edited by hand) shows the newest page.
    let place = match (UnifiedKey::parse(&before), UnifiedKey::parse(&after)) {
        (Some(k), _) => UnifiedAt::Older(k),
        (None, Some(k)) => UnifiedAt::Newer(k),
        (None, None) => UnifiedAt::Newest,
    };
    let newest = place == UnifiedAt::Newest;
    let page = core()?
        .mail(s.account.id)
        .unified_inbox(&place, size, &q)
        .await
        .map_err(core_error)?;
    let list_ms = t0.elapsed().as_millis() as u64;
    let at = if newest || !page.has_newer {
        1
    } else {
        at.max(1)
    };
    let newer = page
        .has_newer
        .then(|| page.rows.first().map(|r| r.key().encode()))
        .flatten();
    let older = page
        .has_older
        .then(|| page.rows.last().map(|r| r.key().encode()))
        .flatten();
    let rows = page
        .rows
        .into_iter()
        .map(|r| {
            let (account, href) = match &r.source {
                UnifiedSource::Local { uid } => (String::new(), format!("/read?f=INBOX&uid={uid}")),
                UnifiedSource::Outside {
                    account,
                    address,
                    key,
                } => (
                    address.clone(),
                    format!("/outside/read?a={account}&f=INBOX&id={}", encode(key)),
                ),
            };
            UnifiedMsg {
                account,
                href,
                from: r.from,
                subject: r.subject,
                date: if r.date > 0 {
                    mailcore::view::short_date(r.date)
                } else {
                    String::new()
                },
                seen: r.seen,
                flagged: r.flagged,
            }
        })
        .collect();
    Ok(Some(UnifiedData {
        frame: crate::mail::ssr::frame(&s).await?,
        rows,
        total: page.total,
        at,
        newer,
        older,
        query: q,
        list_ms,
    }))
}

#[component]
pub fn UnifiedPage() -> impl IntoView {
    let before = q("before");
    let after = q("after");
    let at = q("at");
    let query = q("q");
    let data = Resource::new(
        move || (before(), after(), at().parse::<u64>().unwrap_or(1), query()),
        |(b, a, at, q)| unified(b, a, at, q),
    );
    view! {
        <PageTitle text="All inboxes · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let shown = d.rows.len() as u64;
                        let size = crate::mail::PAGE_SIZE;
                        let qs = encode(&d.query);
                        let newest = d.newer.is_some().then(|| format!("/unified?q={qs}"));
                        let newer = d.newer.as_ref().map(|k| {
                            format!("/unified?after={}&at={}&q={qs}", encode(k), d.at.saturating_sub(size).max(1))
                        });
                        let older = d.older.as_ref().map(|k| {
                            format!("/unified?before={}&at={}&q={qs}", encode(k), d.at.saturating_add(shown))
                        });
                        let rows = d.rows.clone();
                        let me = d.frame.me.clone();
                        let span = if shown == 0 {
                            String::new()
                        } else {
                            format!(" Messages {}–{} of {} ", d.at, d.at + shown - 1, d.total)
                        };
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"All inboxes"</h1>
                                <form method="get" action="/unified" role="search" class="inline">
                                    <input type="search" name="q" value=d.query.clone() aria-label="Search all inboxes" placeholder="Search all inboxes"/>
                                    <button type="submit">"Search"</button>
                                </form>
                                <p class="count" data-testid="unified-total">{crate::pages::count(d.total, "message", "messages")}</p>
                                <table class="messages" data-testid="unified-messages">
                                    <tbody>
                                        {rows.into_iter().map(|r| {
                                            let tag = if r.account.is_empty() { me.clone() } else { r.account.clone() };
                                            view! {
                                                <tr class:unread=!r.seen>
                                                    <td class="flag">{if r.flagged { "★" } else { "" }}</td>
                                                    <td class="account"><span class="label">{tag}</span></td>
                                                    <td class="from">{r.from.clone()}</td>
                                                    <td class="subject"><a href=r.href.clone()>{if r.subject.is_empty() { "(no subject)".to_owned() } else { r.subject.clone() }}</a></td>
                                                    <td class="date">{r.date.clone()}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                <p class="pager">
                                    {newest.map(|h| view! { <a href=h>"Newest"</a> " " })}
                                    {newer.map(|h| view! { <a href=h rel="prev">"Newer"</a> })}
                                    {span}
                                    {older.map(|h| view! { <a href=h rel="next">"Older"</a> })}
                                </p>
                                <p class="hint" data-testid="unified-time">{format!("Listed in {} ms.", d.list_ms)}</p>
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}
