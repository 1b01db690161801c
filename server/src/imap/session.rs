//! One IMAP session (RFC 9051 §3): not authenticated -> authenticated ->
//! selected -> logout, with [`allowed`] as the one table of which commands
//! each state takes.
//!
//! Implementation notes (invariants):
//! - The selected mailbox is seen through `Selected::msgs`, this session's
//!   view: message sequence numbers change only when this session reports
//!   EXPUNGE, which it does only where RFC 9051 §7.5.1 allows it (not
//!   during FETCH, STORE or SEARCH; UID versions are allowed but we keep
//!   it simple and never expunge-report inside them either).
//! - Untagged updates come from comparing that view with the store
//!   (`sync`), after NOOP, IDLE wake-ups, and before each tagged reply.
//! - A literal is refused before a byte of it is read when it is larger
//!   than the state's limit; the connection is then closed (RFC 9051
//!   §7.1.4 lets the server do so).
//! - Storage trouble answers `NO [UNAVAILABLE]` (DESIGN.md rule 2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailcore::{
    AccountRef, Core, CoreError, FlagSet, Flags, Keyword, Mail, MessageSummary, ModSeq,
    OwnedMailbox, Uid,
};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::proto::{
    Command, ListArgs, ParseError, SeqBound, SeqSet, Tagged, literal_suffix, parse_command,
};
use super::response::{Code, Response, Status};
use crate::limits::{AccountGuard, Limits};
use crate::listen::Conn;
use crate::netio::{BoxIo, Line, live, read_line, write_flush};

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_line: usize,
    /// Largest literal before login (LOGIN's strings fit easily).
    pub max_literal_pre_auth: u64,
    /// Largest literal after login: the message size limit (APPEND).
    pub max_literal: u64,
    /// RFC 9051 §5.4: at least 30 minutes once authenticated...
    pub autologout: Duration,
    /// ...and shorter before.
    pub autologout_pre_auth: Duration,
    pub tls_handshake_timeout: Duration,
}

const CAPS_BASE: &str = "IMAP4rev2 IMAP4rev1 IDLE UIDPLUS MOVE SPECIAL-USE LITERAL+ ENABLE NAMESPACE ID UNSELECT SASL-IR CONDSTORE LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE QRESYNC COMPRESS=DEFLATE";

pub(super) struct Selected {
    /// Opened through the account's `Mail` at SELECT: every message
    /// command goes through it.
    pub(super) mailbox: OwnedMailbox,
    pub(super) read_only: bool,
    /// This session's view, in sequence order. `None` marks a message that
    /// is gone from the store but whose EXPUNGE has not been reported yet.
    /// The rows are shared with the core's mailbox index and with other
    /// sessions (`Arc`); a change here replaces this session's pointer.
    pub(super) msgs: Vec<Option<Arc<MessageSummary>>>,
    pub(super) uids: Vec<Uid>,
    pub(super) highest_modseq: ModSeq,
    /// The mailbox's change counter when this view was last brought up to
    /// date; while it is unchanged, `sync` has nothing to do.
    pub(super) store_modseq: ModSeq,
    /// Messages that arrived while this session had the mailbox selected:
    /// `\Recent` for IMAP4rev1 clients.
    pub(super) recent: std::collections::HashSet<Uid>,
    /// The keywords this session has announced in FLAGS; one it has not
    /// seen yet gets a new FLAGS response (RFC 9051 §7.3.5).
    pub(super) keywords: Vec<Keyword>,
}

impl Selected {
    /// The untagged FLAGS and PERMANENTFLAGS responses for this mailbox
    /// (RFC 9051 §7.3.5, §7.1): the system flags and every keyword in use;
    /// `\*` says clients may create keywords.
    pub(super) fn flag_responses(&self) -> [Response<'static>; 2] {
        let mut names: Vec<&str> =
            vec!["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];
        names.extend(self.keywords.iter().map(Keyword::as_str));
        let list = names.join(" ");
        [
            Response::data(format!("FLAGS ({list})")),
            if self.read_only {
                Response::untagged(
                    Status::Ok,
                    Some(Code::PermanentFlags("()".into())),
                    "Read-only mailbox",
                )
            } else {
                Response::untagged(
                    Status::Ok,
                    Some(Code::PermanentFlags(format!("({list} \\*)"))),
                    "Flags permitted",
                )
            },
        ]
    }

    /// Remembers these keywords; true when one was new to this view.
    pub(super) fn learn_keywords(&mut self, keywords: &[Keyword]) -> bool {
        let mut grew = false;
        for k in keywords {
            if !self.keywords.iter().any(|x| x.same(k.as_str())) {
                self.keywords.push(k.clone());
                grew = true;
            }
        }
        grew
    }
}

pub(super) enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
    Logout,
}

