//! The webmail's data: one server function per page (so a page is one
//! round trip, and renders complete without JavaScript) and one per kind
//! of action. Every action takes the session's CSRF token and checks it
//! (Leptos adds none, leptos#3786), then redirects back, so the same form
//! works as a plain HTML post and as a hydrated action.

use leptos::prelude::*;

use crate::error::AppError;
use serde::{Deserialize, Serialize};

use crate::auth::FolderInfo;

pub const PAGE_SIZE: u64 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgRow {
    pub uid: i64,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub snippet: String,
    pub date: String,
    pub seen: bool,
    pub flagged: bool,
    pub answered: bool,
    pub attachment: bool,
    /// The message's keywords as labels ([`keyword_labels`]).
    pub labels: Vec<String>,
    /// For search across folders: where the message lives.
    pub folder: String,
    pub thread_id: i64,
    /// In Sent: what became of the message's outside recipients
    /// (`delivered`, `pending`, `bounced`, ...), when anything is on record.
    pub delivery: Option<String>,
    /// In Snoozed: when it comes back, in the reader's zone.
    pub snoozed_until: Option<String>,
}

/// One recipient of a sent message and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub rcpt: String,
    /// `delivered`, `pending`, `bounced` or `unknown`: the badge's class.
    pub class: String,
    /// In words: "Delivered to mx.example.org at 12:01: 250 2.0.0 ok".
    pub text: String,
}

