//! Live changes for an open webmail folder (JavaScript on): a Server-Sent
//! Events stream of the folder's message count, fed by the core's change
//! feed, which on PostgreSQL carries the other nodes' changes too
//! (LISTEN/NOTIFY). The page shows "new mail" when the count moves. When
//! this node's listening connection was lost and is back, the count is
//! read again, so a change made meanwhile still shows.
//!
//! Also the per-account cap on open streams, which the outside folders'
//! stream (`outside.rs`) shares the mechanism of.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use mailcore::{AccountId, ChangeKind, Core, MailboxId};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::mail::{core_failure, plain, session};

/// Open streams per account, for one kind of stream.
pub(crate) struct Slots {
    max: usize,
    open: Mutex<Option<HashMap<AccountId, usize>>>,
}

/// Counts one open stream until dropped.
pub(crate) struct Slot {
    slots: &'static Slots,
    account: AccountId,
}

impl Slots {
    pub(crate) const fn new(max: usize) -> Slots {
        Slots {
            max,
            open: Mutex::new(None),
        }
    }

    pub(crate) fn take(&'static self, account: AccountId) -> Option<Slot> {
        let mut g = self.open.lock().ok()?;
        let n = g
            .get_or_insert_with(HashMap::new)
            .entry(account)
            .or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self,
            account,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut g) = self.slots.open.lock()
            && let Some(n) = g.get_or_insert_with(HashMap::new).get_mut(&self.account)
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// Tabs open on folders, per account (each stream holds a task and a feed
/// subscription, nothing at a provider: more than outside folders).
static OWN: Slots = Slots::new(16);
/// A comment this often keeps proxies from closing a quiet stream, and
/// finds a closed page (the write fails).
const KEEPALIVE: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct FolderQ {
    #[serde(default)]
    f: String,
}

struct Watch {
    core: Core,
    account: AccountId,
    mailbox: MailboxId,
    folder: String,
    feed: tokio::sync::broadcast::Receiver<mailcore::ChangeEvent>,
    resyncs: tokio::sync::watch::Receiver<u64>,
    last: Option<i64>,
    _slot: Slot,
}

impl Watch {
    /// The folder's count now, when it differs from the last one sent.
    async fn moved(&mut self) -> Option<i64> {
        let n = self
            .core
            .mail(self.account)
            .mailbox_status(&self.folder)
            .await
            .ok()
            .flatten()?
            .total;
        (self.last != Some(n)).then(|| {
            self.last = Some(n);
            n
        })
    }

    /// Waits for the next thing to send; None ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let ev = tokio::select! {
                ev = self.feed.recv() => ev,
                r = self.resyncs.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    if let Some(n) = self.moved().await {
                        return Some(exists(n));
                    }
                    continue;
                }
                _ = tokio::time::sleep(KEEPALIVE) => {
                    return Some(Bytes::from_static(b": still here\n\n"));
                }
            };
            match ev {
                Ok(ev) if ev.account_id != self.account => {}
                // Signed out everywhere: the page's next request goes to
                // the login page; this stream ends now.
                Ok(ev) if ev.kind == ChangeKind::SessionsEnded => return None,
                Ok(ev) if ev.mailbox_id.is_some_and(|m| m != self.mailbox) => {}
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    if let Some(n) = self.moved().await {
                        return Some(exists(n));
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn exists(n: i64) -> Bytes {
    Bytes::from(format!("event: exists\ndata: {n}\n\n"))
}

/// `GET /mail/events?f=FOLDER`: `ready` with the count when the stream is
/// up, then `exists` with the new count whenever it changes.
pub async fn events(
    core: web::Data<Core>,
    req: HttpRequest,
    q: web::Query<FolderQ>,
) -> HttpResponse {
    let s = match session(&core, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let folder = if q.f.is_empty() {
        "INBOX".to_owned()
    } else {
        q.f.clone()
    };
    // Subscribed before the count is read: a change in between is heard.
    let feed = core.subscribe();
    let resyncs = core.feed_resyncs();
    let mail = core.mail(s.account.id);
    let status = match mail.mailbox_status(&folder).await {
        Ok(Some(m)) => m,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such folder"),
        Err(e) => return core_failure(e),
    };
    let Some(slot) = OWN.take(s.account.id) else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many live folders open at once",
        );
    };
    let mut w = Watch {
        core: core.get_ref().clone(),
        account: s.account.id,
        mailbox: status.id,
        folder,
        feed,
        resyncs,
        last: Some(status.total),
        _slot: slot,
    };
    w.resyncs.mark_unchanged();
    let ready = Bytes::from(format!("event: ready\ndata: {}\n\n", status.total));
    let stream = futures_util::stream::unfold((Some(w), Some(ready)), |(w, first)| async move {
        if let Some(b) = first {
            return Some((Ok::<_, actix_web::Error>(b), (w, None)));
        }
        let mut w = w?;
        let b = w.next().await?;
        Some((Ok(b), (Some(w), None)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream)
}