/// RFC 9051 §3 and §6: which commands each state accepts.
fn allowed(state: &State, cmd: &Command) -> bool {
    use Command::*;
    let (na, auth, sel) = match state {
        State::NotAuthenticated => (true, false, false),
        State::Authenticated => (false, true, false),
        State::Selected(_) => (false, true, true),
        State::Logout => (false, false, false),
    };
    match cmd {
        Capability | Noop | Logout | Id => !matches!(state, State::Logout),
        StartTls | Login { .. } | Authenticate { .. } => na,
        Enable(_)
        | Select { .. }
        | Create(_)
        | Delete(_)
        | Rename(..)
        | Subscribe(_)
        | Unsubscribe(_)
        | List(_)
        | Namespace
        | Compress(_)
        | Status { .. }
        | Append { .. }
        | Idle => auth,
        Check
        | Close
        | Unselect
        | Expunge { .. }
        | Search { .. }
        | Fetch { .. }
        | Store { .. }
        | Copy { .. }
        | Move { .. } => sel,
    }
}

/// RFC 7162 §3.1: the commands that turn CONDSTORE on for the session
/// without ENABLE (SELECT/EXAMINE (CONDSTORE) is handled by SELECT).
fn enables_condstore(cmd: &Command) -> bool {
    use super::proto::{FetchItem, StatusItem};
    match cmd {
        Command::Fetch {
            items,
            changed_since,
            ..
        } => changed_since.is_some() || items.contains(&FetchItem::ModSeq),
        Command::Search { key, .. } => super::fetch::uses_modseq(key),
        Command::Store {
            unchanged_since, ..
        } => unchanged_since.is_some(),
        Command::Status { items, .. } => items.contains(&StatusItem::HighestModSeq),
        _ => false,
    }
}

enum Read {
    Command(Vec<u8>),
    /// The line was over the limit; what the client sent was thrown away.
    TooLong,
    /// A literal over the limit was announced; nothing of it was read.
    LiteralTooBig(String),
    Eof,
}

pub struct Session {
    pub(super) core: Core,
    pub(super) settings: Arc<Settings>,
    pub(super) limits: Arc<Limits>,
    pub(super) peer: SocketAddr,
    pub(super) io: Option<BufReader<BoxIo>>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) secure: bool,
    pub(super) state: State,
    pub(super) account: Option<AccountRef>,
    pub(super) _slot: Option<AccountGuard>,
    /// The account's login epoch at login ([`Core::end_all_sessions`]).
    pub(super) login_epoch: i64,
    pub(super) condstore: bool,
    /// RFC 7162 §3.2.3: ENABLE QRESYNC; expunges are then VANISHED.
    pub(super) qresync: bool,
    pub(super) rev2: bool,
    /// RFC 4978: COMPRESS DEFLATE is on (it cannot be turned off).
    pub(super) compressed: bool,
    /// Replies not yet sent. A FETCH of many messages is many lines; each
    /// used to be its own TLS record and flush. They are sent together,
    /// before the session next waits on the client ([`Session::flush_out`]).
    pub(super) out: Vec<u8>,
}

/// Once this much is waiting, it is sent without waiting for the end of
/// the reply, so a large FETCH does not sit whole in memory.
const OUT_HIGH_WATER: usize = 128 * 1024;