/// What every signed-in page shows around its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub me: String,
    pub role: String,
    pub csrf: String,
    pub folders: Vec<FolderInfo>,
    /// "Mail held for you": mail accepted for this account that is not
    /// in the store yet (the store is down or behind), in words.
    #[serde(default)]
    pub held: Option<String>,
    /// The latest mbox import from the webmail.
    #[serde(default)]
    pub import: Option<ImportNote>,
    /// Services not operating now, each "Service: plain words" (from the
    /// status page's monitor).
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Mail this user sent that was deferred and still waits, in words.
    #[serde(default)]
    pub outbound: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportNote {
    pub text: String,
    pub running: bool,
    pub failed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListData {
    pub frame: Frame,
    pub folder: String,
    pub query: String,
    pub rows: Vec<MsgRow>,
    pub total: u64,
    pub page: u64,
    pub pages: u64,
    pub search_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRow {
    pub index: u32,
    pub filename: String,
    pub content_type: String,
    pub size: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadData {
    pub frame: Frame,
    pub folder: String,
    pub uid: i64,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub date: String,
    pub text: String,
    pub has_html: bool,
    pub blocked_images: usize,
    pub attachments: Vec<AttachmentRow>,
    /// All the message has; `attachments` holds at most the first 200.
    pub attachment_count: usize,
    pub flagged: bool,
    pub labels: Vec<String>,
    pub thread_id: i64,
    pub thread_len: u64,
    /// Neighbours in the mailbox (by UID): `j` goes to the older, `k` to
    /// the newer, as in the list, which is newest first.
    pub older_uid: Option<i64>,
    pub newer_uid: Option<i64>,
    /// This server's sender checks: verified, could not verify, or not
    /// checked (see `MessageView::sender_verified`).
    pub sender_verified: Option<bool>,
    /// In Sent: each recipient and what became of it.
    pub delivery: Vec<DeliveryRow>,
    /// The reader's time zone (`UTC+01:00`), for the snooze choices.
    pub zone: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadData {
    pub frame: Frame,
    pub subject: String,
    pub rows: Vec<MsgRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeForm {
    pub csrf: String,
    pub me: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    pub body: String,
    /// The reader's time zone (`UTC+01:00`), for "send later".
    pub zone: String,
    pub mode: String,
    pub ref_f: String,
    pub ref_uid: Option<i64>,
    /// A message of an outside account replied to or forwarded: the
    /// account and the message's id there (`ref_f` is its folder).
    pub ref_a: Option<i32>,
    pub ref_id: String,
    /// Who the message is from: "" for the account's own address, or
    /// `o:<id>` for an outside account, sent through its provider.
    pub from: String,
    /// (value, label) of every address the user may send as.
    pub from_choices: Vec<(String, String)>,
    /// (value, signature) of those with a signature: changing From swaps
    /// the signature in the body (with JavaScript).
    #[serde(default)]
    pub signatures: Vec<(String, String)>,
    pub draft_uid: Option<i64>,
    /// Attachments the message will carry without a new upload: those of
    /// the forwarded original, or those already in the draft.
    pub forwarded: Vec<String>,
    pub correspondents: Vec<String>,
    pub max_size_mb: u64,
    pub autosave_secs: u64,
}

/// The signature block a body carries for `sig` (RFC 3676 §4.3's `-- `
/// line above it); empty for no signature.
pub fn signature_block(sig: &str) -> String {
    if sig.is_empty() {
        String::new()
    } else {
        format!("\n\n-- \n{sig}")
    }
}

/// `body` with the signature `old` swapped for `new`, when the body still
/// has `old`'s block as it was put there (an HTML form may have dropped
/// its first newline); an empty body gets `new`'s. A body whose signature
/// the user changed is left alone.
pub fn swap_signature(body: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return if body.trim().is_empty() {
            signature_block(new)
        } else {
            body.to_owned()
        };
    }
    let needle = format!("-- \n{old}");
    let Some(i) = body
        .match_indices(&needle)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || body[..i].ends_with('\n'))
    else {
        return body.to_owned();
    };
    let (head, tail) = (&body[..i], &body[i + needle.len()..]);
    if new.is_empty() {
        format!("{}{tail}", head.trim_end_matches('\n'))
    } else {
        format!("{head}-- \n{new}{tail}")
    }
}

pub fn human_size(n: u64) -> String {
    match n {
        n if n >= 1024 * 1024 => format!("{:.1} MB", n as f64 / (1024.0 * 1024.0)),
        n if n >= 1024 => format!("{} KB", n.div_ceil(1024)),
        n => format!("{n} B"),
    }
}

/// Only local paths, so a crafted `back` cannot send the user elsewhere.
pub fn local_path(p: &str) -> String {
    if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') {
        p.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use mailcore::sessions::WebSession;
    use mailcore::{Flags, MessageSummary};

    use super::*;
    use crate::auth::ssr::{core, core_error, current_session};

    pub fn forbid(msg: &str) -> AppError {
        crate::error::ssr::raise(AppError::Forbidden(msg.to_owned()))
    }

    /// The session of a state-changing request, with its CSRF token
    /// checked in constant time. A missing session sends the user to sign
    /// in; a wrong token is a 403.
    pub async fn require(csrf: &str) -> Result<WebSession, AppError> {
        let Some(s) = current_session().await? else {
            leptos_actix::redirect("/login");
            return Err(crate::error::ssr::raise(AppError::NotSignedIn));
        };
        if !mailcore::auth::constant_time_eq(csrf.as_bytes(), s.csrf_token.as_bytes()) {
            return Err(forbid("403 Forbidden: bad or missing CSRF token"));
        }
        Ok(s)
    }

    /// The signed-in account's mail.
    pub fn mail(s: &WebSession) -> Result<mailcore::Mail, AppError> {
        Ok(core()?.mail(s.account.id))
    }

    pub async fn frame(s: &WebSession) -> Result<Frame, AppError> {
        Ok(frame_and_names(s).await?.0)
    }

    /// The frame and the folder names by mailbox id (for rows that come
    /// from several folders), from one read of the mailboxes: their counts
    /// are a GROUP BY over the account's messages.
    pub async fn frame_and_names(
        s: &WebSession,
    ) -> Result<
        (
            Frame,
            std::collections::HashMap<mailcore::MailboxId, String>,
        ),
        AppError,
    > {
        let boxes = mail(s)?.mailboxes().await.map_err(core_error)?;
        let names = boxes.iter().map(|m| (m.id, m.name.clone())).collect();
        let held = match crate::auth::ssr::core()?.mail_held_for(s.account.id) {
            Some((n, since)) => {
                let when = zone(s).await?.date(since);
                Some(format!(
                    "{n} message{} for you arrived since {when} and {} being stored; {} will appear here shortly. Nothing is lost.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "it" } else { "they" },
                ))
            }
            None => None,
        };
        let import =
            crate::auth::ssr::core()?
                .import_job(s.account.id)
                .map(|j| match &j.finished {
                    None => ImportNote {
                        text: format!(
                            "Importing into {}: {} of {} messages…",
                            j.folder, j.done, j.total
                        ),
                        running: true,
                        failed: false,
                    },
                    Some(Ok(r)) => ImportNote {
                        text: format!(
                            "Imported {} message(s) into {}; {} already there.",
                            r.added, j.folder, r.skipped
                        ),
                        running: false,
                        failed: false,
                    },
                    Some(Err(e)) => ImportNote {
                        text: format!(
                            "The import into {} stopped after {} of {} messages: {e}",
                            j.folder, j.done, j.total
                        ),
                        running: false,
                        failed: true,
                    },
                });
        let core = crate::auth::ssr::core()?;
        let degraded = core
            .status_board()
            .troubles()
            .map(|t| format!("{}: {}", t.service.title(), t.summary))
            .collect();
        // A page still renders if this read fails: it is a courtesy.
        let outbound = match core
            .outbound_waiting(std::slice::from_ref(&s.account.address))
            .await
        {
            Ok(Some((n, reason, next))) => {
                let when = zone(s).await?.date(next);
                Some(format!(
                    "{n} message{} you sent {} waiting to be delivered ({reason}); the next try is at {when}. Nothing is lost.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                ))
            }
            _ => None,
        };
        let frame = Frame {
            import,
            held,
            degraded,
            outbound,
            me: s.account.address.clone(),
            role: s.account.role.as_str().to_owned(),
            csrf: s.csrf_token.clone(),
            folders: boxes
                .into_iter()
                .map(|m| FolderInfo {
                    name: m.name,
                    unseen: m.unseen,
                    total: m.total,
                })
                .collect(),
        };
        Ok((frame, names))
    }

    /// The labels a message's keywords read as: Thunderbird's five tags by
    /// their names, junk verdicts and `$Forwarded` in words, other
    /// keywords as they are; bookkeeping keywords (`$MDNSent`, the
    /// not-junk verdicts, `$Submitted`) show nothing.
    pub fn keyword_labels<'a>(keywords: impl Iterator<Item = &'a str>) -> Vec<String> {
        keywords
            .filter_map(|k| {
                let named = match k.to_ascii_lowercase().as_str() {
                    "$label1" => "Important",
                    "$label2" => "Work",
                    "$label3" => "Personal",
                    "$label4" => "To do",
                    "$label5" => "Later",
                    "$junk" | "junk" => "Junk",
                    "$forwarded" => "Forwarded",
                    "$phishing" => "Phishing",
                    "$mdnsent" | "$notjunk" | "notjunk" | "nonjunk" | "$submitted" => return None,
                    _ => return Some(k.to_owned()),
                };
                Some(named.to_owned())
            })
            .collect()
    }

    /// The IMAP keyword for a label the page names: the named ones are
    /// the `$LabelN` keywords Thunderbird and others use; anything else is
    /// a keyword of its own, if it is a valid IMAP atom.
    pub fn label_keyword(label: &str) -> Option<mailcore::Keyword> {
        let k = match label.trim() {
            "Important" => "$label1",
            "Work" => "$label2",
            "Personal" => "$label3",
            "To do" => "$label4",
            "Later" => "$label5",
            other => other,
        };
        mailcore::Keyword::parse(k)
    }

    pub fn row(m: &MessageSummary, folder: &str, zone: mailcore::view::Zone) -> MsgRow {
        MsgRow {
            uid: m.uid.get(),
            from: m.from.clone(),
            to: m.to.clone(),
            subject: m.subject.clone(),
            snippet: m.snippet.clone(),
            date: zone.date(m.sent_date.unwrap_or(m.internal_date)),
            seen: m.flags.contains(Flags::SEEN),
            flagged: m.flags.contains(Flags::FLAGGED),
            answered: m.flags.contains(Flags::ANSWERED),
            attachment: m.has_attachments,
            labels: keyword_labels(m.keywords.iter().map(|k| k.as_str())),
            folder: folder.to_owned(),
            thread_id: m.thread_id,
            delivery: None,
            snoozed_until: None,
        }
    }

    /// The reader's time zone: the one set in Settings, else the browser's
    /// (the `tz` cookie the page sets, in minutes east of UTC), else UTC.
    pub async fn zone_for(
        core: &mailcore::Core,
        account: mailcore::AccountId,
        req: &actix_web::HttpRequest,
    ) -> mailcore::view::Zone {
        if let Ok(Some(m)) = core.zone_pref(account).await
            && let Some(z) = mailcore::view::Zone::from_offset(m)
        {
            return z;
        }
        req.cookie("tz")
            .and_then(|c| c.value().parse::<i32>().ok())
            .and_then(mailcore::view::Zone::from_offset)
            .unwrap_or(mailcore::view::Zone::UTC)
    }

    pub async fn zone(s: &WebSession) -> Result<mailcore::view::Zone, AppError> {
        let req = crate::auth::ssr::request().await?;
        Ok(zone_for(&crate::auth::ssr::core()?, s.account.id, &req).await)
    }

    /// Whether `f` is the account's Sent folder (special use `\Sent`, or
    /// the name when no folder is marked).
    pub fn is_sent(head: &mailcore::mailboxes::MailboxHead) -> bool {
        match &head.special_use {
            Some(u) => u.eq_ignore_ascii_case("\\Sent"),
            None => head.name == "Sent",
        }
    }

    /// A recipient's state in words.
    pub fn delivery_row(
        st: mailcore::sent_status::RcptStatus,
        zone: mailcore::view::Zone,
    ) -> DeliveryRow {
        use mailcore::sent_status::RcptState;
        let short_date = |t: i64| format!("{} {}", zone.date(t), zone.label());
        let text = match &st.state {
            RcptState::Local => "Delivered to a mailbox on this server".to_owned(),
            RcptState::Queued {
                since,
                waiting: None,
            } => format!("Waiting to be sent (queued {})", short_date(*since)),
            RcptState::Queued {
                waiting: Some((reason, next)),
                ..
            } => format!(
                "Not delivered yet: the receiving server is not answering (\"{reason}\"); next attempt {}",
                short_date(*next)
            ),
            RcptState::Retrying {
                attempts,
                last_reply,
                next_attempt_at,
            } => format!(
                "Not delivered yet: {attempts} attempt{} so far; the last answer was \"{last_reply}\"; next attempt {}",
                if *attempts == 1 { "" } else { "s" },
                short_date(*next_attempt_at)
            ),
            RcptState::Delivered { host, reply, at } => {
                let host = if host.is_empty() {
                    "the receiving server"
                } else {
                    host.as_str()
                };
                format!("Delivered to {host} at {}: \"{reply}\"", short_date(*at))
            }
            RcptState::Bounced { reason, at } => {
                format!("Could not be delivered ({}): \"{reason}\"", short_date(*at))
            }
            RcptState::Removed { at } => {
                format!(
                    "Taken out of the queue by the postmaster ({})",
                    short_date(*at)
                )
            }
            RcptState::Unknown => "No delivery record".to_owned(),
        };
        DeliveryRow {
            class: st.state.class().to_owned(),
            rcpt: st.rcpt,
            text,
        }
    }

    /// One of the account's folders by name.
    pub async fn open(
        mail: &mailcore::Mail,
        name: &str,
    ) -> Result<mailcore::OwnedMailbox, AppError> {
        match mail.mailbox(name).await.map_err(core_error)? {
            Some(m) => Ok(m),
            None => Err(crate::error::ssr::raise(AppError::NotFound(format!(
                "No folder named {name}"
            )))),
        }
    }
}

#[server(prefix = "/api", endpoint = "mail_list")]
pub async fn mail_list(f: String, page: u64, q: String) -> Result<Option<ListData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let mail = mail(&s)?;
    let (frame, names) = frame_and_names(&s).await?;
    let zone = zone(&s).await?;
    let folder = if f.is_empty() { "INBOX".to_owned() } else { f };
    let page = page.max(1);
    let offset = (page - 1) * PAGE_SIZE;
    // The folder, opened once (a search covers every folder and has none).
    let mbox = if q.trim().is_empty() {
        Some(open(&mail, &folder).await?)
    } else {
        None
    };
    let (rows, total, search_ms) = if let Some(mbox) = &mbox {
        let (rows, total) = mbox
            .list(offset, PAGE_SIZE, mailcore::SortOrder::DateDesc)
            .await
            .map_err(core_error)?;
        (rows, total, None)
    } else {
        // Search covers every folder: what users of Gmail and Roundcube's
        // "all folders" scope expect from the one search box.
        let t = std::time::Instant::now();
        let (rows, total) = mail
            .search(None, &q, offset, PAGE_SIZE)
            .await
            .map_err(core_error)?;
        (
            rows,
            total.min(mailcore::search::COUNT_CAP + 1),
            Some(t.elapsed().as_millis() as u64),
        )
    };
    let found = rows;
    let mut rows: Vec<MsgRow> = found
        .iter()
        .map(|m| {
            row(
                m,
                names.get(&m.mailbox_id).map(String::as_str).unwrap_or(""),
                zone,
            )
        })
        .collect();
    // Sent shows what became of each message, from the queue and the log.
    if mbox.as_ref().is_some_and(|m| is_sent(m.head())) {
        let ids: Vec<&str> = found.iter().map(|m| m.message_id.as_str()).collect();
        let sums = crate::auth::ssr::core()?
            .sent_summaries(&s.account, &ids)
            .await
            .map_err(core_error)?;
        for (r, id) in rows.iter_mut().zip(&ids) {
            r.delivery = sums.get(*id).and_then(|x| x.word()).map(str::to_owned);
        }
    }
    // Snoozed shows when each message comes back.
    if let Some(mbox) = mbox
        .as_ref()
        .filter(|m| m.name() == mailcore::snooze::SNOOZED)
    {
        let uids: Vec<mailcore::Uid> = rows.iter().map(|r| mailcore::Uid(r.uid)).collect();
        let until = mail
            .snoozed_until(mbox.id(), &uids)
            .await
            .map_err(core_error)?;
        for r in rows.iter_mut() {
            r.snoozed_until = until
                .iter()
                .find(|(u, _)| u.get() == r.uid)
                .map(|(_, t)| format!("{} {}", zone.date(*t), zone.label()));
        }
    }
    Ok(Some(ListData {
        frame,
        folder,
        query: q,
        rows,
        total,
        page,
        pages: total.div_ceil(PAGE_SIZE).max(1),
        search_ms,
    }))
}

#[server(prefix = "/api", endpoint = "read_message")]
pub async fn read_message(f: String, uid: i64) -> Result<Option<ReadData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core_error, current_session};
    use mailcore::Flags;
    use mailcore::messages::FlagOp;
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let mail = mail(&s)?;
    let mbox = open(&mail, &f).await?;
    let at = mailcore::Uid(uid);
    let summary = mbox.message(at).await.map_err(core_error)?;
    let view = mbox.view(at).await.map_err(core_error)?;
    // Opening a message reads it, as in every mail client.
    if !summary.flags.contains(Flags::SEEN) {
        mbox.set_flags(&[at], FlagOp::Add, Flags::SEEN)
            .await
            .map_err(core_error)?;
    }
    let blocked = view
        .html
        .as_deref()
        .map(|h| crate::mailhtml::sanitize(h, false).blocked)
        .unwrap_or(0);
    let thread_len = mail
        .thread_len(summary.thread_id)
        .await
        .map_err(core_error)?;
    let (older_uid, newer_uid) = mbox.neighbours(at).await.map_err(core_error)?;
    let (older_uid, newer_uid) = (older_uid.map(|u| u.get()), newer_uid.map(|u| u.get()));
    let frame = frame(&s).await?;
    let zone = zone(&s).await?;
    let settings = use_context::<crate::WebSettings>().unwrap_or_default();
    let sender_verified = settings
        .sender_checks
        .then(|| view.sender_verified(&settings.hostname))
        .flatten();
    let delivery = if is_sent(mbox.head()) {
        let rcpts: Vec<String> = view
            .to_addrs
            .iter()
            .chain(&view.cc_addrs)
            .chain(&view.bcc_addrs)
            .cloned()
            .collect();
        crate::auth::ssr::core()?
            .delivery_status(&s.account, &view.message_id, &rcpts)
            .await
            .map_err(core_error)?
            .into_iter()
            .map(|r| delivery_row(r, zone))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Some(ReadData {
        sender_verified,
        delivery,
        zone: zone.label(),
        frame,
        folder: f,
        uid,
        from: view.from,
        to: view.to,
        cc: view.cc,
        subject: view.subject,
        date: format!(
            "{} {}",
            zone.date(view.date.unwrap_or(summary.internal_date)),
            zone.label()
        ),
        text: view.text,
        has_html: view.html.is_some(),
        blocked_images: blocked,
        attachment_count: view.attachment_count,
        attachments: view
            .attachments
            .into_iter()
            .map(|a| AttachmentRow {
                index: a.index,
                filename: mailcore::view::safe_filename(&a.filename),
                content_type: a.content_type,
                size: human_size(a.size),
            })
            .collect(),
        flagged: summary.flags.contains(Flags::FLAGGED),
        labels: ssr::keyword_labels(summary.keywords.iter().map(|k| k.as_str())),
        thread_id: summary.thread_id,
        thread_len,
        older_uid,
        newer_uid,
    }))
}

#[server(prefix = "/api", endpoint = "thread")]
pub async fn thread(id: i64) -> Result<Option<ThreadData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let mail = mail(&s)?;
    let (frame, names) = frame_and_names(&s).await?;
    let zone = zone(&s).await?;
    let msgs = mail.thread_messages(id).await.map_err(core_error)?;
    Ok(Some(ThreadData {
        frame,
        subject: msgs.first().map(|m| m.subject.clone()).unwrap_or_default(),
        rows: msgs
            .iter()
            .map(|m| {
                row(
                    m,
                    names.get(&m.mailbox_id).map(String::as_str).unwrap_or(""),
                    zone,
                )
            })
            .collect(),
    }))
}

