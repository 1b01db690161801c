//! Reading an outside IMAP mailbox through async-imap (RFC 9051 / 3501
//! client side): one connection per web request, each step under a
//! timeout and a byte budget.

use std::future::Future;
use std::time::Duration;

use async_imap::types::{Flag, NameAttribute};
use futures_util::TryStreamExt;
use mailcore::outside::{
    MessageRef, OutsideError, OutsideFlag, OutsideFolder, OutsideLogin, OutsidePage,
    OutsideSummary, Security,
};

use super::Outside;
use super::net::{self, Bounded, Budget, Conn};

pub(super) type Session = async_imap::Session<Bounded>;
type Client = async_imap::Client<Bounded>;

/// What a greeting, CAPABILITY, STARTTLS or LOGIN may take.
const SMALL: u64 = 64 * 1024;
/// Room for the protocol around a message's bytes.
const FRAMING: u64 = 64 * 1024;

/// How long one IDLE lasts before it is renewed: RFC 2177 §3 asks for
/// less than 29 minutes, and NAT boxes forget quiet flows sooner.
const IDLE_RENEW: Duration = Duration::from_secs(9 * 60);

/// Counts a watch in `tern_outside_watched_inboxes` while it lives.
struct Watched;

impl Watched {
    fn new() -> Self {
        metrics::gauge!("tern_outside_watched_inboxes").increment(1.0);
        Watched
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        metrics::gauge!("tern_outside_watched_inboxes").decrement(1.0);
    }
}

/// Keeps the sequence number of an untagged FETCH (a flag change).
fn note_fetch(r: &async_imap::imap_proto::Response<'_>, touched: &mut Vec<u32>) {
    if let async_imap::imap_proto::Response::Fetch(n, _) = r {
        touched.push(*n);
    }
}

/// The folder or page requested exceeds what the server holds.
fn not_found(what: &str) -> OutsideError {
    OutsideError::NotFound(what.to_owned())
}

/// The IMAP UID a message reference names.
fn uid_of(id: &MessageRef) -> Result<u32, OutsideError> {
    id.imap_uid()
        .ok_or_else(|| not_found(&format!("message {}", id.as_str())))
}

fn imap_error(e: async_imap::error::Error, budget: &Budget, what: &str) -> OutsideError {
    use async_imap::error::Error as E;
    if budget.exhausted() {
        return OutsideError::TooLarge(what.to_owned());
    }
    match e {
        E::No(m) => OutsideError::Protocol(format!("{what}: NO {m}")),
        E::Bad(m) => OutsideError::Protocol(format!("{what}: BAD {m}")),
        E::ConnectionLost => OutsideError::Unreachable(format!("connection lost during {what}")),
        E::Io(io) => OutsideError::Unreachable(format!("{what}: {io}")),
        other => OutsideError::Protocol(format!("{what}: {other}")),
    }
}