/// A flag list from STORE or APPEND (RFC 9051 §9 `flag`): system flags
/// and keywords. `\Recent` and unknown system flags cannot be set
/// (Dovecot answers BAD too).
pub(super) fn parse_flags(names: &[String]) -> Result<FlagSet, String> {
    let mut set = FlagSet::default();
    for n in names {
        if n.starts_with('\\') {
            let f = Flags::from_name(n).ok_or_else(|| format!("Invalid system flag {n}"))?;
            set.system = set.system.union(f);
        } else {
            let k = Keyword::parse(n).ok_or_else(|| format!("Invalid keyword {n}"))?;
            set.add_keywords([&k]);
        }
    }
    Ok(set)
}

impl Session {
    pub fn new(core: Core, settings: Arc<Settings>, limits: Arc<Limits>, conn: Conn) -> Session {
        let Conn {
            io,
            peer,
            secure,
            starttls: tls,
        } = conn;
        Session {
            core,
            settings,
            limits,
            peer,
            io: Some(BufReader::new(io)),
            tls,
            secure,
            state: State::NotAuthenticated,
            account: None,
            _slot: None,
            login_epoch: 0,
            condstore: false,
            qresync: false,
            rev2: false,
            compressed: false,
            out: Vec::new(),
        }
    }

    pub(super) fn capabilities(&self) -> String {
        let mut c = CAPS_BASE.to_owned();
        match (&self.state, self.secure) {
            (State::NotAuthenticated, false) => c.push_str(" STARTTLS LOGINDISABLED"),
            (State::NotAuthenticated, true) => c.push_str(" AUTH=PLAIN"),
            _ => {}
        }
        c
    }