#[cfg(feature = "ssr")]
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_owned()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(feature = "ssr")]
fn prefixed(prefix: &str, subject: &str) -> String {
    let lower = subject.to_ascii_lowercase();
    if lower.starts_with(&prefix.to_ascii_lowercase()) {
        subject.to_owned()
    } else {
        format!("{prefix} {subject}")
    }
}

#[server(prefix = "/api", endpoint = "compose_data")]
pub async fn compose_data(
    mode: String,
    f: String,
    uid: Option<i64>,
    draft: Option<i64>,
    to: String,
    #[server(default)] a: Option<i32>,
    #[server(default)] id: String,
) -> Result<Option<ComposeForm>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core, core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let core = core()?;
    let settings = use_context::<crate::WebSettings>().unwrap_or_default();
    let me = s.account.address.clone();
    let mut d = ComposeForm {
        zone: zone(&s).await?.label(),
        csrf: s.csrf_token.clone(),
        me: me.clone(),
        to,
        max_size_mb: (settings.max_message_size / (1024 * 1024)) as u64,
        autosave_secs: settings.autosave_secs,
        correspondents: mail(&s)?.correspondents(200).await.map_err(core_error)?,
        ..Default::default()
    };
    // The addresses this account sends as (its own and its aliases, each
    // with its name and signature), and the outside accounts that can send
    // (they have an outgoing server).
    let identities = core.identities(&s.account).await.map_err(core_error)?;
    let outside = core
        .outside_accounts(s.account.id)
        .await
        .map_err(core_error)?;
    let senders: Vec<_> = outside
        .iter()
        .filter(|o| o.settings.outgoing.is_some())
        .collect();
    if identities.len() > 1 || !senders.is_empty() {
        for i in &identities {
            d.from_choices.push((i.address.clone(), i.mailbox()));
        }
        for o in &senders {
            d.from_choices.push((
                format!("o:{}", o.id),
                format!(
                    "{} (through {})",
                    o.settings.address,
                    o.settings
                        .outgoing
                        .as_ref()
                        .map(|e| e.host.as_str())
                        .unwrap_or_default()
                ),
            ));
        }
    }
    d.from = me.clone();
    if let Some(a) = a
        && senders.iter().any(|o| o.id.0 == a)
    {
        d.from = format!("o:{a}");
    }
    if let Some(uid) = draft {
        let v = open(&mail(&s)?, "Drafts")
            .await?
            .view(mailcore::Uid(uid))
            .await
            .map_err(core_error)?;
        if let Some(f) = v.from_addrs.first()
            && let Some(i) = identities
                .iter()
                .find(|i| i.address.eq_ignore_ascii_case(f))
        {
            d.from = i.address.clone();
        }
        d.to = v.to_addrs.join(", ");
        d.cc = v.cc_addrs.join(", ");
        d.bcc = v.bcc_addrs.join(", ");
        d.subject = v.subject;
        d.body = v.text;
        d.forwarded = v
            .attachments
            .iter()
            .map(|a| mailcore::view::safe_filename(&a.filename))
            .collect();
        d.draft_uid = Some(uid);
        return Ok(Some(d));
    }
    // The message replied to or forwarded: local, or in an outside account.
    let reference = match (uid, a) {
        (Some(uid), _) => {
            let mbox = open(&mail(&s)?, &f).await?;
            Some(mbox.view(mailcore::Uid(uid)).await.map_err(core_error)?)
        }
        (None, Some(a)) if !id.is_empty() => {
            let login = crate::outside::ssr::login_for(s.account.id, a, &s.csrf_token)
                .await?
                .ok_or_else(|| {
                    crate::error::ssr::raise(AppError::Invalid(
                        "enter the outside account's password first".into(),
                    ))
                })?;
            let raw = crate::outside::ssr::client()?
                .message(&login, &f, &mailcore::outside::MessageRef(id.clone()))
                .await
                .map_err(|e| crate::error::ssr::raise(AppError::Internal(e.to_string())))?;
            d.ref_a = Some(a);
            d.ref_id = id.clone();
            d.ref_f = f.clone();
            Some(mailcore::view::MessageView::parse(&raw))
        }
        _ => None,
    };
    // A reply goes out as the address the message was sent to.
    if let Some(v) = &reference
        && !d.from.starts_with("o:")
        && let Some(i) = identities.iter().find(|i| {
            v.to_addrs
                .iter()
                .chain(&v.cc_addrs)
                .any(|a| a.eq_ignore_ascii_case(&i.address))
        })
    {
        d.from = i.address.clone();
    }
    // The chosen identity's signature, above any quoted text (RFC 3676
    // §4.3's "-- " line, which mail clients recognise).
    let signature = identities
        .iter()
        .find(|i| i.address == d.from)
        .map(|i| i.signature.clone())
        .filter(|s| !s.is_empty())
        .map(|s| format!("\n\n-- \n{s}"))
        .unwrap_or_default();
    d.body = signature.clone();
    d.signatures = identities
        .iter()
        .filter(|i| !i.signature.is_empty())
        .map(|i| (i.address.clone(), i.signature.clone()))
        .collect();
    if let Some(v) = reference {
        let not_me = |a: &String| !a.eq_ignore_ascii_case(&me);
        let reply_to = if v.reply_to_addrs.is_empty() {
            v.from_addrs.clone()
        } else {
            v.reply_to_addrs.clone()
        };
        let header = format!(
            "On {}, {} wrote:",
            v.date.map(mailcore::view::short_date).unwrap_or_default(),
            v.from
        );
        match mode.as_str() {
            "forward" => {
                d.subject = prefixed("Fwd:", &v.subject);
                d.body = format!(
                    "{signature}\n\n---------- Forwarded message ----------\nFrom: {}\nDate: {}\nSubject: {}\nTo: {}\n\n{}",
                    v.from,
                    v.date.map(mailcore::view::short_date).unwrap_or_default(),
                    v.subject,
                    v.to,
                    v.text
                );
                d.forwarded = v
                    .attachments
                    .iter()
                    .map(|a| mailcore::view::safe_filename(&a.filename))
                    .collect();
            }
            m => {
                d.to = reply_to.join(", ");
                if m == "all" {
                    let mut seen: Vec<String> =
                        reply_to.iter().map(|a| a.to_ascii_lowercase()).collect();
                    let mut cc = Vec::new();
                    for a in v
                        .to_addrs
                        .iter()
                        .chain(v.cc_addrs.iter())
                        .filter(|a| not_me(a))
                    {
                        if !seen.contains(&a.to_ascii_lowercase()) {
                            seen.push(a.to_ascii_lowercase());
                            cc.push(a.clone());
                        }
                    }
                    d.cc = cc.join(", ");
                }
                d.subject = prefixed("Re:", &v.subject);
                d.body = format!("{signature}\n\n{header}\n{}", quote(v.text.trim_end()));
            }
        }
        d.mode = if mode.is_empty() {
            "reply".into()
        } else {
            mode
        };
        d.ref_f = f;
        d.ref_uid = uid;
    }
    Ok(Some(d))
}

