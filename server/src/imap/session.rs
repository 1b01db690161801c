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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mailcore::messages::FlagOp;
use mailcore::{
    AccountRef, AuthError, ChangeKind, Core, CoreError, FlagSet, Flags, Keyword, MessageSummary,
    SortOrder,
};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::fetch;
use super::proto::{
    Command, IString, ListArgs, ParseError, Qresync, SearchKey, SeqBound, SeqSet, StatusItem,
    StoreOp, Tagged, literal_suffix, parse_command,
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

const CAPS_BASE: &str = "IMAP4rev2 IMAP4rev1 IDLE UIDPLUS MOVE SPECIAL-USE LITERAL+ ENABLE NAMESPACE ID UNSELECT SASL-IR CONDSTORE LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE QRESYNC";

struct Selected {
    id: i32,
    read_only: bool,
    /// This session's view, in sequence order. `None` marks a message that
    /// is gone from the store but whose EXPUNGE has not been reported yet.
    /// The rows are shared with the core's mailbox index and with other
    /// sessions (`Arc`); a change here replaces this session's pointer.
    msgs: Vec<Option<Arc<MessageSummary>>>,
    uids: Vec<i64>,
    highest_modseq: i64,
    /// The mailbox's change counter when this view was last brought up to
    /// date; while it is unchanged, `sync` has nothing to do.
    store_modseq: i64,
    /// Messages that arrived while this session had the mailbox selected:
    /// `\Recent` for IMAP4rev1 clients.
    recent: std::collections::HashSet<i64>,
    /// The keywords this session has announced in FLAGS; one it has not
    /// seen yet gets a new FLAGS response (RFC 9051 §7.3.5).
    keywords: Vec<Keyword>,
}

impl Selected {
    /// The untagged FLAGS and PERMANENTFLAGS responses for this mailbox
    /// (RFC 9051 §7.3.5, §7.1): the system flags and every keyword in use;
    /// `\*` says clients may create keywords.
    fn flag_responses(&self) -> [Response<'static>; 2] {
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
    fn learn_keywords(&mut self, keywords: &[Keyword]) -> bool {
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

enum State {
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

enum Read {
    Command(Vec<u8>),
    /// The line was over the limit; what the client sent was thrown away.
    TooLong,
    /// A literal over the limit was announced; nothing of it was read.
    LiteralTooBig(String),
    Eof,
}

pub struct Session {
    core: Core,
    settings: Arc<Settings>,
    limits: Arc<Limits>,
    peer: SocketAddr,
    io: Option<BufReader<BoxIo>>,
    tls: Option<TlsAcceptor>,
    secure: bool,
    state: State,
    account: Option<AccountRef>,
    _slot: Option<AccountGuard>,
    /// The account's login epoch at login ([`Core::end_all_sessions`]).
    login_epoch: i64,
    condstore: bool,
    /// RFC 7162 §3.2.3: ENABLE QRESYNC; expunges are then VANISHED.
    qresync: bool,
    rev2: bool,
    /// Replies not yet sent. A FETCH of many messages is many lines; each
    /// used to be its own TLS record and flush. They are sent together,
    /// before the session next waits on the client ([`Session::flush_out`]).
    out: Vec<u8>,
}

/// Once this much is waiting, it is sent without waiting for the end of
/// the reply, so a large FETCH does not sit whole in memory.
const OUT_HIGH_WATER: usize = 128 * 1024;

/// A flag list from STORE or APPEND (RFC 9051 §9 `flag`): system flags
/// and keywords. `\Recent` and unknown system flags cannot be set
/// (Dovecot answers BAD too).
fn parse_flags(names: &[String]) -> Result<FlagSet, String> {
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
            out: Vec::new(),
        }
    }

    fn capabilities(&self) -> String {
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
    async fn flush_out(&mut self) -> std::io::Result<()> {
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
    async fn reply(&mut self, r: Response<'_>) -> std::io::Result<()> {
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

    fn autologout(&self) -> Duration {
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

    async fn serve(&mut self) -> std::io::Result<()> {
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
            match self.dispatch(&tag, cmd).await {
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

enum Flow {
    Continue,
    Close,
}

enum Fail {
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

type Res = Result<Flow, Fail>;

impl Session {
    /// Mailbox names arrive in modified UTF-7 from IMAP4rev1 clients and in
    /// UTF-8 once IMAP4rev2 is enabled (RFC 9051 §5.1); the store keeps
    /// UTF-8. A name that is not valid modified UTF-7 is taken as sent.
    fn name_in(&self, name: String) -> String {
        if self.rev2 {
            return name;
        }
        super::proto::mutf7_decode(&name).unwrap_or(name)
    }

    fn name_out(&self, name: &str) -> String {
        if self.rev2 {
            name.to_owned()
        } else {
            super::proto::mutf7_encode(name)
        }
    }

    fn names_in(&self, cmd: Command) -> Command {
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
    async fn sessions_ended(&mut self) -> bool {
        // Copied out first: the future must not hold `&self` (its stream is
        // not Sync) across the await.
        let Some(id) = self.account.as_ref().map(|a| a.id) else {
            return false;
        };
        let (core, mine) = (self.core.clone(), self.login_epoch);
        core.login_epoch(id).await.is_some_and(|e| e != mine)
    }

    /// RFC 9051 §7.1.5: the server closes the connection with an untagged BYE.
    async fn bye_sessions_ended(&mut self) -> std::io::Result<()> {
        self.reply(Response::untagged(Status::Bye, Some(Code::Alert), "Signed out: this account's password changed, it was disabled, or it signed out everywhere"))
            .await
    }

    fn account_id(&self) -> i32 {
        self.account.as_ref().map(|a| a.id).unwrap_or(0)
    }

    async fn dispatch(&mut self, tag: &str, cmd: Command) -> Res {
        match cmd {
            Command::Capability => {
                let c = format!("CAPABILITY {}", self.capabilities());
                self.reply(Response::data(c)).await?;
                self.ok(tag, "CAPABILITY completed").await
            }
            Command::Noop | Command::Check => {
                self.sync(true).await?;
                self.ok(tag, "NOOP completed").await
            }
            Command::Id => {
                self.reply(Response::data("ID (\"name\" \"Tern\")")).await?;
                self.ok(tag, "ID completed").await
            }
            Command::Logout => {
                self.state = State::Logout;
                self.reply(Response::untagged(
                    Status::Bye,
                    None,
                    "Tern IMAP signing off",
                ))
                .await?;
                self.ok(tag, "LOGOUT completed").await?;
                Ok(Flow::Close)
            }
            // RFC 9051 §6.2.1.
            Command::StartTls => {
                let Some(acceptor) = self.tls.take() else {
                    self.reply(Response::bad(tag, "TLS is already active"))
                        .await?;
                    return Ok(Flow::Continue);
                };
                self.reply(Response::ok(tag, "Begin TLS negotiation now"))
                    .await?;
                self.flush_out().await?;
                // Anything pipelined after STARTTLS is discarded with the
                // plaintext buffer (the STARTTLS injection defence).
                let Some(reader) = self.io.take() else {
                    return Ok(Flow::Close);
                };
                let plain = reader.into_inner();
                match timeout(self.settings.tls_handshake_timeout, acceptor.accept(plain)).await {
                    Ok(Ok(tls)) => {
                        self.io = Some(BufReader::new(Box::new(tls)));
                        self.secure = true;
                        Ok(Flow::Continue)
                    }
                    _ => Ok(Flow::Close),
                }
            }
            Command::Login { user, pass } => {
                if !self.secure {
                    // RFC 9051 §6.2.3: LOGINDISABLED until TLS.
                    self.reply(Response::tagged(
                        tag,
                        Status::No,
                        Some(Code::PrivacyRequired),
                        "Use STARTTLS first",
                    ))
                    .await?;
                    return Ok(Flow::Continue);
                }
                self.login(tag, &user, &pass).await
            }
            Command::Authenticate { mechanism, initial } => {
                self.authenticate(tag, &mechanism, initial).await
            }
            Command::Enable(caps) => {
                let mut on = Vec::new();
                for c in caps {
                    match c.as_str() {
                        "CONDSTORE" => {
                            self.condstore = true;
                            on.push(c);
                        }
                        "IMAP4REV2" => {
                            self.rev2 = true;
                            on.push(c);
                        }
                        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                        "QRESYNC" => {
                            self.qresync = true;
                            self.condstore = true;
                            on.push(c);
                        }
                        _ => {}
                    }
                }
                self.reply(Response::data(format!("ENABLED {}", on.join(" "))))
                    .await?;
                self.ok(tag, "ENABLE completed").await
            }
            Command::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => {
                // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC.
                if qresync.is_some() && !self.qresync {
                    self.reply(Response::bad(tag, "ENABLE QRESYNC first"))
                        .await?;
                    return Ok(Flow::Continue);
                }
                self.select(tag, &mailbox, read_only, condstore, qresync)
                    .await
            }
            Command::Create(name) => {
                let name = declared_name(name);
                self.core.create_mailbox(self.account_id(), &name).await?;
                self.ok(tag, "CREATE completed").await
            }
            Command::Delete(name) => {
                if name == "INBOX" {
                    self.reply(Response::tagged(
                        tag,
                        Status::No,
                        Some(Code::Cannot),
                        "INBOX cannot be deleted",
                    ))
                    .await?;
                    return Ok(Flow::Continue);
                }
                self.core.delete_mailbox(self.account_id(), &name).await?;
                self.ok(tag, "DELETE completed").await
            }
            Command::Rename(from, to) => {
                self.core
                    .rename_mailbox(self.account_id(), &from, &to)
                    .await?;
                self.ok(tag, "RENAME completed").await
            }
            Command::Subscribe(name) => {
                let name = declared_name(name);
                self.core
                    .set_subscribed(self.account_id(), &name, true)
                    .await?;
                self.ok(tag, "SUBSCRIBE completed").await
            }
            Command::Unsubscribe(name) => {
                self.core
                    .set_subscribed(self.account_id(), &name, false)
                    .await?;
                self.ok(tag, "UNSUBSCRIBE completed").await
            }
            Command::Namespace => {
                self.reply(Response::data("NAMESPACE ((\"\" \"/\")) NIL NIL"))
                    .await?;
                self.ok(tag, "NAMESPACE completed").await
            }
            Command::List(args) => self.list(tag, args).await,
            Command::Status { mailbox, items } => {
                let mb = self
                    .core
                    .mailbox(self.account_id(), &mailbox)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("mailbox {mailbox}")))?;
                let wire = self.name_out(&mb.name);
                let line =
                    status_line(self.core.clone(), self.account_id(), &mb, &wire, &items).await?;
                self.reply(Response::data(line)).await?;
                self.ok(tag, "STATUS completed").await
            }
            Command::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let flags = match parse_flags(&flags) {
                    Ok(f) => f,
                    Err(e) => {
                        self.reply(Response::bad(tag, e)).await?;
                        return Ok(Flow::Continue);
                    }
                };
                let Some(mb) = self.core.mailbox(self.account_id(), &mailbox).await? else {
                    self.reply(Response::tagged(
                        tag,
                        Status::No,
                        Some(Code::TryCreate),
                        "No such mailbox",
                    ))
                    .await?;
                    return Ok(Flow::Continue);
                };
                let uid = self
                    .core
                    .append_flagged(self.account_id(), mb.id, &message, &flags, date)
                    .await?;
                self.sync(true).await?;
                let code = Code::AppendUid {
                    uidvalidity: mb.uidvalidity,
                    uid,
                };
                self.ok_with(tag, code, "APPEND completed").await
            }
            Command::Idle => self.idle(tag).await,
            Command::Close => {
                if let State::Selected(s) = &self.state
                    && !s.read_only
                {
                    // RFC 9051 §6.4.1: CLOSE expunges silently.
                    self.core.expunge(self.account_id(), s.id, None).await?;
                }
                self.state = State::Authenticated;
                self.ok(tag, "CLOSE completed").await
            }
            Command::Unselect => {
                self.state = State::Authenticated;
                self.ok(tag, "UNSELECT completed").await
            }
            Command::Expunge { uids } => self.expunge(tag, uids).await,
            Command::Search { uid, ret, key } => self.search(tag, uid, ret, key).await,
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                if vanished && !self.qresync {
                    self.reply(Response::bad(tag, "ENABLE QRESYNC first"))
                        .await?;
                    return Ok(Flow::Continue);
                }
                if vanished {
                    self.report_vanished(&set).await?;
                }
                self.fetch(tag, uid, &set, items, changed_since).await
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

    async fn ok(&mut self, tag: &str, text: &str) -> Res {
        self.reply(Response::ok(tag, text)).await?;
        Ok(Flow::Continue)
    }

    async fn ok_with(&mut self, tag: &str, code: Code, text: &str) -> Res {
        self.reply(Response::tagged(tag, Status::Ok, Some(code), text))
            .await?;
        Ok(Flow::Continue)
    }

    async fn login(&mut self, tag: &str, user: &str, pass: &str) -> Res {
        match self
            .core
            .authenticate_session(user, pass, self.peer.ip())
            .await
        {
            Ok((account, epoch)) => {
                let Some(slot) = self.limits.account(account.id) else {
                    self.reply(Response::tagged(
                        tag,
                        Status::No,
                        Some(Code::Limit),
                        "Too many connections for this account from here",
                    ))
                    .await?;
                    return Ok(Flow::Continue);
                };
                self._slot = Some(slot);
                self.account = Some(account);
                self.login_epoch = epoch;
                self.state = State::Authenticated;
                let caps = Code::Capability(self.capabilities());
                self.reply(Response::tagged(tag, Status::Ok, Some(caps), "Logged in"))
                    .await?;
                Ok(Flow::Continue)
            }
            Err(AuthError::InvalidCredentials) => {
                metrics::counter!("tern_auth_failures_total", "protocol" => "imap").increment(1);
                self.reply(Response::tagged(
                    tag,
                    Status::No,
                    Some(Code::AuthenticationFailed),
                    "Invalid credentials",
                ))
                .await?;
                Ok(Flow::Continue)
            }
            Err(AuthError::Throttled { retry_after }) => {
                self.reply(Response::tagged(
                    tag,
                    Status::No,
                    Some(Code::AuthenticationFailed),
                    format!("Too many failed logins; try again in {retry_after} seconds"),
                ))
                .await?;
                Ok(Flow::Continue)
            }
            Err(AuthError::Core(e)) => Err(Fail::Core(e)),
        }
    }

    /// AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959).
    async fn authenticate(&mut self, tag: &str, mech: &str, initial: Option<String>) -> Res {
        if mech != "PLAIN" {
            self.reply(Response::tagged(
                tag,
                Status::No,
                Some(Code::Cannot),
                "Only PLAIN is supported",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        if !self.secure {
            self.reply(Response::tagged(
                tag,
                Status::No,
                Some(Code::PrivacyRequired),
                "Use STARTTLS first",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        let resp = match initial {
            Some(r) => r,
            None => {
                self.reply(Response::Continue("".into())).await?;
                self.flush_out().await?;
                let io = live(&mut self.io)?;
                match read_line(io, self.settings.max_line).await? {
                    Line::Ok(l) => String::from_utf8_lossy(&l).trim_end().to_owned(),
                    _ => return Ok(Flow::Close),
                }
            }
        };
        if resp == "*" {
            self.reply(Response::bad(tag, "Authentication cancelled"))
                .await?;
            return Ok(Flow::Continue);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(resp.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some(d) = decoded else {
            self.reply(Response::bad(tag, "Invalid base64")).await?;
            return Ok(Flow::Continue);
        };
        let mut parts = d.split('\0');
        let (authz, user, pass) = (parts.next(), parts.next(), parts.next());
        match (authz, user, pass, parts.next()) {
            (Some(z), Some(u), Some(p), None) if z.is_empty() || z == u => {
                let (u, p) = (u.to_owned(), p.to_owned());
                self.login(tag, &u, &p).await
            }
            _ => {
                self.reply(Response::tagged(
                    tag,
                    Status::No,
                    Some(Code::AuthenticationFailed),
                    "Invalid credentials",
                ))
                .await?;
                Ok(Flow::Continue)
            }
        }
    }
}

/// A free function (not a method) so its future does not borrow the
/// session, whose stream is not `Sync`.
async fn status_line(
    core: Core,
    account: i32,
    mb: &mailcore::Mailbox,
    wire_name: &str,
    items: &[StatusItem],
) -> Result<String, Fail> {
    {
        let mut parts = Vec::new();
        let need_deleted = items.contains(&StatusItem::Deleted);
        let recent = if items.contains(&StatusItem::Recent) {
            let floor = core.recent_mark(account, mb.id).await?;
            core.mailbox_uids(account, mb.id)
                .await?
                .into_iter()
                .filter(|u| *u >= floor)
                .count()
        } else {
            0
        };
        let deleted = if need_deleted {
            let (list, _) = core
                .list_messages(account, mb.id, 0, u64::MAX >> 1, SortOrder::UidAsc)
                .await?;
            list.iter()
                .filter(|m| m.flags.contains(Flags::DELETED))
                .count()
        } else {
            0
        };
        for it in items {
            parts.push(match it {
                StatusItem::Messages => format!("MESSAGES {}", mb.total),
                StatusItem::UidNext => format!("UIDNEXT {}", mb.uidnext),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", mb.uidvalidity),
                StatusItem::Unseen => format!("UNSEEN {}", mb.unseen),
                StatusItem::Deleted => format!("DELETED {deleted}"),
                StatusItem::Size => format!("SIZE {}", mb.size),
                StatusItem::Recent => format!("RECENT {recent}"),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", mb.highest_modseq),
            });
        }
        Ok(format!(
            "STATUS {} ({})",
            IString(wire_name.as_bytes()),
            parts.join(" ")
        ))
    }
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    /// LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9, RFC 5258
    /// LIST-EXTENDED, RFC 6154 SPECIAL-USE). Superior names that are not
    /// mailboxes themselves (left when a parent is deleted) are listed as
    /// `\Noselect`, as RFC 3501 §6.3.8 asks.
    async fn list(&mut self, tag: &str, a: ListArgs) -> Res {
        let cmd = if a.lsub { "LSUB" } else { "LIST" };
        // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
        if a.patterns.len() == 1 && a.patterns[0].is_empty() {
            self.reply(Response::data(format!("{cmd} (\\Noselect) \"/\" \"\"")))
                .await?;
            return self.ok(tag, &format!("{cmd} completed")).await;
        }
        let boxes = self.core.list_mailboxes(self.account_id()).await?;
        // Subscribed names without a mailbox (RFC 9051 §6.3.7): listed by
        // LSUB and by LIST (SUBSCRIBED) only.
        let lone = if a.lsub || a.subscribed_only {
            self.core.lone_subscriptions(self.account_id()).await?
        } else {
            Vec::new()
        };
        let by_name: HashMap<&str, &mailcore::Mailbox> =
            boxes.iter().map(|b| (b.name.as_str(), b)).collect();
        // Every mailbox, each preceded by those of its superiors that are
        // not mailboxes, once.
        let mut names: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for b in &boxes {
            for (i, _) in b.name.match_indices('/') {
                let up = &b.name[..i];
                if !by_name.contains_key(up) && seen.insert(up) {
                    names.push(up);
                }
            }
            if seen.insert(b.name.as_str()) {
                names.push(b.name.as_str());
            }
        }
        for n in &lone {
            if seen.insert(n.as_str()) {
                names.push(n.as_str());
            }
        }
        let selected = |mb: &mailcore::Mailbox| {
            (!a.subscribed_only || mb.subscribed)
                && (!a.special_use_only || mb.special_use.is_some())
        };
        let any_selection = a.subscribed_only || a.special_use_only;
        let trailing_percent = a.patterns.iter().any(|p| p.ends_with('%'));
        let mut out = Vec::new();
        for name in names {
            if !a
                .patterns
                .iter()
                .any(|p| wildcard_match(&format!("{}{p}", a.reference), name))
            {
                continue;
            }
            let prefix = format!("{name}/");
            let below = || boxes.iter().filter(|b| b.name.starts_with(&prefix));
            let has_children = below().next().is_some();
            let mb = by_name.get(name).copied();
            let wire = self.name_out(name);
            let chosen = mb.is_some_and(selected);
            // RFC 5258 §3.5 (RECURSIVEMATCH), RFC 3501 §6.3.9 (LSUB with
            // a trailing %): a parent that is not chosen itself but has a
            // chosen child.
            let child_chosen = any_selection && !chosen && below().any(&selected);
            let mut attrs: Vec<&str> = Vec::new();
            let mut extended = "";
            let lone_sub = mb.is_none() && lone.iter().any(|l| l == name);
            if lone_sub {
                // RFC 5258 §3.1: a subscribed name that does not exist.
                if !a.lsub {
                    attrs.extend(["\\NonExistent", "\\Subscribed"]);
                }
            } else if chosen {
                if !a.lsub {
                    attrs.push(if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                }
            } else if a.lsub && child_chosen && trailing_percent {
                attrs.push("\\Noselect");
            } else if a.recursive_match && child_chosen {
                match mb {
                    Some(_) => attrs.push("\\HasChildren"),
                    None => attrs.push("\\NonExistent"),
                }
                extended = if a.subscribed_only {
                    " (\"CHILDINFO\" (\"SUBSCRIBED\"))"
                } else {
                    ""
                };
            } else if mb.is_none() && !any_selection && !a.lsub {
                attrs.extend(["\\Noselect", "\\HasChildren"]);
            } else {
                continue;
            }
            if let Some(mb) = mb {
                if !a.lsub && (a.return_subscribed || a.subscribed_only) && mb.subscribed {
                    attrs.push("\\Subscribed");
                }
                // RFC 6154: the special-use attributes are always shown
                // in LIST (LSUB keeps RFC 3501's attributes only).
                if let Some(su) = mb.special_use.as_ref().filter(|_| !a.lsub) {
                    attrs.push(su.as_str());
                }
            }
            out.push(Response::data(format!(
                "{cmd} ({}) \"/\" {}{extended}",
                attrs.join(" "),
                IString(wire.as_bytes())
            )));
            if let (Some(items), Some(mb), true) = (&a.return_status, mb, chosen) {
                out.push(Response::data(
                    status_line(self.core.clone(), self.account_id(), mb, &wire, items).await?,
                ));
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        self.ok(tag, &format!("{cmd} completed")).await
    }

    async fn select(
        &mut self,
        tag: &str,
        name: &str,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) -> Res {
        // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
        if let State::Selected(_) = self.state {
            self.state = State::Authenticated;
            self.reply(Response::untagged(
                Status::Ok,
                Some(Code::Closed),
                "Previous mailbox closed",
            ))
            .await?;
        }
        if condstore {
            self.condstore = true;
        }
        let Some(mb) = self.core.mailbox(self.account_id(), name).await? else {
            self.reply(Response::tagged(
                tag,
                Status::No,
                Some(Code::NonExistent),
                "No such mailbox",
            ))
            .await?;
            return Ok(Flow::Continue);
        };
        // The rows come from the core's index of the mailbox: only what
        // changed since another session looked is read again.
        let list = self
            .core
            .mailbox_index(self.account_id(), mb.id)
            .await?
            .messages;
        let uids: Vec<i64> = list.iter().map(|m| m.uid).collect();
        // RFC 3501 §2.3.2: a read-write SELECT claims the mailbox's recent
        // messages for this session; EXAMINE only looks.
        let floor = if read_only {
            self.core.recent_mark(self.account_id(), mb.id).await?
        } else {
            self.core
                .claim_recent(self.account_id(), mb.id, mb.uidnext)
                .await?
        };
        let recent: std::collections::HashSet<i64> =
            uids.iter().copied().filter(|u| *u >= floor).collect();
        let recent_count = recent.len();
        let first_unseen = list
            .iter()
            .position(|m| !m.flags.contains(Flags::SEEN))
            .map(|i| i + 1);
        let exists = list.len();
        let mut sel = Selected {
            id: mb.id,
            read_only,
            msgs: Vec::with_capacity(list.len()),
            uids,
            highest_modseq: mb.highest_modseq,
            store_modseq: mb.highest_modseq,
            recent,
            keywords: Vec::new(),
        };
        for m in list {
            sel.learn_keywords(&m.keywords);
            sel.msgs.push(Some(m));
        }
        let [flags, permanent] = sel.flag_responses();
        let ok = |code, text| Response::untagged(Status::Ok, Some(code), text);
        let mut out = vec![
            Response::data(format!("{exists} EXISTS")),
            Response::data(format!("{recent_count} RECENT")),
            flags,
            permanent,
            ok(Code::UidValidity(mb.uidvalidity), "UIDs valid"),
            ok(Code::UidNext(mb.uidnext), "Predicted next UID"),
            ok(Code::HighestModSeq(mb.highest_modseq), "Highest"),
        ];
        if self.rev2 {
            // RFC 9051 §6.3.2: the mailbox's canonical name, for rev2
            // clients only; a rev1 client (RFC 3501 §6.3.1 has no such
            // response) would take it as a second INBOX.
            out.push(Response::data(format!(
                "LIST () \"/\" {}",
                IString(self.name_out(&mb.name).as_bytes())
            )));
        }
        if let Some(n) = first_unseen {
            // RFC 3501 §7.1: rev1 clients look for UNSEEN here.
            out.insert(2, ok(Code::Unseen(n), "First unseen"));
        }
        // RFC 7162 §3.2.5.2: with the client's UIDVALIDITY, what vanished
        // and what changed since its MODSEQ, before the tagged OK.
        if let Some(q) = qresync.filter(|q| q.uidvalidity == mb.uidvalidity as u64) {
            if let Some(v) = vanished_line(&sel.uids, mb.uidnext, q.known_uids.as_ref()) {
                out.push(Response::data(v));
            }
            for (i, m) in sel.msgs.iter().enumerate() {
                let Some(m) = m else { continue };
                let known = q
                    .known_uids
                    .as_ref()
                    .is_none_or(|k| k.contains(m.uid as u32, u32::MAX));
                if known && m.modseq as u64 > q.modseq {
                    out.push(Response::data(format!(
                        "{} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                        i + 1,
                        m.uid,
                        fetch::flags(m, sel.recent.contains(&m.uid)),
                        m.modseq
                    )));
                }
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        self.state = State::Selected(Box::new(sel));
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.reply(Response::tagged(tag, Status::Ok, Some(code), text))
            .await?;
        Ok(Flow::Continue)
    }

    /// Brings this session's view up to date and reports the differences
    /// (RFC 9051 §7: EXISTS, EXPUNGE, FETCH FLAGS). With `expunges` false,
    /// vanished messages stay in the view, as `None`, until a command that
    /// may renumber.
    async fn sync(&mut self, expunges: bool) -> Result<(), Fail> {
        let account = self.account_id();
        let qresync = self.qresync;
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        // One row read answers "did anything change?"; only then is the
        // whole view compared with the store.
        let (modseq, count) = self.core.mailbox_modseq_and_count(account, sel.id).await?;
        if modseq == sel.store_modseq && !sel.msgs.iter().any(Option::is_none) {
            return Ok(());
        }
        // What changed since the last look: new and re-flagged messages by
        // MODSEQ, vanished ones by comparing UIDs.
        let changed = self
            .core
            .messages_changed_since(account, sel.id, sel.store_modseq)
            .await?;
        let max_known = sel.uids.last().copied().unwrap_or(0);
        let held = sel.msgs.iter().filter(|m| m.is_some()).count() as u64;
        // `count` and `modseq` are one moment (T0); `changed` was read
        // after it. New messages present at T0 are at least those in
        // `changed` above `max_known` with a MODSEQ up to T0's, so when the
        // count is that many more than what we hold, none of ours is gone
        // and reading every UID (a whole mailbox of rows, most of a busy
        // session's cost) is skipped. Anything later has a higher MODSEQ
        // and is seen next time.
        let new_at_t0 = changed
            .iter()
            .filter(|m| m.uid > max_known && m.modseq <= modseq)
            .count() as u64;
        // Expunges made through this node are known by UID (the core's
        // log); when the count agrees with them, they are all that went.
        let held_uid = |u: &i64| {
            sel.uids
                .binary_search(u)
                .is_ok_and(|i| sel.msgs.get(i).is_some_and(Option::is_some))
        };
        let logged: HashSet<i64> = self
            .core
            .expunged_between(sel.id, sel.store_modseq, modseq)
            .into_iter()
            .filter(held_uid)
            .collect();
        let explained = (held - logged.len() as u64).checked_add(new_at_t0) == Some(count);
        let gone: HashSet<i64> = if explained {
            logged
        } else {
            let present: HashSet<i64> = self
                .core
                .mailbox_uids(account, sel.id)
                .await?
                .into_iter()
                .collect();
            sel.uids
                .iter()
                .copied()
                .filter(|u| !present.contains(u))
                .collect()
        };
        sel.store_modseq = modseq;
        let current: HashMap<i64, MessageSummary> =
            changed.into_iter().map(|m| (m.uid, m)).collect();
        let mut out = Vec::new();
        // New keywords first, so the FETCH responses below name only
        // flags the client has been told of.
        let mut grew = false;
        for m in current.values() {
            grew |= sel.learn_keywords(&m.keywords);
        }
        if grew {
            out.extend(sel.flag_responses());
        }
        // Flag changes and vanished messages, in sequence order.
        for (i, slot) in sel.msgs.iter_mut().enumerate() {
            let Some(old) = slot else { continue };
            if gone.contains(&old.uid) {
                *slot = None;
                continue;
            }
            if let Some(new) = current.get(&old.uid) {
                if new.flags != old.flags || new.keywords != old.keywords {
                    let mut l = format!(
                        "{} FETCH (UID {} FLAGS {}",
                        i + 1,
                        new.uid,
                        fetch::flags(new, sel.recent.contains(&new.uid))
                    );
                    if self.condstore {
                        l.push_str(&format!(" MODSEQ ({})", new.modseq));
                    }
                    l.push(')');
                    out.push(Response::data(l));
                }
                *slot = Some(Arc::new(new.clone()));
            }
        }
        if expunges {
            // Report from the highest sequence number down, so each number
            // is right at the moment the client reads it; after ENABLE
            // QRESYNC, as one VANISHED by UID (RFC 7162 §3.2.10).
            let mut gone = Vec::new();
            for i in (0..sel.msgs.len()).rev() {
                if sel.msgs[i].is_none() {
                    if !qresync {
                        out.push(Response::data(format!("{} EXPUNGE", i + 1)));
                    }
                    gone.push(sel.uids[i] as u64);
                    sel.msgs.remove(i);
                    sel.uids.remove(i);
                }
            }
            if qresync && !gone.is_empty() {
                gone.reverse();
                out.push(Response::data(format!(
                    "VANISHED {}",
                    fetch::compress(&gone)
                )));
            }
        }
        let mut new: Vec<&MessageSummary> =
            current.values().filter(|m| m.uid > max_known).collect();
        if !new.is_empty() {
            new.sort_by_key(|m| m.uid);
            let upto = new.last().map(|m| m.uid + 1).unwrap_or(0);
            // New mail is \Recent for the first read-write session to see it.
            let floor = if sel.read_only {
                self.core.recent_mark(account, sel.id).await?
            } else {
                self.core.claim_recent(account, sel.id, upto).await?
            };
            for m in new {
                sel.uids.push(m.uid);
                if m.uid >= floor {
                    sel.recent.insert(m.uid);
                }
                sel.msgs.push(Some(Arc::new(m.clone())));
            }
            out.push(Response::data(format!("{} EXISTS", sel.msgs.len())));
            out.push(Response::data(format!("{} RECENT", sel.recent.len())));
        }
        sel.highest_modseq = current
            .values()
            .map(|m| m.modseq)
            .max()
            .unwrap_or(sel.highest_modseq)
            .max(sel.highest_modseq);
        for r in out {
            self.reply(r).await?;
        }
        Ok(())
    }

    /// The (sequence number, uid) pairs a set names. Sequence numbers past
    /// the end are an error (RFC 9051 §9 seq-number); UIDs that do not
    /// exist are simply not there.
    fn resolve(&self, uid: bool, set: &SeqSet) -> Result<Vec<(usize, i64)>, String> {
        let State::Selected(sel) = &self.state else {
            return Ok(Vec::new());
        };
        let n = sel.uids.len();
        if uid {
            let max = sel.uids.last().copied().unwrap_or(0).min(u32::MAX as i64) as u32;
            return Ok(sel
                .uids
                .iter()
                .enumerate()
                .filter(|(_, u)| set.contains(**u as u32, max))
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

    /// The selected mailbox's id and whether it is read-only.
    fn selected(&self) -> Option<(i32, bool)> {
        match &self.state {
            State::Selected(s) => Some((s.id, s.read_only)),
            _ => None,
        }
    }

    /// [`Self::resolve`], answering `BAD` for a bad set (then `None`).
    async fn targets(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
    ) -> Result<Option<Vec<(usize, i64)>>, Fail> {
        match self.resolve(uid, set) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                self.reply(Response::bad(tag, e)).await?;
                Ok(None)
            }
        }
    }

    async fn refuse_read_only(&mut self, tag: &str) -> Res {
        self.reply(Response::tagged(
            tag,
            Status::No,
            Some(Code::ReadOnly),
            "Mailbox is read-only",
        ))
        .await?;
        Ok(Flow::Continue)
    }

    /// UID FETCH's VANISHED modifier (RFC 7162 §3.2.6): the UIDs of the
    /// set that are gone. No per-message history of expunges is kept, so
    /// every UID below UIDNEXT that is not in the mailbox is named (RFC
    /// 7162 lets a server name UIDs the client never saw; it ignores them).
    async fn report_vanished(&mut self, set: &SeqSet) -> Result<(), Fail> {
        let account = self.account_id();
        let State::Selected(sel) = &self.state else {
            return Ok(());
        };
        let uidnext = self.core.mailbox_uidnext(account, sel.id).await?;
        let line = vanished_line(&sel.uids, uidnext, Some(set));
        if let Some(l) = line {
            self.reply(Response::data(l)).await?;
        }
        Ok(())
    }

    async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        mut items: Vec<super::proto::FetchItem>,
        changed_since: Option<u64>,
    ) -> Res {
        use super::proto::FetchItem;
        self.sync(false).await?;
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        if uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        if changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
            items.push(FetchItem::ModSeq);
        }
        let account = self.account_id();
        let Some((mailbox_id, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        let needs_raw = items.iter().any(fetch::needs_raw);
        let needs_mime = items.iter().any(fetch::needs_mime);
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    FetchItem::BodySection { peek: false, .. }
                        | FetchItem::Rfc822
                        | FetchItem::Rfc822Text
                )
            });
        // In runs: the raw bytes of a run are read in one go, and a run's
        // \Seen flags are set in one write.
        let mut rest = &targets[..];
        while !rest.is_empty() {
            let run = fetch_run(rest, |seq| match &self.state {
                State::Selected(s) => s.msgs[seq - 1].as_ref().map(|m| m.size),
                _ => None,
            });
            let (chunk, tail) = rest.split_at(run);
            rest = tail;
            let mut seen_now: HashSet<i64> = HashSet::new();
            if sets_seen {
                // A message CHANGEDSINCE leaves out is not read, so not
                // marked either.
                let unseen: HashMap<i64, usize> = chunk
                    .iter()
                    .filter(|(seq, _)| {
                        matches!(&self.state, State::Selected(s)
                        if s.msgs[seq - 1].as_ref().is_some_and(|m| {
                            !m.flags.contains(Flags::SEEN)
                                && changed_since.is_none_or(|c| m.modseq as u64 > c)
                        }))
                    })
                    .map(|&(seq, u)| (u, seq))
                    .collect();
                if !unseen.is_empty() {
                    let mut uids: Vec<i64> = unseen.keys().copied().collect();
                    uids.sort_unstable();
                    let changed = self
                        .core
                        .set_flags(account, mailbox_id, &uids, FlagOp::Add, Flags::SEEN)
                        .await?;
                    if let State::Selected(s) = &mut self.state {
                        for (u, f, m) in changed {
                            seen_now.insert(u);
                            let Some(&seq) = unseen.get(&u) else {
                                continue;
                            };
                            if let Some(msg) = s.msgs[seq - 1].as_mut() {
                                let msg = Arc::make_mut(msg);
                                msg.flags = f;
                                msg.modseq = m;
                            }
                            if s.store_modseq + 1 == m {
                                s.store_modseq = m;
                            }
                        }
                    }
                }
            }
            let mut raws: HashMap<i64, Vec<u8>> = if needs_raw {
                let uids: Vec<i64> = chunk.iter().map(|&(_, u)| u).collect();
                match self.core.messages_raw(account, mailbox_id, &uids).await {
                    Ok(r) => r.into_iter().collect(),
                    Err(CoreError::NotFound(_)) => HashMap::new(),
                    Err(e) => return Err(Fail::Core(e)),
                }
            } else {
                HashMap::new()
            };
            for &(seq, u) in chunk {
                let msg = match &self.state {
                    State::Selected(s) => s.msgs[seq - 1].clone(),
                    _ => None,
                };
                // Expunged by another session, not yet reported: RFC 9051
                // §7.5.1 lets us omit it.
                let Some(msg) = msg else { continue };
                if changed_since.is_some_and(|c| msg.modseq as u64 <= c) {
                    continue;
                }
                let flags_changed = seen_now.contains(&u);
                let raw = if needs_raw {
                    match raws.remove(&u) {
                        Some(r) => Some(r),
                        None => continue,
                    }
                } else {
                    None
                };
                // Parsed once for all the items that need the MIME structure.
                let mime = raw.as_deref().filter(|_| needs_mime).and_then(fetch::parse);
                let recent = matches!(&self.state, State::Selected(s) if s.recent.contains(&u));
                let mut parts: Vec<Vec<u8>> = Vec::new();
                let mut has_flags = false;
                for it in &items {
                    if *it == FetchItem::Flags {
                        has_flags = true;
                    }
                    parts.push(fetch::render(
                        it,
                        &msg,
                        raw.as_deref(),
                        mime.as_ref(),
                        recent,
                    ));
                }
                if flags_changed && !has_flags {
                    parts.push(format!("FLAGS {}", fetch::flags(&msg, recent)).into_bytes());
                }
                self.reply(Response::Fetch { seq, items: parts }).await?;
            }
        }
        self.ok(
            tag,
            &format!("{}FETCH completed", if uid { "UID " } else { "" }),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        op: StoreOp,
        silent: bool,
        names: &[String],
        unchanged_since: Option<u64>,
    ) -> Res {
        self.sync(false).await?;
        let Some((mailbox_id, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if read_only {
            return self.refuse_read_only(tag).await;
        }
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        // RFC 7162 §3.1.3: messages changed since UNCHANGEDSINCE fail.
        let mut failed = Vec::new();
        let mut uids = Vec::new();
        for (seq, u) in &targets {
            let m = match &self.state {
                State::Selected(s) => s.msgs[seq - 1].clone(),
                _ => None,
            };
            match (m, unchanged_since) {
                (None, _) => {}
                (Some(m), Some(us)) if m.modseq as u64 > us => {
                    failed.push(if uid { *u } else { *seq as i64 })
                }
                _ => uids.push(*u),
            }
        }
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let change = match parse_flags(names) {
            Ok(f) => f,
            Err(e) => {
                self.reply(Response::bad(tag, e)).await?;
                return Ok(Flow::Continue);
            }
        };
        let changed = self
            .core
            .store_flags(self.account_id(), mailbox_id, &uids, op, &change)
            .await?;
        let changed: HashMap<i64, (FlagSet, i64)> = changed
            .into_iter()
            .map(|c| (c.uid, (c.flags, c.modseq)))
            .collect();
        // Report the new state of every message named (RFC 9051 §6.4.6),
        // unless .SILENT. Unchanged messages keep the flags this view has.
        let mut out = Vec::new();
        if let State::Selected(s) = &mut self.state {
            if let Some((_, m)) = changed.values().next()
                && s.store_modseq + 1 == *m
            {
                // Ours was the only change since the last look.
                s.store_modseq = *m;
            }
            // Only keywords a message now has are new to the mailbox (a
            // -FLAGS of an unknown keyword creates nothing).
            let mut grew = false;
            for (f, _) in changed.values() {
                grew |= s.learn_keywords(&f.keywords);
            }
            if grew {
                out.extend(s.flag_responses());
            }
            for (seq, u) in &targets {
                let Some(Some(msg)) = s.msgs.get_mut(seq - 1) else {
                    continue;
                };
                let was_changed = if let Some((f, m)) = changed.get(u) {
                    let msg = Arc::make_mut(msg);
                    msg.flags = f.system;
                    msg.keywords = f.keywords.clone();
                    msg.modseq = *m;
                    true
                } else {
                    false
                };
                if !silent || (self.condstore && was_changed) {
                    let mut l = format!("{seq} FETCH (");
                    if uid {
                        l.push_str(&format!("UID {u} "));
                    }
                    l.push_str(&format!(
                        "FLAGS {}",
                        fetch::flags(msg, s.recent.contains(u))
                    ));
                    if self.condstore {
                        l.push_str(&format!(" MODSEQ ({})", msg.modseq));
                    }
                    l.push(')');
                    out.push(Response::data(l));
                }
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        if failed.is_empty() {
            self.ok(tag, "STORE completed").await
        } else {
            let list: Vec<String> = failed.iter().map(|n| n.to_string()).collect();
            let code = Code::Modified(list.join(","));
            self.ok_with(tag, code, "Conditional STORE failed for some")
                .await
        }
    }

    async fn expunge(&mut self, tag: &str, only: Option<SeqSet>) -> Res {
        let Some((mailbox_id, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if read_only {
            return self.refuse_read_only(tag).await;
        }
        let uids = only.as_ref().map(|set| {
            self.resolve(true, set)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, u)| u)
                .collect::<Vec<_>>()
        });
        self.core
            .expunge(self.account_id(), mailbox_id, uids.as_deref())
            .await?;
        self.sync(true).await?;
        self.ok(tag, "EXPUNGE completed").await
    }

    async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<String>>,
        key: SearchKey,
    ) -> Res {
        self.sync(false).await?;
        let account = self.account_id();
        let (mailbox_id, msgs, uids, recent) = match &self.state {
            State::Selected(s) => (s.id, s.msgs.clone(), s.uids.clone(), s.recent.clone()),
            _ => return Ok(Flow::Continue),
        };
        let needs_raw = fetch::search_needs_raw(&key);
        let max_uid = uids.last().copied().unwrap_or(0) as u32;
        let n = msgs.len() as u32;
        let mut hits: Vec<(usize, i64)> = Vec::new();
        let mut highest = 0i64;
        let present: Vec<(usize, i64)> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i + 1, m.uid)))
            .collect();
        let mut raws: HashMap<i64, Vec<u8>> = HashMap::new();
        let mut next_run = 0;
        for (k, &(seq, _)) in present.iter().enumerate() {
            let i = seq - 1;
            let Some(m) = &msgs[i] else { continue };
            // Read in runs, as FETCH does (one query per message was most
            // of a text search's cost).
            if needs_raw && k == next_run {
                let left = &present[k..];
                let run = fetch_run(left, |seq| msgs[seq - 1].as_ref().map(|m| m.size));
                next_run = k + run;
                let uids: Vec<i64> = left[..run].iter().map(|&(_, u)| u).collect();
                raws = match self.core.messages_raw(account, mailbox_id, &uids).await {
                    Ok(r) => r.into_iter().collect(),
                    Err(CoreError::NotFound(_)) => HashMap::new(),
                    Err(e) => return Err(Fail::Core(e)),
                };
            }
            let raw = if needs_raw {
                match raws.remove(&m.uid) {
                    Some(r) => Some(r),
                    None => continue,
                }
            } else {
                None
            };
            let ctx = fetch::SearchCtx {
                seq: i as u32 + 1,
                max_seq: n,
                max_uid,
                recent: recent.contains(&m.uid),
            };
            if fetch::matches(&key, m, raw.as_deref(), &ctx) {
                hits.push((i + 1, m.uid));
                highest = highest.max(m.modseq);
            }
        }
        // RFC 7162 §3.1.5: a search by MODSEQ reports the highest MODSEQ
        // of what it found.
        let modseq = (fetch::uses_modseq(&key) && !hits.is_empty()).then_some(highest);
        let nums: Vec<u64> = hits
            .iter()
            .map(|(s, u)| if uid { *u as u64 } else { *s as u64 })
            .collect();
        match ret {
            // RFC 4731 ESEARCH.
            Some(opts) => {
                let opts = if opts.is_empty() {
                    vec!["ALL".to_owned()]
                } else {
                    opts
                };
                let mut l = format!("ESEARCH (TAG {})", IString(tag.as_bytes()));
                if uid {
                    l.push_str(" UID");
                }
                for o in &opts {
                    match o.as_str() {
                        "MIN" if !nums.is_empty() => l.push_str(&format!(" MIN {}", nums[0])),
                        "MAX" if !nums.is_empty() => {
                            l.push_str(&format!(" MAX {}", nums[nums.len() - 1]))
                        }
                        "COUNT" => l.push_str(&format!(" COUNT {}", nums.len())),
                        "ALL" if !nums.is_empty() => {
                            l.push_str(&format!(" ALL {}", fetch::compress(&nums)))
                        }
                        _ => {}
                    }
                }
                if let Some(m) = modseq {
                    l.push_str(&format!(" MODSEQ {m}"));
                }
                self.reply(Response::data(l)).await?;
            }
            None => {
                let list: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
                let sp = if list.is_empty() { "" } else { " " };
                let tail = modseq.map(|m| format!(" (MODSEQ {m})")).unwrap_or_default();
                self.reply(Response::data(format!(
                    "SEARCH{sp}{}{tail}",
                    list.join(" ")
                )))
                .await?;
            }
        }
        self.ok(
            tag,
            &format!("{}SEARCH completed", if uid { "UID " } else { "" }),
        )
        .await
    }

    async fn copy(&mut self, tag: &str, uid: bool, set: &SeqSet, dest: &str, mv: bool) -> Res {
        self.sync(false).await?;
        let Some((mailbox_id, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if mv && read_only {
            return self.refuse_read_only(tag).await;
        }
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        let Some(to) = self.core.mailbox(self.account_id(), dest).await? else {
            self.reply(Response::tagged(
                tag,
                Status::No,
                Some(Code::TryCreate),
                "No such mailbox",
            ))
            .await?;
            return Ok(Flow::Continue);
        };
        let uids: Vec<i64> = targets.iter().map(|(_, u)| *u).collect();
        let pairs = if mv {
            self.core
                .move_messages(self.account_id(), mailbox_id, &uids, to.id)
                .await?
        } else {
            self.core
                .copy_messages(self.account_id(), mailbox_id, &uids, to.id)
                .await?
        };
        // RFC 4315 §3: COPYUID names the new UIDs, when there are any.
        let code = (!pairs.is_empty()).then(|| {
            let src: Vec<u64> = pairs.iter().map(|p| p.0 as u64).collect();
            let dst: Vec<u64> = pairs.iter().map(|p| p.1 as u64).collect();
            Code::CopyUid {
                uidvalidity: to.uidvalidity,
                from: fetch::compress(&src),
                to: fetch::compress(&dst),
            }
        });
        if mv {
            // RFC 6851 §4.3: COPYUID in an untagged OK, then the EXPUNGEs.
            if code.is_some() {
                self.reply(Response::untagged(Status::Ok, code, "Moved"))
                    .await?;
            }
            self.sync(true).await?;
            self.ok(tag, "MOVE completed").await
        } else {
            self.reply(Response::tagged(tag, Status::Ok, code, "COPY completed"))
                .await?;
            Ok(Flow::Continue)
        }
    }

    /// RFC 2177 IDLE: report changes as they happen until DONE.
    async fn idle(&mut self, tag: &str) -> Res {
        let mut feed = self.core.subscribe();
        self.reply(Response::Continue("idling".into())).await?;
        let account = self.account_id();
        let selected = match &self.state {
            State::Selected(s) => Some(s.id),
            _ => None,
        };
        // Changes between SELECT and IDLE.
        self.sync(true).await?;
        let deadline = tokio::time::Instant::now() + self.settings.autologout;
        // The change feed is in-process. With several nodes on one
        // PostgreSQL, mail accepted on another node is noticed by a cheap
        // look at the mailbox's change counter every second.
        let cross_node = self.core.backend() == mailcore::Backend::Postgres;
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.tick().await;
        loop {
            self.flush_out().await?;
            let io = live(&mut self.io)?;
            tokio::select! {
                line = read_line(io, self.settings.max_line) => {
                    match line? {
                        Line::Ok(l) if l.trim_ascii().eq_ignore_ascii_case(b"DONE") => {
                            return self.ok(tag, "IDLE terminated").await;
                        }
                        Line::Ok(_) | Line::TooLong(_) => {
                            self.reply(Response::bad(tag, "Expected DONE")).await?;
                            return Ok(Flow::Continue);
                        }
                        Line::Eof => return Ok(Flow::Close),
                    }
                }
                ev = feed.recv() => {
                    match ev {
                        Ok(ev) if ev.account_id == account && ev.kind == ChangeKind::SessionsEnded => {
                            if self.sessions_ended().await {
                                self.bye_sessions_ended().await?;
                                return Ok(Flow::Close);
                            }
                        }
                        Ok(ev) if ev.account_id == account
                            && (ev.mailbox_id.is_none() || ev.mailbox_id == selected) =>
                        {
                            if !matches!(ev.kind, ChangeKind::MailboxesChanged) {
                                self.sync(true).await?;
                            }
                        }
                        Ok(_) => {}
                        // Fell behind the feed: look at the store instead.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.sync(true).await?,
                        Err(_) => return Ok(Flow::Close),
                    }
                }
                _ = poll.tick() => {
                    if cross_node {
                        self.sync(true).await?;
                    }
                    // Sessions ended by the CLI or another node reach an
                    // idling client within a couple of seconds.
                    if self.sessions_ended().await {
                        self.bye_sessions_ended().await?;
                        return Ok(Flow::Close);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.reply(Response::untagged(Status::Bye, None, "Autologout; idle for too long")).await?;
                    return Ok(Flow::Close);
                }
            }
        }
    }
}

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%`
/// anything but the hierarchy delimiter.
/// RFC 3501 §6.3.3, RFC 9051 §6.3.4: a trailing separator on CREATE (and
/// SUBSCRIBE) only declares that names will be made under this one; a
/// server that needs no such declaration ignores it.
/// At most this many messages' bytes are read from the store at once.
const RUN_MESSAGES: usize = 64;
/// And at most this many bytes (a run always has at least one message).
const RUN_BYTES: i64 = 8 * 1024 * 1024;

/// How many of `targets` (sequence number, UID) the next run of a FETCH
/// takes. `size` gives a message's size by sequence number (None: gone).
fn fetch_run(targets: &[(usize, i64)], size: impl Fn(usize) -> Option<i64>) -> usize {
    let mut bytes = 0i64;
    let mut n = 0;
    for &(seq, _) in targets.iter().take(RUN_MESSAGES) {
        bytes = bytes.saturating_add(size(seq).unwrap_or(0).max(0));
        if n > 0 && bytes > RUN_BYTES {
            break;
        }
        n += 1;
    }
    n
}

fn declared_name(name: String) -> String {
    match name.strip_suffix('/') {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => name,
    }
}

/// `* VANISHED (EARLIER) uids`: the UIDs below `uidnext` (and in `within`,
/// when given) that `present` (ascending) lacks, as ranges; None if none.
fn vanished_line(present: &[i64], uidnext: i64, within: Option<&SeqSet>) -> Option<String> {
    let top = u32::try_from(uidnext.saturating_sub(1)).unwrap_or(u32::MAX);
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    let mut next = 1u32;
    for &u in present {
        let u = u32::try_from(u).unwrap_or(u32::MAX);
        if u > next {
            gaps.push((next, u - 1));
        }
        next = u.saturating_add(1);
    }
    if next <= top {
        gaps.push((next, top));
    }
    let want = within.map_or_else(|| vec![(1, top)], |w| w.ranges(top));
    let mut parts = Vec::new();
    for (a, b) in gaps {
        for &(c, d) in &want {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                parts.push(if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}:{hi}")
                });
            }
        }
    }
    (!parts.is_empty()).then(|| format!("VANISHED (EARLIER) {}", parts.join(",")))
}

pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    // RFC 9051 §5.1: INBOX is case-insensitive, also as the first level
    // of a pattern (`inbox/%`).
    let pattern = match pattern.get(..5) {
        Some(head)
            if head.eq_ignore_ascii_case("INBOX")
                && matches!(pattern.as_bytes().get(5), None | Some(b'/')) =>
        {
            format!("INBOX{}", &pattern[5..])
        }
        _ => pattern.to_owned(),
    };
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Dynamic programming over (pattern position, name position): time
    // O(|p|·|n|) whatever wildcards a hostile client sends. `row[j]`: the
    // pattern so far matches name[..j].
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        match c {
            b'*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            b'%' => {
                // Like *, but no match across a hierarchy delimiter.
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == b'/' {
                        any = false;
                    }
                    any |= row[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_runs_are_bounded_by_count_and_bytes() {
        let targets: Vec<(usize, i64)> = (1..=200).map(|i| (i, i as i64)).collect();
        assert_eq!(fetch_run(&targets, |_| Some(3000)), RUN_MESSAGES);
        assert_eq!(fetch_run(&targets[..5], |_| Some(3000)), 5);
        // 3 MiB each: two fit under 8 MiB, the third would not.
        assert_eq!(fetch_run(&targets, |_| Some(3 << 20)), 2);
        // One message larger than the whole budget still makes a run.
        assert_eq!(fetch_run(&targets, |_| Some(50 << 20)), 1);
        assert_eq!(fetch_run(&targets, |_| None), RUN_MESSAGES);
        assert_eq!(fetch_run(&[], |_| Some(1)), 0);
    }

    #[test]
    fn list_wildcards() {
        assert!(wildcard_match("*", "Archive/2026"));
        assert!(wildcard_match("%", "Archive"));
        assert!(!wildcard_match("%", "Archive/2026"));
        assert!(wildcard_match("Archive/%", "Archive/2026"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("Sent", "Sent Items"));
        assert!(wildcard_match("inbox/%", "INBOX/Lists"));
        assert!(!wildcard_match("inboxes", "INBOXES"));
        assert!(wildcard_match("%/%", "a/b"));
        assert!(!wildcard_match("%/%", "a/b/c"));
        assert!(!wildcard_match("%/%", "a"));
        assert!(wildcard_match("a%/*", "abc/d/e"));
        assert!(wildcard_match("%b%", "abc"));
        assert!(!wildcard_match("%c", "a/bc"));
        // A hostile pattern is |p|·|n| work; backtracking would not end.
        let name = "a".repeat(255);
        assert!(!wildcard_match(&format!("{}b", "*a%".repeat(100)), &name));
        assert!(wildcard_match(&"*a".repeat(100), &name));
    }

    #[test]
    fn state_table() {
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