    /// Sends what is waiting. Called before every read from the client
    /// (a client that waits for our reply before sending must get it), and
    /// before the connection closes or changes to TLS.
    pub(super) async fn flush_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = write_flush(live(&mut self.io)?, &out).await;
        // Keep the allocation for the next reply, but not a huge one.
        if out.capacity() <= OUT_HIGH_WATER * 2 {
            self.out = out;
            self.out.clear();
        }
        r
    }

    /// The one way a reply reaches the client (see `response`).
    pub(super) async fn reply(&mut self, r: Response<'_>) -> std::io::Result<()> {
        r.render(&mut self.out);
        if self.out.len() >= OUT_HIGH_WATER {
            self.flush_out().await?;
        }
        Ok(())
    }

    pub async fn run(mut self) {
        let served = match self.serve().await {
            Ok(()) => self.flush_out().await,
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            tracing::debug!(peer = %self.peer, error = %e, "imap connection ended");
        }
        crate::netio::close(&mut self.io).await;
    }

    pub(super) fn autologout(&self) -> Duration {
        match self.state {
            State::NotAuthenticated => self.settings.autologout_pre_auth,
            _ => self.settings.autologout,
        }
    }

    async fn read_command(&mut self) -> std::io::Result<Read> {
        let authed = !matches!(self.state, State::NotAuthenticated);
        let limit = if authed {
            self.settings.max_literal
        } else {
            self.settings.max_literal_pre_auth
        };
        let max_line = self.settings.max_line;
        let mut buf = Vec::new();
        let mut literals = 0;
        loop {
            self.flush_out().await?;
            let io = live(&mut self.io)?;
            let line = match read_line(io, max_line).await? {
                Line::Ok(l) => l,
                Line::TooLong(_) => return Ok(Read::TooLong),
                Line::Eof => return Ok(Read::Eof),
            };
            buf.extend_from_slice(&line);
            let Some((n, nonsync)) = literal_suffix(&line) else {
                return Ok(Read::Command(buf));
            };
            literals += 1;
            if n > limit || buf.len() as u64 + n > limit + max_line as u64 || literals > 64 {
                let tag = buf
                    .split(|&b| b == b' ')
                    .next()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_else(|| "*".into());
                return Ok(Read::LiteralTooBig(tag));
            }
            if !nonsync {
                self.reply(Response::Continue("Ready for literal data".into()))
                    .await?;
                self.flush_out().await?;
            }
            let io = live(&mut self.io)?;
            let mut lit = vec![0u8; n as usize];
            io.read_exact(&mut lit).await?;
            buf.extend_from_slice(&lit);
        }
    }

    pub(super) async fn serve(&mut self) -> std::io::Result<()> {
        let caps = Code::Capability(self.capabilities());
        self.reply(Response::untagged(
            Status::Ok,
            Some(caps),
            "Tern IMAP ready",
        ))
        .await?;
        loop {
            let read = match timeout(self.autologout(), self.read_command()).await {
                Ok(r) => r?,
                Err(_) => {
                    // RFC 9051 §5.4 autologout.
                    self.reply(Response::untagged(
                        Status::Bye,
                        None,
                        "Autologout; idle for too long",
                    ))
                    .await?;
                    return Ok(());
                }
            };
            let raw = match read {
                Read::Eof => return Ok(()),
                Read::TooLong => {
                    self.reply(Response::untagged(
                        Status::Bad,
                        Some(Code::TooBig),
                        "Command line too long",
                    ))
                    .await?;
                    continue;
                }
                Read::LiteralTooBig(tag) => {
                    let tag: String = tag
                        .chars()
                        .filter(|c| c.is_ascii_graphic())
                        .take(64)
                        .collect();
                    self.reply(Response::tagged(
                        &tag,
                        Status::No,
                        Some(Code::TooBig),
                        "Literal too large",
                    ))
                    .await?;
                    self.reply(Response::untagged(
                        Status::Bye,
                        None,
                        "Too much data announced",
                    ))
                    .await?;
                    return Ok(());
                }
                Read::Command(raw) => raw,
            };
            let Tagged { tag, cmd } = match parse_command(&raw) {
                Ok(t) => t,
                Err(ParseError::NoTag) => {
                    self.reply(Response::untagged(
                        Status::Bad,
                        None,
                        "Missing or invalid tag",
                    ))
                    .await?;
                    continue;
                }
                Err(ParseError::Bad { tag, msg }) => {
                    self.reply(Response::bad(&tag, msg)).await?;
                    continue;
                }
            };
            if !allowed(&self.state, &cmd) {
                let why = match self.state {
                    State::NotAuthenticated => "log in first",
                    State::Selected(_) | State::Authenticated
                        if matches!(cmd, Command::Login { .. } | Command::Authenticate { .. }) =>
                    {
                        "already logged in"
                    }
                    _ => "select a mailbox first",
                };
                self.reply(Response::bad(
                    &tag,
                    format!("{} not allowed now: {why}", cmd.name()),
                ))
                .await?;
                continue;
            }
            if self.sessions_ended().await {
                return self.bye_sessions_ended().await;
            }
            let cmd = self.names_in(cmd);
            // IDLE lasts as long as the client likes: not a latency.
            let timed =
                (!matches!(cmd, Command::Idle)).then(|| (cmd.name(), std::time::Instant::now()));
            let done = self.dispatch(&tag, cmd).await;
            if let Some((name, started)) = timed {
                crate::listen::observe_command("imap", name, started);
            }
            match done {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return Ok(()),
                Err(Fail::Io(e)) => return Err(e),
                Err(Fail::Core(e)) => {
                    self.reply(Response::from_core(&tag, &e)).await?;
                }
            }
        }
    }
}

pub(super) enum Flow {
    Continue,
    Close,
}

pub(super) enum Fail {
    Io(std::io::Error),
    Core(CoreError),
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Io(e)
    }
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Self {
        Fail::Core(e)
    }
}

pub(super) type Res = Result<Flow, Fail>;

impl Session {
    /// Mailbox names arrive in modified UTF-7 from IMAP4rev1 clients and in
    /// UTF-8 once IMAP4rev2 is enabled (RFC 9051 §5.1); the store keeps
    /// UTF-8. A name that is not valid modified UTF-7 is taken as sent.
    pub(super) fn name_in(&self, name: String) -> String {
        if self.rev2 {
            return name;
        }
        super::proto::mutf7_decode(&name).unwrap_or(name)
    }

    pub(super) fn name_out(&self, name: &str) -> String {
        if self.rev2 {
            name.to_owned()
        } else {
            super::proto::mutf7_encode(name)
        }
    }