/// What the message list's and the reader's buttons do to the selected
/// messages: the form's `op` field, read into this type before the server
/// function runs (an unknown one is a 400, never reaches the handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageOp {
    Read,
    Unread,
    Flag,
    Unflag,
    Archive,
    /// To the folder in `target`.
    Move,
    /// To Trash; from Trash, for good.
    Delete,
    /// Add the label in `label` (an IMAP keyword).
    Label,
    /// Take the label in `label` off.
    Unlabel,
}

impl MessageOp {
    /// Whether the messages leave the folder (so an open one closes).
    pub fn moves(self) -> bool {
        matches!(
            self,
            MessageOp::Archive | MessageOp::Move | MessageOp::Delete
        )
    }
}

/// Flags, moves and deletes on the selected messages of one folder.
#[server(prefix = "/api", endpoint = "message_action")]
pub async fn message_action(
    csrf: String,
    f: String,
    #[server(default)] uids: Vec<i64>,
    op: MessageOp,
    #[server(default)] target: String,
    #[server(default)] label: String,
    back: String,
) -> Result<(), AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core_error;
    use mailcore::Flags;
    use mailcore::messages::FlagOp;
    let s = require(&csrf).await?;
    let mail = mail(&s)?;
    let mbox = open(&mail, &f).await?;
    let back = local_path(&back);
    if uids.is_empty() {
        leptos_actix::redirect(&back);
        return Ok(());
    }
    let uids: Vec<mailcore::Uid> = uids.into_iter().map(mailcore::Uid).collect();
    let flag = |op, flags| {
        let (mbox, uids) = (mbox.clone(), uids.clone());
        async move { mbox.set_flags(&uids, op, flags).await.map(|_| ()) }
    };
    let to_folder = |name: String| {
        let (mail, mbox, uids) = (mail.clone(), mbox.clone(), uids.clone());
        async move {
            let Some(dest) = mail.mailbox(&name).await? else {
                return Err(mailcore::CoreError::NotFound(name));
            };
            if dest.id() != mbox.id() {
                mbox.move_to(&uids, &dest).await?;
            }
            Ok(())
        }
    };
    let result = match op {
        MessageOp::Read => flag(FlagOp::Add, Flags::SEEN).await,
        MessageOp::Unread => flag(FlagOp::Remove, Flags::SEEN).await,
        MessageOp::Flag => flag(FlagOp::Add, Flags::FLAGGED).await,
        MessageOp::Unflag => flag(FlagOp::Remove, Flags::FLAGGED).await,
        MessageOp::Archive => to_folder("Archive".into()).await,
        MessageOp::Move => to_folder(target).await,
        // Deleting from Trash removes for good, as IMAP clients do.
        MessageOp::Delete if f == "Trash" => mbox.destroy(&uids).await.map(|_| ()),
        MessageOp::Delete => to_folder("Trash".into()).await,
        MessageOp::Label | MessageOp::Unlabel => {
            let Some(kw) = ssr::label_keyword(&label) else {
                return Err(crate::error::ssr::raise(AppError::Invalid(
                    "a label is a single word of at most 100 characters".into(),
                )));
            };
            let change = mailcore::FlagSet {
                system: Flags::empty(),
                keywords: vec![kw],
            };
            let how = if op == MessageOp::Label {
                FlagOp::Add
            } else {
                FlagOp::Remove
            };
            mbox.store_flags(&uids, how, &change).await.map(|_| ())
        }
    };
    result.map_err(core_error)?;
    // After moving the open message away, go back to its folder.
    let back = if op.moves() && back.starts_with("/read") {
        format!("/mail?f={}", encode(&f))
    } else {
        back
    };
    leptos_actix::redirect(&back);
    Ok(())
}