impl Outside {
    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.command_timeout_secs.max(1))
    }

    /// One step against the server, under the command timeout.
    async fn step<T>(
        &self,
        what: &str,
        budget: &Budget,
        limit: u64,
        f: impl Future<Output = Result<T, async_imap::error::Error>>,
    ) -> Result<T, OutsideError> {
        budget.set(limit);
        match tokio::time::timeout(self.command_timeout(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(imap_error(e, budget, what)),
            Err(_) => Err(OutsideError::Timeout(what.to_owned())),
        }
    }

    async fn greeting(&self, c: &mut Client, budget: &Budget) -> Result<(), OutsideError> {
        let r = self
            .step("the greeting", budget, SMALL, async {
                c.read_response()
                    .await
                    .map_err(async_imap::error::Error::Io)
            })
            .await?;
        match r {
            Some(resp) => {
                if let async_imap::imap_proto::Response::Data {
                    status: async_imap::imap_proto::Status::Bye,
                    ..
                } = resp.parsed()
                {
                    return Err(OutsideError::Unreachable(
                        "the server said BYE at once".into(),
                    ));
                }
                Ok(())
            }
            None => Err(OutsideError::Unreachable(
                "the server closed the connection".into(),
            )),
        }
    }

    /// Connects (TLS or STARTTLS) and logs in.
    pub(super) async fn imap_session(
        &self,
        login: &OutsideLogin,
    ) -> Result<(Session, Budget), OutsideError> {
        let ep = &login.settings.incoming;
        let timeout = Duration::from_secs(self.cfg.connect_timeout_secs.max(1));
        let tcp = net::connect(
            &*self.dns,
            &ep.host,
            ep.port,
            self.cfg.allow_private,
            timeout,
        )
        .await?;
        let budget = Budget::new(SMALL);
        let pinned = login.pinned_cert.as_deref();
        let client = match ep.security {
            Security::Tls => {
                let tls = net::tls(tcp, &ep.host, pinned, timeout).await?;
                let mut c = Client::new(Bounded::imap(Conn::Tls(Box::new(tls)), budget.clone()));
                self.greeting(&mut c, &budget).await?;
                c
            }
            Security::StartTls => {
                let mut c = Client::new(Bounded::imap(Conn::Plain(tcp), budget.clone()));
                self.greeting(&mut c, &budget).await?;
                self.step(
                    "STARTTLS",
                    &budget,
                    SMALL,
                    c.run_command_and_check_ok("STARTTLS", None),
                )
                .await
                .map_err(|e| match e {
                    OutsideError::Protocol(m) => {
                        OutsideError::Protocol(format!("the server offers no STARTTLS ({m})"))
                    }
                    other => other,
                })?;
                // Whatever the server sent after its OK is dropped with the
                // plain-text client: nothing read before TLS is trusted.
                let Conn::Plain(tcp) = c.into_inner().conn else {
                    return Err(OutsideError::Protocol("STARTTLS state".into()));
                };
                let tls = net::tls(tcp, &ep.host, pinned, timeout).await?;
                Client::new(Bounded::imap(Conn::Tls(Box::new(tls)), budget.clone()))
            }
        };
        budget.set(SMALL);
        let user = login.settings.username.clone();
        let pw = login.password.clone();
        let session = match tokio::time::timeout(self.command_timeout(), async move {
            client.login(user, pw).await
        })
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err((async_imap::error::Error::No(m), _))) => {
                return Err(OutsideError::Login(m.trim().to_owned()));
            }
            Ok(Err((e, _))) => return Err(imap_error(e, &budget, "LOGIN")),
            Err(_) => return Err(OutsideError::Timeout("LOGIN".into())),
        };
        Ok((session, budget))
    }

    async fn imap_logout(&self, mut s: Session, budget: &Budget) {
        let _ = self.step("LOGOUT", budget, SMALL, s.logout()).await;
    }

    /// A logged-in session for `login`: one kept from an earlier request
    /// if it still answers NOOP, else a new one. Each click in the webmail
    /// then costs a NOOP rather than a TCP, TLS and LOGIN round trip.
    async fn checkout(&self, login: &OutsideLogin) -> Result<(Session, Budget), OutsideError> {
        let key = Pool::key(login);
        while let Some((mut s, budget)) = self.pool.take(&key) {
            if self.step("NOOP", &budget, SMALL, s.noop()).await.is_ok() {
                return Ok((s, budget));
            }
        }
        self.imap_session(login).await
    }

    /// Back to the pool after a request that went well (a session that
    /// failed is dropped instead, so nothing half-done is reused).
    async fn checkin(&self, login: &OutsideLogin, s: Session, budget: Budget) {
        if let Some((s, budget)) = self.pool.put(Pool::key(login), s, budget) {
            self.imap_logout(s, &budget).await;
        }
    }

    pub(super) async fn imap_check(&self, login: &OutsideLogin) -> Result<(), OutsideError> {
        // Always a fresh login: this is the check that the password works.
        let (s, budget) = self.imap_session(login).await?;
        self.checkin(login, s, budget).await;
        Ok(())
    }

    pub(super) async fn imap_folders(
        &self,
        login: &OutsideLogin,
    ) -> Result<Vec<OutsideFolder>, OutsideError> {
        let (mut s, budget) = self.checkout(login).await?;
        let limit = self.cfg.max_listing_bytes;
        let names = self
            .step("LIST", &budget, limit, async {
                let names: Vec<_> = s.list(Some(""), Some("*")).await?.try_collect().await?;
                Ok(names)
            })
            .await?;
        let mut out: Vec<OutsideFolder> = names
            .iter()
            .map(|n| OutsideFolder {
                name: n.name().to_owned(),
                noselect: n
                    .attributes()
                    .iter()
                    .any(|a| matches!(a, NameAttribute::NoSelect)),
            })
            .collect();
        // INBOX first, the rest by name, as the local folder list is.
        out.sort_by(|a, b| {
            let ia = a.name.eq_ignore_ascii_case("INBOX");
            let ib = b.name.eq_ignore_ascii_case("INBOX");
            ib.cmp(&ia).then_with(|| a.name.cmp(&b.name))
        });
        self.checkin(login, s, budget).await;
        Ok(out)
    }

    /// EXAMINE (read-only) or SELECT; a NO reads as "no such folder".
    async fn open_folder(
        &self,
        s: &mut Session,
        budget: &Budget,
        folder: &str,
        write: bool,
    ) -> Result<async_imap::types::Mailbox, OutsideError> {
        let r = if write {
            self.step("SELECT", budget, SMALL, s.select(folder)).await
        } else {
            self.step("EXAMINE", budget, SMALL, s.examine(folder)).await
        };
        r.map_err(|e| match e {
            OutsideError::Protocol(_) => not_found(&format!("folder {folder}")),
            other => other,
        })
    }

    /// Headers, flags and sizes of `set` (sequence numbers, or UIDs with
    /// `by_uid`), newest (highest sequence number) first.
    pub(super) async fn summaries(
        &self,
        s: &mut Session,
        budget: &Budget,
        set: String,
        by_uid: bool,
    ) -> Result<Vec<OutsideSummary>, OutsideError> {
        const ITEMS: &str = "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])";
        let fetched = self
            .step("FETCH", budget, self.cfg.max_listing_bytes, async {
                let v: Vec<_> = if by_uid {
                    s.uid_fetch(set, ITEMS).await?.try_collect().await?
                } else {
                    s.fetch(set, ITEMS).await?.try_collect().await?
                };
                Ok(v)
            })
            .await?;
        let mut rows = Vec::new();
        for f in &fetched {
            let Some(uid) = f.uid else { continue };
            let flags: Vec<Flag> = f.flags().collect();
            let mut row = super::summary_of(
                f.header().unwrap_or_default(),
                MessageRef::imap(uid),
                f.size.unwrap_or(0),
                flags.iter().any(|f| matches!(f, Flag::Seen)),
                flags.iter().any(|f| matches!(f, Flag::Flagged)),
            );
            // No (readable) Date: header: the arrival time, so the message
            // sorts where it came in, not below everything else.
            if row.unix == 0
                && let Some(d) = f.internal_date()
            {
                row.unix = d.timestamp();
                row.date = d.to_rfc3339();
            }
            rows.push((f.message, row));
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    pub(super) async fn imap_messages(
        &self,
        login: &OutsideLogin,
        folder: &str,
        page: u32,
        page_size: u32,
    ) -> Result<OutsidePage, OutsideError> {
        let (mut s, budget) = self.checkout(login).await?;
        let mbox = self.open_folder(&mut s, &budget, folder, false).await?;
        let total = mbox.exists;
        let page = page.max(1);
        let page_size = page_size.clamp(1, 200);
        // Newest first: page 1 is the highest sequence numbers.
        let skip = (page - 1).saturating_mul(page_size);
        let mut rows = Vec::new();
        if skip < total {
            let hi = total - skip;
            let lo = hi.saturating_sub(page_size - 1).max(1);
            rows = self
                .summaries(&mut s, &budget, format!("{lo}:{hi}"), false)
                .await?;
        }
        self.checkin(login, s, budget).await;
        Ok(OutsidePage { total, rows })
    }

    pub(super) async fn imap_search(
        &self,
        login: &OutsideLogin,
        folder: &str,
        query: &str,
        limit: u32,
    ) -> Result<OutsidePage, OutsideError> {
        let key = search_key(query)?;
        let (mut s, budget) = self.checkout(login).await?;
        self.open_folder(&mut s, &budget, folder, false).await?;
        let found = self
            .step(
                "SEARCH",
                &budget,
                self.cfg.max_listing_bytes,
                s.uid_search(&key),
            )
            .await?;
        let total = u32::try_from(found.len()).unwrap_or(u32::MAX);
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable_by(|a, b| b.cmp(a));
        uids.truncate(limit.clamp(1, 200) as usize);
        let mut rows = Vec::new();
        if !uids.is_empty() {
            let set = uids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            rows = self.summaries(&mut s, &budget, set, true).await?;
            // By UID, newest first (a search result has no page order).
            rows.sort_by_key(|r| std::cmp::Reverse(r.id.imap_uid().unwrap_or(0)));
        }
        self.checkin(login, s, budget).await;
        Ok(OutsidePage { total, rows })
    }

    pub(super) async fn imap_message(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<Vec<u8>, OutsideError> {
        let uid = uid_of(id)?;
        let (mut s, budget) = self.checkout(login).await?;
        // SELECT, and BODY[] rather than BODY.PEEK[]: reading marks the
        // message \Seen on the server, as any mail client does (RFC 9051
        // §6.4.5). A folder the account may only read falls back to EXAMINE.
        let writable = self
            .open_folder(&mut s, &budget, folder, true)
            .await
            .is_ok();
        if !writable {
            self.open_folder(&mut s, &budget, folder, false).await?;
        }
        let limit = self.cfg.max_message_bytes.saturating_add(FRAMING);
        let items = if writable {
            "(UID BODY[])"
        } else {
            "(UID BODY.PEEK[])"
        };
        let fetched = self
            .step("FETCH", &budget, limit, async {
                let v: Vec<_> = s
                    .uid_fetch(uid.to_string(), items)
                    .await?
                    .try_collect()
                    .await?;
                Ok(v)
            })
            .await?;
        let body = fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| not_found(&format!("message {uid}")))?;
        self.checkin(login, s, budget).await;
        Ok(body)
    }

    pub(super) async fn imap_set_flag(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        flag: OutsideFlag,
        on: bool,
    ) -> Result<(), OutsideError> {
        let uid = uid_of(id)?;
        let (mut s, budget) = self.checkout(login).await?;
        self.open_folder(&mut s, &budget, folder, true).await?;
        let name = match flag {
            OutsideFlag::Seen => "\\Seen",
            OutsideFlag::Flagged => "\\Flagged",
            OutsideFlag::Answered => "\\Answered",
        };
        let op = if on { "+FLAGS.SILENT" } else { "-FLAGS.SILENT" };
        self.step("STORE", &budget, SMALL, async {
            let _: Vec<_> = s
                .uid_store(uid.to_string(), format!("{op} ({name})"))
                .await?
                .try_collect()
                .await?;
            Ok(())
        })
        .await?;
        self.checkin(login, s, budget).await;
        Ok(())
    }

    pub(super) async fn imap_move(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        target: &str,
    ) -> Result<(), OutsideError> {
        let uid = uid_of(id)?;
        let (mut s, budget) = self.checkout(login).await?;
        self.open_folder(&mut s, &budget, folder, true).await?;
        self.move_uid(&mut s, &budget, uid, target).await?;
        self.checkin(login, s, budget).await;
        Ok(())
    }

    /// UID MOVE (RFC 6851) when the server has it; otherwise the RFC's
    /// fallback: UID COPY, then \Deleted and UID EXPUNGE (RFC 4315) of
    /// just that message, so other messages marked deleted stay.
    async fn move_uid(
        &self,
        s: &mut Session,
        budget: &Budget,
        uid: u32,
        target: &str,
    ) -> Result<(), OutsideError> {
        let caps = self
            .step("CAPABILITY", budget, SMALL, s.capabilities())
            .await?;
        if caps.has_str("MOVE") {
            return self
                .step("MOVE", budget, SMALL, s.uid_mv(uid.to_string(), target))
                .await;
        }
        self.step("COPY", budget, SMALL, s.uid_copy(uid.to_string(), target))
            .await?;
        self.expunge_uid(s, budget, uid, caps.has_str("UIDPLUS"))
            .await
    }

    async fn expunge_uid(
        &self,
        s: &mut Session,
        budget: &Budget,
        uid: u32,
        uidplus: bool,
    ) -> Result<(), OutsideError> {
        self.step("STORE", budget, SMALL, async {
            let _: Vec<_> = s
                .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect()
                .await?;
            Ok(())
        })
        .await?;
        self.step("EXPUNGE", budget, SMALL, async {
            if uidplus {
                let _: Vec<_> = s.uid_expunge(uid.to_string()).await?.try_collect().await?;
            } else {
                let _: Vec<_> = s.expunge().await?.try_collect().await?;
            }
            Ok(())
        })
        .await
    }

    /// The folder with this special use (RFC 6154), else the usual names.
    async fn special_folder(
        &self,
        s: &mut Session,
        budget: &Budget,
        want: NameAttribute<'static>,
        names: &[&str],
    ) -> Result<Option<String>, OutsideError> {
        let list = self
            .step("LIST", budget, self.cfg.max_listing_bytes, async {
                let v: Vec<_> = s.list(Some(""), Some("*")).await?.try_collect().await?;
                Ok(v)
            })
            .await?;
        if let Some(n) = list.iter().find(|n| n.attributes().contains(&want)) {
            return Ok(Some(n.name().to_owned()));
        }
        for want in names {
            if let Some(n) = list.iter().find(|n| {
                n.name().eq_ignore_ascii_case(want)
                    && !n.attributes().contains(&NameAttribute::NoSelect)
            }) {
                return Ok(Some(n.name().to_owned()));
            }
        }
        Ok(None)
    }

    pub(super) async fn imap_delete(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<(), OutsideError> {
        let uid = uid_of(id)?;
        let (mut s, budget) = self.checkout(login).await?;
        let trash = self
            .special_folder(
                &mut s,
                &budget,
                NameAttribute::Trash,
                &["Trash", "Deleted Items", "Deleted Messages", "INBOX.Trash"],
            )
            .await?;
        self.open_folder(&mut s, &budget, folder, true).await?;
        match trash {
            Some(t) if !t.eq_ignore_ascii_case(folder) => {
                self.move_uid(&mut s, &budget, uid, &t).await?;
            }
            _ => {
                let caps = self
                    .step("CAPABILITY", &budget, SMALL, s.capabilities())
                    .await?;
                self.expunge_uid(&mut s, &budget, uid, caps.has_str("UIDPLUS"))
                    .await?;
            }
        }
        self.checkin(login, s, budget).await;
        Ok(())
    }

    /// A logged-in session at a server that offers IDLE (RFC 2177).
    async fn idle_session(&self, login: &OutsideLogin) -> Result<(Session, Budget), OutsideError> {
        let (mut s, budget) = self.imap_session(login).await?;
        let caps = self
            .step("CAPABILITY", &budget, SMALL, s.capabilities())
            .await?;
        if !caps.has_str("IDLE") {
            return Err(OutsideError::Unsupported(
                "the server does not offer IDLE".into(),
            ));
        }
        Ok((s, budget))
    }

    /// One IDLE: waits at most `max` for the server to report something,
    /// and `seen` reads the first report (None: nothing came). Then DONE,
    /// read under the listing budget, since a burst (a thousand flags set
    /// at once) arrives before DONE's answer. The session comes back
    /// unless DONE failed or timed out.
    async fn idle_round<T>(
        &self,
        s: Session,
        budget: &Budget,
        max: Duration,
        seen: impl FnOnce(&async_imap::imap_proto::Response<'_>) -> T,
    ) -> Result<(Option<Session>, Option<T>), OutsideError> {
        use async_imap::extensions::idle::IdleResponse;
        let mut idle = s.idle();
        budget.set(SMALL);
        tokio::time::timeout(self.command_timeout(), idle.init())
            .await
            .map_err(|_| OutsideError::Timeout("IDLE".into()))?
            .map_err(|e| imap_error(e, budget, "IDLE"))?;
        let outcome = {
            let (wait, _stop) = idle.wait_with_timeout(max);
            wait.await
        };
        let news = match outcome {
            Ok(IdleResponse::NewData(resp)) => Some(seen(resp.parsed())),
            Ok(_) => None,
            Err(e) => return Err(imap_error(e, budget, "IDLE")),
        };
        budget.set(self.cfg.max_listing_bytes);
        let s = match tokio::time::timeout(self.command_timeout(), idle.done()).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        Ok((s, news))
    }

    /// IDLE on `folder` (RFC 2177) for at most `max`: the message count
    /// after an EXISTS, the old count after another change (an expunge,
    /// a flag), None when nothing happened.
    pub(super) async fn imap_wait(
        &self,
        login: &OutsideLogin,
        folder: &str,
        max: Duration,
    ) -> Result<Option<u32>, OutsideError> {
        use async_imap::imap_proto::{MailboxDatum, Response};
        let (mut s, budget) = self.idle_session(login).await?;
        let before = self
            .open_folder(&mut s, &budget, folder, false)
            .await?
            .exists;
        let (s, news) = self
            .idle_round(s, &budget, max, |r| match r {
                Response::MailboxData(MailboxDatum::Exists(n)) => *n,
                _ => before,
            })
            .await?;
        // LOGOUT; a server that was slow to end IDLE is left.
        if let Some(mut s) = s {
            let _ = tokio::time::timeout(self.command_timeout(), s.logout()).await;
        }
        Ok(news)
    }

    /// Watches INBOX with IDLE (RFC 2177) on one kept session, so that
    /// what another client does there (new mail, an expunge, a flag) is
    /// in the unified inbox's cache within seconds, not at the next
    /// refresh. The cache is caught up first, then after each change the
    /// server reports, on the same session. Returns only with an error
    /// (the caller waits, then calls again).
    pub(super) async fn watch_inbox(
        &self,
        core: &mailcore::Core,
        id: mailcore::outside::OutsideAccountId,
        login: &OutsideLogin,
    ) -> Result<std::convert::Infallible, OutsideError> {
        use async_imap::types::UnsolicitedResponse;
        let (mut s, budget) = self.idle_session(login).await?;
        let mbox = self.open_inbox(&mut s, &budget).await?;
        let validity = i64::from(mbox.uid_validity.unwrap_or(0));
        self.sync_imap_inbox(core, id, &mut s, &budget, validity, &[])
            .await?;
        let _watched = Watched::new();
        loop {
            // What came in during the refresh is in the cache already.
            while s.unsolicited_responses.try_recv().is_ok() {}
            let mut touched = Vec::new();
            let (back, news) = self
                .idle_round(s, &budget, IDLE_RENEW, |r| note_fetch(r, &mut touched))
                .await?;
            s = back.ok_or_else(|| OutsideError::Timeout("DONE".into()))?;
            if news.is_some() {
                while let Ok(u) = s.unsolicited_responses.try_recv() {
                    if let UnsolicitedResponse::Other(resp) = u {
                        note_fetch(resp.parsed(), &mut touched);
                    }
                }
                self.sync_imap_inbox(core, id, &mut s, &budget, validity, &touched)
                    .await?;
            }
        }
    }

    /// EXAMINE INBOX, for the fetcher (which only reads).
    pub(super) async fn open_inbox(
        &self,
        s: &mut Session,
        budget: &Budget,
    ) -> Result<async_imap::types::Mailbox, OutsideError> {
        self.open_folder(s, budget, "INBOX", false).await
    }

    /// UIDs above `last` (`UID SEARCH UID last+1:*`; the answer may hold
    /// the highest UID even when it is not above `last`, RFC 9051 §6.4.4,
    /// so the caller filters).
    pub(super) async fn imap_uids_after(
        &self,
        s: &mut Session,
        budget: &Budget,
        last: u32,
    ) -> Result<Vec<u32>, OutsideError> {
        let from = last.saturating_add(1);
        let set = self
            .step(
                "SEARCH",
                budget,
                self.cfg.max_listing_bytes,
                s.uid_search(format!("UID {from}:*")),
            )
            .await?;
        Ok(set.into_iter().collect())
    }

    /// A message's bytes without setting \Seen; None when it is gone.
    pub(super) async fn imap_peek(
        &self,
        s: &mut Session,
        budget: &Budget,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, OutsideError> {
        let limit = self.cfg.max_message_bytes.saturating_add(FRAMING);
        let fetched = self
            .step("FETCH", budget, limit, async {
                let v: Vec<_> = s
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .await?
                    .try_collect()
                    .await?;
                Ok(v)
            })
            .await?;
        Ok(fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec))
    }

    /// Files a sent message in the account's Sent folder, if it has one.
    pub(super) async fn imap_file_sent(
        &self,
        login: &OutsideLogin,
        raw: &[u8],
    ) -> Result<Option<String>, OutsideError> {
        let (mut s, budget) = self.checkout(login).await?;
        let sent = self
            .special_folder(
                &mut s,
                &budget,
                NameAttribute::Sent,
                &["Sent", "Sent Items", "Sent Messages", "INBOX.Sent"],
            )
            .await?;
        if let Some(folder) = &sent {
            self.step(
                "APPEND",
                &budget,
                SMALL,
                s.append(folder, Some("(\\Seen)"), None, raw),
            )
            .await?;
        }
        self.checkin(login, s, budget).await;
        Ok(sent)
    }
}

/// The SEARCH key for what a user typed: TEXT (headers and body, RFC 9051
/// §6.4.4) as a quoted string, with CHARSET UTF-8 when it is not ASCII.
fn search_key(query: &str) -> Result<String, OutsideError> {
    let q = query.trim();
    if q.is_empty() || q.len() > 200 || q.chars().any(char::is_control) {
        return Err(OutsideError::Unsupported(
            "search for 1 to 200 characters of text".into(),
        ));
    }
    let quoted = format!("\"{}\"", q.replace('\\', "\\\\").replace('"', "\\\""));
    Ok(if q.is_ascii() {
        format!("TEXT {quoted}")
    } else {
        format!("CHARSET UTF-8 TEXT {quoted}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_keys_are_quoted() {
        assert_eq!(search_key("hello").unwrap(), "TEXT \"hello\"");
        assert_eq!(
            search_key("a \"b\" \\c").unwrap(),
            "TEXT \"a \\\"b\\\" \\\\c\""
        );
        assert_eq!(search_key("café").unwrap(), "CHARSET UTF-8 TEXT \"café\"");
        assert!(search_key("a\r\nb").is_err());
        assert!(search_key("  ").is_err());
    }
}

/// Idle logged-in sessions by login (host, port, user, password, pinned
/// certificate, hashed: a changed password never gets an old session).
#[derive(Default)]
pub(super) struct Pool {
    idle: std::sync::Mutex<std::collections::HashMap<String, Vec<Kept>>>,
}

/// A kept session, its budget, and since when it has been idle.
type Kept = (Session, Budget, std::time::Instant);

/// A kept session older than this is closed: providers log idle
/// clients out (RFC 9051 §5.4 allows after 30 minutes), and some sooner.
const POOL_IDLE: Duration = Duration::from_secs(240);
const POOL_PER_LOGIN: usize = 2;
const POOL_TOTAL: usize = 64;

impl Pool {
    fn key(login: &OutsideLogin) -> String {
        use sha2::Digest;
        let s = &login.settings;
        let mut h = sha2::Sha256::new();
        for part in [
            s.incoming.host.as_str(),
            &s.incoming.port.to_string(),
            s.incoming.security.as_str(),
            s.username.as_str(),
            login.password.as_str(),
            login.pinned_cert.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn take(&self, key: &str) -> Option<(Session, Budget)> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some((s, b, since)) = list.pop() {
            if since.elapsed() < POOL_IDLE {
                return Some((s, b));
            }
        }
        None
    }

    /// Keeps the session; gives it back when the pool is full.
    fn put(&self, key: String, s: Session, b: Budget) -> Option<(Session, Budget)> {
        let Ok(mut idle) = self.idle.lock() else {
            return Some((s, b));
        };
        idle.retain(|_, v| {
            v.retain(|(_, _, since)| since.elapsed() < POOL_IDLE);
            !v.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(key).or_default();
        if total >= POOL_TOTAL || list.len() >= POOL_PER_LOGIN {
            return Some((s, b));
        }
        list.push((s, b, std::time::Instant::now()));
        None
    }
}