    pub(super) fn names_in(&self, cmd: Command) -> Command {
        use Command::*;
        match cmd {
            Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => Select {
                mailbox: self.name_in(mailbox),
                read_only,
                condstore,
                qresync,
            },
            Create(m) => Create(self.name_in(m)),
            Delete(m) => Delete(self.name_in(m)),
            Rename(a, b) => Rename(self.name_in(a), self.name_in(b)),
            Subscribe(m) => Subscribe(self.name_in(m)),
            Unsubscribe(m) => Unsubscribe(self.name_in(m)),
            Status { mailbox, items } => Status {
                mailbox: self.name_in(mailbox),
                items,
            },
            Append {
                mailbox,
                flags,
                date,
                message,
            } => Append {
                mailbox: self.name_in(mailbox),
                flags,
                date,
                message,
            },
            Copy { uid, set, mailbox } => Copy {
                uid,
                set,
                mailbox: self.name_in(mailbox),
            },
            Move { uid, set, mailbox } => Move {
                uid,
                set,
                mailbox: self.name_in(mailbox),
            },
            List(a) => List(ListArgs {
                reference: self.name_in(a.reference),
                patterns: a.patterns.into_iter().map(|p| self.name_in(p)).collect(),
                ..a
            }),
            other => other,
        }
    }

    /// True once the account's sessions were ended (new password,
    /// disabled, "sign out everywhere") after this one logged in.
    pub(super) async fn sessions_ended(&mut self) -> bool {
        // Copied out first: the future must not hold `&self` (its stream is
        // not Sync) across the await.
        let Some(id) = self.account.as_ref().map(|a| a.id) else {
            return false;
        };
        let (core, mine) = (self.core.clone(), self.login_epoch);
        core.login_epoch(id).await.is_some_and(|e| e != mine)
    }

    /// RFC 9051 §7.1.5: the server closes the connection with an untagged BYE.
    pub(super) async fn bye_sessions_ended(&mut self) -> std::io::Result<()> {
        self.reply(Response::untagged(Status::Bye, Some(Code::Alert), "Signed out: this account's password changed, it was disabled, or it signed out everywhere"))
            .await
    }

    /// The logged-in account's mail. The state table lets no command that
    /// reads mail run before login, so the error is only a safety net.
    pub(super) fn mail(&self) -> Result<Mail, Fail> {
        match &self.account {
            Some(a) => Ok(self.core.mail(a.id)),
            None => Err(Fail::Core(CoreError::invalid("not authenticated"))),
        }
    }

    /// Routes a command the state table allowed to its handler in `cmd/`.
    pub(super) async fn dispatch(&mut self, tag: &str, cmd: Command) -> Res {
        // RFC 7162 §3.1: the first CONDSTORE-enabling command with a
        // mailbox selected is answered with the mailbox's HIGHESTMODSEQ
        // first; from then on every FETCH response carries MODSEQ.
        if !self.condstore && enables_condstore(&cmd) {
            self.condstore = true;
            if let State::Selected(s) = &self.state {
                let highest = s.highest_modseq;
                self.reply(Response::untagged(
                    Status::Ok,
                    Some(Code::HighestModSeq(highest)),
                    "Highest",
                ))
                .await?;
            }
        }
        match cmd {
            Command::Capability => self.capability(tag).await,
            Command::Noop | Command::Check => self.noop(tag).await,
            Command::Id => self.id(tag).await,
            Command::Logout => self.logout(tag).await,
            Command::StartTls => self.starttls(tag).await,
            Command::Login { user, pass } => self.login_command(tag, &user, &pass).await,
            Command::Authenticate { mechanism, initial } => {
                self.authenticate(tag, &mechanism, initial).await
            }
            Command::Enable(caps) => self.enable(tag, caps).await,
            Command::Namespace => self.namespace(tag).await,
            Command::Compress(algorithm) => self.compress(tag, &algorithm).await,
            Command::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => {
                self.select(tag, &mailbox, read_only, condstore, qresync)
                    .await
            }
            Command::Create(name) => self.create(tag, name).await,
            Command::Delete(name) => self.delete(tag, &name).await,
            Command::Rename(from, to) => self.rename(tag, &from, &to).await,
            Command::Subscribe(name) => self.subscribe(tag, name, true).await,
            Command::Unsubscribe(name) => self.subscribe(tag, name, false).await,
            Command::List(args) => self.list(tag, args).await,
            Command::Status { mailbox, items } => self.status(tag, &mailbox, &items).await,
            Command::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(tag, &mailbox, &flags, date, &message).await,
            Command::Idle => self.idle(tag).await,
            Command::Close => self.close(tag).await,
            Command::Unselect => self.unselect(tag).await,
            Command::Expunge { uids } => self.expunge(tag, uids).await,
            Command::Search { uid, ret, key } => self.search(tag, uid, ret, key).await,
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                self.fetch_command(tag, uid, &set, items, changed_since, vanished)
                    .await
            }
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            } => {
                self.store(tag, uid, &set, op, silent, &flags, unchanged_since)
                    .await
            }
            Command::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, false).await,
            Command::Move { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, true).await,
        }
    }

    pub(super) async fn ok(&mut self, tag: &str, text: &str) -> Res {
        self.reply(Response::ok(tag, text)).await?;
        Ok(Flow::Continue)
    }

    /// `tag NO [code] text`, and the session goes on.
    pub(super) async fn no(&mut self, tag: &str, code: Code, text: impl Into<String>) -> Res {
        let text: String = text.into();
        self.reply(Response::no(tag, Some(code), text)).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn ok_with(&mut self, tag: &str, code: Code, text: &str) -> Res {
        self.reply(Response::tagged(tag, Status::Ok, Some(code), text))
            .await?;
        Ok(Flow::Continue)
    }
}