/// Create, rename or delete a folder.
#[server(prefix = "/api", endpoint = "folder_action")]
pub async fn folder_action(
    csrf: String,
    op: String,
    name: String,
    #[server(default)] new_name: String,
) -> Result<(), AppError> {
    use self::ssr::*;

    let s = require(&csrf).await?;
    let mail = mail(&s)?;
    let r = match op.as_str() {
        "create" => mail
            .create_mailbox(name.trim(), mailcore::NewMailbox::Subscribed)
            .await
            .map(|_| ()),
        "rename" => mail.rename_mailbox(&name, new_name.trim()).await,
        "delete" => mail.delete_mailbox(&name).await,
        other => {
            return Err(crate::error::ssr::raise(AppError::Invalid(format!(
                "unknown action {other}"
            ))));
        }
    };
    match r {
        Ok(()) => leptos_actix::redirect("/folders?ok=1"),
        Err(e) if e.is_temporary() => return Err(crate::auth::ssr::core_error(e)),
        Err(e) => leptos_actix::redirect(&format!("/folders?error={}", encode(&e.to_string()))),
    }
    Ok(())
}

/// RFC 3986 unreserved characters stay; everything else is escaped.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (folder names may hold spaces, `&`, `/`).
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(all(test, feature = "ssr"))]
mod label_tests {
    use super::ssr::keyword_labels;

    #[test]
    fn keywords_read_as_labels() {
        let got = keyword_labels(
            [
                "$Label1",
                "$junk",
                "$MDNSent",
                "$NotJunk",
                "Project-X",
                "$Forwarded",
            ]
            .into_iter(),
        );
        assert_eq!(got, ["Important", "Junk", "Project-X", "Forwarded"]);
    }
}

/// Snoozes a message: out of its folder until `when` (`3h`, `tomorrow`,
/// `week`, or `at` with the date and time in `at`, in the reader's zone),
/// then back at the
/// top, unread (`mailcore::snooze`).
#[server(prefix = "/api", endpoint = "snooze_message")]
pub async fn snooze_message(
    csrf: String,
    f: String,
    uid: i64,
    when: String,
    #[server(default)] at: String,
) -> Result<(), AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core_error;
    let s = require(&csrf).await?;
    let mail = mail(&s)?;
    let mbox = open(&mail, &f).await?;
    let now = crate::auth::ssr::core()?.clock().now();
    let zone = zone(&s).await?;
    let choice = if when == "at" { at } else { when };
    let Some(until) = zone.snooze_until(&choice, now) else {
        leptos_actix::redirect(&format!(
            "/read?f={}&uid={uid}&error={}",
            encode(&f),
            encode("Choose a time in the future to snooze until.")
        ));
        return Ok(());
    };
    mail.snooze(&mbox, mailcore::Uid(uid), until)
        .await
        .map_err(core_error)?;
    leptos_actix::redirect(&format!(
        "/mail?f={}&snoozed={}",
        encode(&f),
        encode(&format!("{} {}", zone.date(until), zone.label()))
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::swap_signature;

    #[test]
    fn a_new_from_swaps_only_an_untouched_signature() {
        let body = "Hi,\n\n-- \nAnn\nSales";
        assert_eq!(swap_signature(body, "Ann\nSales", "Bob"), "Hi,\n\n-- \nBob");
        assert_eq!(swap_signature(body, "Ann\nSales", ""), "Hi,");
        assert_eq!(
            swap_signature("Hi, Ann by hand", "Ann\nSales", "Bob"),
            "Hi, Ann by hand"
        );
        assert_eq!(swap_signature("", "", "Bob"), "\n\n-- \nBob");
        assert_eq!(swap_signature("typed", "", "Bob"), "typed");
    }
}