impl Session {
    /// The (sequence number, uid) pairs a set names. Sequence numbers past
    /// the end are an error (RFC 9051 §9 seq-number); UIDs that do not
    /// exist are simply not there.
    pub(super) fn resolve(&self, uid: bool, set: &SeqSet) -> Result<Vec<(usize, Uid)>, String> {
        let State::Selected(sel) = &self.state else {
            return Ok(Vec::new());
        };
        let n = sel.uids.len();
        if uid {
            let max = sel.uids.last().map_or(0, |u| u.get()).min(u32::MAX as i64) as u32;
            return Ok(sel
                .uids
                .iter()
                .enumerate()
                .filter(|(_, u)| set.contains(u.get() as u32, max))
                .map(|(i, u)| (i + 1, *u))
                .collect());
        }
        // RFC 9051 §6.4.5 (and §9 seq-number): numbers past the end are
        // bad, and so is "*" when the mailbox is empty.
        for &(a, b) in &set.0 {
            for x in [a, b] {
                match x {
                    SeqBound::Num(x) if x as usize > n => {
                        return Err(format!("Invalid message sequence number {x}"));
                    }
                    SeqBound::Star if n == 0 => {
                        return Err("Invalid message sequence number * (mailbox is empty)".into());
                    }
                    _ => {}
                }
            }
        }
        Ok((1..=n)
            .filter(|i| set.contains(*i as u32, n as u32))
            .map(|i| (i, sel.uids[i - 1]))
            .collect())
    }

    /// The selected mailbox and whether it is read-only.
    pub(super) fn selected(&self) -> Option<(OwnedMailbox, bool)> {
        match &self.state {
            State::Selected(s) => Some((s.mailbox.clone(), s.read_only)),
            _ => None,
        }
    }

    /// [`Self::resolve`], answering `BAD` for a bad set (then `None`).
    pub(super) async fn targets(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
    ) -> Result<Option<Vec<(usize, Uid)>>, Fail> {
        match self.resolve(uid, set) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                self.reply(Response::bad(tag, e)).await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn refuse_read_only(&mut self, tag: &str) -> Res {
        self.no(tag, Code::ReadOnly, "Mailbox is read-only").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn state_table() {
        let na = State::NotAuthenticated;
        assert!(allowed(
            &na,
            &Command::Login {
                user: String::new(),
                pass: String::new()
            }
        ));
        assert!(!allowed(&na, &Command::Create("x".into())));
        assert!(!allowed(
            &State::Authenticated,
            &Command::Expunge { uids: None }
        ));
        assert!(!allowed(&State::Authenticated, &Command::StartTls));
        assert!(allowed(&State::Authenticated, &Command::Idle));
    }
}
