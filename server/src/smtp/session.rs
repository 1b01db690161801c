//! One SMTP session: a state machine over a byte stream (RFC 5321 §4.1.4
//! for command order, RFC 3207 for STARTTLS, RFC 4954 for AUTH).
//!
//! Invariants:
//! - `250` after DATA is sent only once the message is on disk: in the
//!   node's spool (group-committed), or committed to the store.
//! - After STARTTLS every byte the client sent before the handshake is
//!   thrown away (CVE-2011-0411) and the session returns to its initial
//!   state (RFC 3207 §4.2).
//! - The end of DATA is only `CRLF . CRLF`; a bare LF or CR next to a dot is
//!   message content (CVE-2023-51764..51766 "SMTP smuggling").
//! - Nothing a client sends is unwrapped; every bad input gets a reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailcore::delivery::{AcceptError, Envelope};
use mailcore::submission::{SubmissionError, rfc5322_date};
use mailcore::{AccountRef, Address, AuthError, Core, Rejection, Route};
use tokio::io::BufReader;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;

use super::proto::{Command, ParseError, Reply, parse_command, unstuff};
use crate::limits::{AccountGuard, Limits};
use crate::listen::Conn;
use crate::netio::{BoxIo, Line, live, write_flush};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail from other servers; no AUTH, no relay.
    Mx,
    /// Port 587: STARTTLS, then AUTH, then anything.
    Submission,
    /// Port 465: implicit TLS (RFC 8314), AUTH required.
    Smtps,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line: usize,
    pub max_errors: u32,
    pub command_timeout: Duration,
    /// Between transactions; see `SmtpConfig::idle_timeout_secs`.
    pub idle_timeout: Duration,
    pub idle_timeout_busy: Duration,
    pub data_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// SPF, DKIM and DMARC for mail from other servers; None turns them off.
    pub sender_checks: Option<Arc<super::inbound_auth::InboundAuth>>,
    /// FUTURERELEASE (RFC 4865) on submission: the longest hold, in
    /// seconds; 0 does not offer it.
    pub max_future_release: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            // RFC 5321 §4.5.3.1.8 asks for at least 100.
            max_recipients: 1000,
            // RFC 5321 §4.5.3.1.4 says 512 for a command line; AUTH lines
            // carry base64 and RFC 4954 §4 allows them 12288.
            max_line: 12288,
            max_errors: 10,
            // RFC 5321 §4.5.3.2.7: at least 5 minutes.
            command_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            idle_timeout_busy: Duration::from_secs(10),
            data_timeout: Duration::from_secs(600),
            tls_handshake_timeout: Duration::from_secs(30),
            sender_checks: None,
            max_future_release: 30 * 86_400,
        }
    }
}

struct Transaction {
    /// Sender and the recipients routed so far, each local one with the
    /// address it was sent to: delivery uses these routes as they are.
    env: Envelope,
    recipients: Vec<String>,
    /// Chunks received so far with BDAT (RFC 3030); None until the first.
    chunks: Option<Vec<u8>>,
    /// A chunk pushed the message past the size limit: the rest is read
    /// and dropped, and LAST gets 552.
    too_big: bool,
    /// FUTURERELEASE (RFC 4865): held until then, not sent now.
    hold_until: Option<i64>,
}

enum Flow {
    Continue,
    Close,
}

/// Where a session is in RFC 5321 §4.1.4's command order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before EHLO/HELO.
    Connected,
    /// Greeted, no transaction open.
    Ready,
    /// After MAIL, before a recipient was accepted.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
    /// BDAT chunks being received (RFC 3030 §2).
    Chunking,
}

/// The commands that act on the transaction (the rest are allowed in
/// every phase: EHLO, HELO, RSET, NOOP, QUIT, VRFY, EXPN, HELP, and
/// STARTTLS/AUTH, which check their own preconditions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Mail,
    Rcpt,
    Data,
}

/// The one table of what each phase accepts; `Err` is the reply.
fn accepts(phase: Phase, verb: Verb) -> Result<(), Reply> {
    use Phase::*;
    match (phase, verb) {
        (Connected, Verb::Mail) => Err(r(503, "5.5.1", "Send EHLO or HELO first")),
        (Ready, Verb::Mail) => Ok(()),
        (Mail | Rcpt | Chunking, Verb::Mail) => Err(r(503, "5.5.1", "Nested MAIL command")),
        (Connected | Ready, Verb::Rcpt | Verb::Data) => Err(r(503, "5.5.1", "Send MAIL first")),
        (Mail | Rcpt, Verb::Rcpt) => Ok(()),
        (Chunking, Verb::Rcpt) => Err(r(503, "5.5.1", "RCPT after BDAT is not allowed")),
        (Mail, Verb::Data) => Err(r(554, "5.5.1", "No valid recipients")),
        (Rcpt, Verb::Data) => Ok(()),
        // RFC 3030 §2: BDAT and DATA may not be mixed in one transaction.
        (Chunking, Verb::Data) => Err(r(503, "5.5.1", "DATA after BDAT is not allowed")),
    }
}

/// Replies that count towards `max_errors`: the client broke the protocol.
/// A refused recipient (550) or message (552, 554) is an answer, not a
/// client error: a message with one good and 200 stale recipients must
/// still reach the good one.
fn is_protocol_error(code: u16) -> bool {
    matches!(code, 500..=504 | 555)
}

pub struct Session {
    core: Core,
    settings: Arc<Settings>,
    limits: Arc<Limits>,
    mode: Mode,
    peer: SocketAddr,
    io: Option<BufReader<BoxIo>>,
    tls: Option<TlsAcceptor>,
    secure: bool,
    helo: Option<String>,
    esmtp: bool,
    auth: Option<(AccountRef, AccountGuard)>,
    txn: Option<Transaction>,
    errors: u32,
}

fn r(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
    Reply::new(code, enhanced, text)
}

fn too_big_reply(max: usize) -> Reply {
    r(552, "5.3.4", format!("Message too big (limit {max} bytes)"))
}

fn unavailable() -> Reply {
    r(
        451,
        "4.3.0",
        "Mail store temporarily unavailable, try again later",
    )
}

impl Session {
    pub fn new(
        core: Core,
        settings: Arc<Settings>,
        limits: Arc<Limits>,
        mode: Mode,
        conn: Conn,
    ) -> Session {
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
            mode,
            peer,
            io: Some(BufReader::new(io)),
            tls,
            secure,
            helo: None,
            esmtp: false,
            auth: None,
            txn: None,
            errors: 0,
        }
    }

    fn io(&mut self) -> std::io::Result<&mut BufReader<BoxIo>> {
        live(&mut self.io)
    }

    async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        write_flush(self.io()?, reply.to_wire().as_bytes()).await
    }

    async fn read_line(&mut self, max: usize) -> std::io::Result<Line> {
        crate::netio::read_line(self.io()?, max).await
    }

    pub async fn run(mut self) {
        let peer = self.peer;
        if let Err(e) = self.serve().await {
            tracing::debug!(%peer, error = %e, "smtp connection ended");
        }
        crate::netio::close(&mut self.io).await;
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let greeting = r(220, "", format!("{} ESMTP Tern", self.settings.hostname));
        self.send(&greeting).await?;
        loop {
            let line = match timeout(
                self.wait_for_command(),
                self.read_line(self.settings.max_line),
            )
            .await
            {
                Err(_) => {
                    let _ = self
                        .send(&r(421, "4.4.2", "Timeout waiting for a command, closing"))
                        .await;
                    return Ok(());
                }
                Ok(l) => l?,
            };
            let reply = match line {
                Line::Eof => return Ok(()),
                Line::TooLong(_) => Some(r(
                    500,
                    "5.5.2",
                    format!("Line too long (limit {} bytes)", self.settings.max_line),
                )),
                Line::Ok(bytes) => match parse_command(&bytes) {
                    Err(ParseError::Unknown) => Some(r(500, "5.5.1", "Command not recognized")),
                    Err(ParseError::Syntax(why)) => {
                        Some(r(501, "5.5.4", format!("Syntax error: {why}")))
                    }
                    Ok(cmd) => {
                        let (name, started) = (cmd.name(), std::time::Instant::now());
                        let handled = self.handle(cmd).await?;
                        crate::listen::observe_command("smtp", name, started);
                        match handled {
                            (reply, Flow::Close) => {
                                if let Some(reply) = reply {
                                    let _ = self.send(&reply).await;
                                }
                                return Ok(());
                            }
                            (reply, Flow::Continue) => reply,
                        }
                    }
                },
            };
            if let Some(reply) = reply {
                if is_protocol_error(reply.code) {
                    self.errors += 1;
                }
                self.send(&reply).await?;
                if self.errors >= self.settings.max_errors {
                    self.send(&r(
                        421,
                        "4.7.0",
                        format!(
                            "Too many errors (limit {}), closing",
                            self.settings.max_errors
                        ),
                    ))
                    .await?;
                    return Ok(());
                }
            }
        }
    }

    /// How long the next command may take to arrive. RFC 5321 §4.5.3.2.7's
    /// five minutes hold inside a transaction; a client with none open is
    /// only holding a slot, so it gets less, and much less when the pool is
    /// nearly full.
    fn wait_for_command(&self) -> Duration {
        if self.txn.is_some() {
            self.settings.command_timeout
        } else if self.limits.busy() {
            self.settings.idle_timeout_busy
        } else {
            self.settings.idle_timeout
        }
    }

    fn phase(&self) -> Phase {
        match (&self.helo, &self.txn) {
            (None, _) => Phase::Connected,
            (Some(_), None) => Phase::Ready,
            (Some(_), Some(t)) if t.chunks.is_some() => Phase::Chunking,
            (Some(_), Some(t)) if t.recipients.is_empty() => Phase::Mail,
            (Some(_), Some(_)) => Phase::Rcpt,
        }
    }

    fn auth_required(&self) -> bool {
        self.mode != Mode::Mx
    }

    async fn handle(&mut self, cmd: Command) -> std::io::Result<(Option<Reply>, Flow)> {
        let reply = match cmd {
            Command::Ehlo(host) => {
                self.helo = Some(host);
                self.esmtp = true;
                self.txn = None;
                self.ehlo_reply()
            }
            Command::Helo(host) => {
                self.helo = Some(host);
                self.esmtp = false;
                self.txn = None;
                r(250, "", self.settings.hostname.clone())
            }
            Command::Quit => {
                return Ok((Some(r(221, "2.0.0", "Bye")), Flow::Close));
            }
            Command::Noop => r(250, "2.0.0", "OK"),
            Command::Rset => {
                self.txn = None;
                r(250, "2.0.0", "OK")
            }
            // RFC 5321 §3.5.3: 252 says nothing about whether the user exists.
            Command::Vrfy => r(252, "2.5.0", "Cannot verify, but will try delivery"),
            Command::Expn => r(502, "5.5.1", "EXPN is not available"),
            Command::Help => r(214, "2.0.0", "See RFC 5321"),
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            Command::Mail { from, params } => match accepts(self.phase(), Verb::Mail) {
                Ok(()) => self.mail(from, params).await,
                Err(reply) => reply,
            },
            Command::Rcpt { to, params } => match accepts(self.phase(), Verb::Rcpt) {
                // RFC 5321 §4.1.1.11: an unknown parameter is 555, as for
                // MAIL. No RCPT extension (DSN's NOTIFY/ORCPT) is offered.
                Ok(()) if !params.is_empty() => r(
                    555,
                    "5.5.4",
                    format!("Unsupported parameter {}", params[0].0),
                ),
                Ok(()) => self.rcpt(&to).await,
                Err(reply) => reply,
            },
            Command::Data => match accepts(self.phase(), Verb::Data) {
                Ok(()) => return self.data().await,
                Err(reply) => reply,
            },
            Command::Bdat { size, last } => return self.bdat(size, last).await,
        };
        Ok((Some(reply), Flow::Continue))
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            format!(
                "{} greets {}",
                self.settings.hostname,
                self.helo.as_deref().unwrap_or("you")
            ),
            "PIPELINING".into(),
            format!("SIZE {}", self.settings.max_message_size),
            "8BITMIME".into(),
            "CHUNKING".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if !self.secure && self.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        // RFC 8689 §4.1: offered only over TLS.
        if self.secure {
            lines.push("REQUIRETLS".into());
        }
        // RFC 4865 §3: FUTURERELEASE max-interval max-date-time, on the
        // listeners users send through.
        if self.auth_required() && self.settings.max_future_release > 0 {
            let max = self.settings.max_future_release;
            let until = mail_parser::DateTime::from_timestamp(self.core.clock().now() + max);
            lines.push(format!("FUTURERELEASE {max} {}", until.to_rfc3339()));
        }
        // RFC 4954 §4 and RFC 8314: AUTH only where it belongs and only
        // over TLS, so a password never crosses the wire in clear.
        if self.auth_required() && self.secure && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply::multi(250, lines)
    }

    async fn starttls(&mut self) -> std::io::Result<(Option<Reply>, Flow)> {
        if self.secure {
            return Ok((Some(r(503, "5.5.1", "TLS already active")), Flow::Continue));
        }
        let Some(acceptor) = self.tls.clone() else {
            return Ok((Some(r(454, "4.7.0", "TLS not available")), Flow::Continue));
        };
        self.send(&r(220, "2.0.0", "Ready to start TLS")).await?;
        let limit = self.settings.tls_handshake_timeout;
        if !crate::netio::upgrade_tls(&mut self.io, &acceptor, limit, self.peer).await? {
            return Ok((None, Flow::Close));
        }
        // RFC 3207 §4.2: the session starts over.
        self.secure = true;
        self.helo = None;
        self.esmtp = false;
        self.txn = None;
        Ok((None, Flow::Continue))
    }

    async fn read_auth_line(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.send(&Reply::multi(334, vec![prompt.to_owned()]))
            .await?;
        match timeout(
            self.settings.command_timeout,
            self.read_line(self.settings.max_line),
        )
        .await
        {
            Ok(Ok(Line::Ok(b))) => Ok(Some(String::from_utf8_lossy(&b).trim_end().to_owned())),
            Ok(Ok(_)) | Err(_) => Ok(None),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Reply> {
        if !self.auth_required() {
            return Ok(r(
                502,
                "5.5.1",
                "AUTH is not available on this port; use submission (587 or 465)",
            ));
        }
        if !self.secure {
            return Ok(r(
                538,
                "5.7.11",
                "Encryption required: issue STARTTLS first",
            ));
        }
        if self.auth.is_some() {
            return Ok(r(503, "5.5.1", "Already authenticated"));
        }
        if self.txn.is_some() {
            return Ok(r(
                503,
                "5.5.1",
                "AUTH not allowed during a mail transaction",
            ));
        }
        use crate::sasl::{self, SaslError};
        let cancelled = || r(501, "5.7.0", "Authentication cancelled");
        let refused = |e: SaslError| match e {
            SaslError::Cancelled => cancelled(),
            SaslError::BadBase64 => r(501, "5.5.2", "Invalid base64"),
            SaslError::Malformed => r(535, "5.7.8", "Authentication credentials invalid"),
        };
        let (user, pass) = match mechanism {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => match self.read_auth_line("").await? {
                        Some(l) => l,
                        None => return Ok(cancelled()),
                    },
                };
                match sasl::plain(&resp) {
                    Ok(c) => (c.user, c.password),
                    Err(e) => return Ok(refused(e)),
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => sasl::text(&i),
                    None => match self.read_auth_line("VXNlcm5hbWU6").await? {
                        Some(l) => sasl::text(&l),
                        None => return Ok(cancelled()),
                    },
                };
                let user = match user {
                    Ok(u) => u,
                    Err(e) => return Ok(refused(e)),
                };
                let pass = match self.read_auth_line("UGFzc3dvcmQ6").await? {
                    Some(l) => sasl::text(&l),
                    None => return Ok(cancelled()),
                };
                match pass {
                    Ok(p) => (user, p),
                    Err(e) => return Ok(refused(e)),
                }
            }
            _ => return Ok(r(504, "5.5.4", "Unrecognized authentication mechanism")),
        };
        let authed = self.core.authenticate(&user, &pass, self.peer.ip()).await;
        crate::logins::record("smtp", self.peer, &user, &authed);
        match authed {
            Ok(account) => match self
                .limits
                .account_in_cluster(&self.core, account.id, "smtp")
                .await
            {
                Some(guard) => {
                    self.auth = Some((account, guard));
                    Ok(r(235, "2.7.0", "Authentication successful"))
                }
                None => Ok(r(
                    421,
                    "4.7.0",
                    format!(
                        "Too many connections for this account (limit {}), try again later",
                        self.limits.per_account
                    ),
                )),
            },
            Err(AuthError::Throttled { retry_after }) => Ok(r(
                454,
                "4.7.0",
                format!("Too many failed logins, try again in {retry_after} seconds"),
            )),
            Err(AuthError::Core(_)) => Ok(r(454, "4.7.0", "Temporary authentication failure")),
            Err(AuthError::InvalidCredentials) => {
                Ok(r(535, "5.7.8", "Authentication credentials invalid"))
            }
        }
    }

    /// RFC 5321 §4.1.1.2; the phase table has let it through.
    async fn mail(&mut self, from: String, params: super::proto::Params) -> Reply {
        if self.auth_required() && self.auth.is_none() {
            return r(530, "5.7.0", "Authentication required");
        }
        let mut require_tls = false;
        let mut hold_until = None;
        let now = self.core.clock().now();
        for (k, v) in &params {
            match (k.as_str(), v.as_deref()) {
                // RFC 4865 §3: at most one of HOLDFOR and HOLDUNTIL, from
                // an authenticated user, no further than we offered.
                ("HOLDFOR" | "HOLDUNTIL", Some(_)) if self.auth.is_none() => {
                    return r(530, "5.7.0", "FUTURERELEASE needs authentication");
                }
                ("HOLDFOR" | "HOLDUNTIL", Some(_)) if hold_until.is_some() => {
                    return r(501, "5.5.4", "Only one of HOLDFOR and HOLDUNTIL");
                }
                ("HOLDFOR", Some(n)) => match n.parse::<i64>() {
                    Ok(n) if (0..=self.settings.max_future_release).contains(&n) => {
                        hold_until = Some(now + n)
                    }
                    Ok(_) => {
                        return r(
                            501,
                            "5.5.4",
                            "HOLDFOR is longer than this server holds mail",
                        );
                    }
                    Err(_) => return r(501, "5.5.4", "Malformed HOLDFOR"),
                },
                ("HOLDUNTIL", Some(t)) => match mail_parser::DateTime::parse_rfc3339(t) {
                    Some(t) if t.to_timestamp() <= now + self.settings.max_future_release => {
                        hold_until = Some(t.to_timestamp().max(now))
                    }
                    Some(_) => {
                        return r(
                            501,
                            "5.5.4",
                            "HOLDUNTIL is later than this server holds mail",
                        );
                    }
                    None => return r(501, "5.5.4", "Malformed HOLDUNTIL"),
                },
                // RFC 8689 §4.1: only in a TLS session.
                ("REQUIRETLS", None) if self.secure => require_tls = true,
                ("REQUIRETLS", None) => {
                    return r(530, "5.7.10", "REQUIRETLS needs a TLS session");
                }
                ("SIZE", Some(n)) => match n.parse::<u64>() {
                    Ok(n) if n > self.settings.max_message_size as u64 => {
                        return too_big_reply(self.settings.max_message_size);
                    }
                    Ok(_) => {}
                    Err(_) => return r(501, "5.5.4", "Malformed SIZE"),
                },
                ("BODY", Some(b))
                    if b.eq_ignore_ascii_case("8BITMIME") || b.eq_ignore_ascii_case("7BIT") => {}
                ("SMTPUTF8", None) => {}
                _ => return r(555, "5.5.4", format!("Unsupported parameter {k}")),
            }
        }
        let from = if from.is_empty() {
            String::new()
        } else {
            match Address::parse(&from) {
                Ok(a) => a.to_string(),
                Err(e) => return r(553, "5.1.7", format!("Bad sender address: {e}")),
            }
        };
        if let Some((account, _)) = &self.auth {
            match self.core.may_send_as(account, &from).await {
                Ok(true) => {}
                Ok(false) => return r(553, "5.7.1", format!("Sender <{from}> is not yours")),
                Err(_) => return unavailable(),
            }
        }
        self.txn = Some(Transaction {
            env: Envelope {
                require_tls,
                mail_from: from,
                ..Default::default()
            },
            recipients: Vec::new(),
            chunks: None,
            too_big: false,
            hold_until,
        });
        r(250, "2.1.0", "Sender OK")
    }

    async fn rcpt(&mut self, to: &str) -> Reply {
        let authenticated = self.auth.is_some();
        let max = self.settings.max_recipients;
        // RFC 5321 §4.1.1.3; the phase table has let it through.
        let Some(txn) = self.txn.as_mut() else {
            return r(503, "5.5.1", "Send MAIL first");
        };
        if txn.recipients.len() >= max {
            return r(452, "4.5.3", format!("Too many recipients (limit {max})"));
        }
        let route = match self.core.route(to).await {
            Ok(route) => route,
            Err(_) => return unavailable(),
        };
        match &route {
            Route::Account(_) | Route::Alias { .. } | Route::Catchall { .. } => {
                txn.env.add_local_route(to, &route);
            }
            Route::Remote(addr) if authenticated => txn.env.remote.push(addr.clone()),
            Route::Remote(_) => {
                tracing::info!(peer = %self.peer, from = %txn.env.mail_from, rcpt = %to, result = "554 5.7.1", "smtp relay refused");
                return r(554, "5.7.1", "Relay access denied");
            }
            Route::Rejected(Rejection::RelaySyntax) => {
                return r(
                    554,
                    "5.7.1",
                    "Relay access denied: relay syntax is not accepted",
                );
            }
            Route::Rejected(Rejection::Malformed(m)) => {
                return r(501, "5.1.3", format!("Bad recipient address: {m}"));
            }
            Route::Rejected(Rejection::Disabled) => return r(550, "5.2.1", "Mailbox disabled"),
            // The domain admin's own words (RFC 5321 §4.2: text is free-form;
            // the core keeps it to one line of printable ASCII).
            Route::Rejected(Rejection::Policy(text)) => {
                tracing::info!(peer = %self.peer, from = %txn.env.mail_from, rcpt = %to, result = "550 5.1.1", "smtp recipient refused by catchall policy");
                return r(550, "5.1.1", text.clone());
            }
            Route::Rejected(Rejection::NoSuchUser) => {
                tracing::info!(peer = %self.peer, from = %txn.env.mail_from, rcpt = %to, result = "550 5.1.1", "smtp recipient refused");
                return r(550, "5.1.1", "No such user here");
            }
        }
        txn.recipients.push(to.to_owned());
        r(250, "2.1.5", "Recipient OK")
    }

    /// RFC 3030 §2: read exactly `size` octets; on LAST, accept the whole.
    async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<(Option<Reply>, Flow)> {
        use tokio::io::AsyncReadExt;
        let max = self.settings.max_message_size;
        // A chunk that alone passes the limit can never be accepted, and
        // reading (up to 2^64) octets to discard them would hold the
        // session for the whole data timeout: refuse and close.
        if size > max as u64 {
            self.txn = None;
            return Ok((Some(too_big_reply(max)), Flow::Close));
        }
        let deadline = Instant::now() + self.settings.data_timeout;
        // The chunk must be consumed even when refused, or its bytes would
        // be read as commands.
        let mut chunk = Vec::new();
        let mut left = size;
        let mut keep = true;
        {
            let txn = self.txn.as_ref();
            let have = txn.and_then(|t| t.chunks.as_ref()).map_or(0, Vec::len) as u64;
            // `size` is the client's number: a sum that overflows is as
            // much too big as one past the limit.
            let total = have.checked_add(size);
            if txn.is_none_or(|t| t.too_big || total.is_none_or(|n| n > max as u64)) {
                keep = false;
            }
        }
        let io = self.io()?;
        let mut buf = [0u8; 8192];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match timeout_at(deadline, io.read(&mut buf[..want])).await {
                Err(_) => {
                    return Ok((
                        Some(r(421, "4.4.2", "Timeout during BDAT, closing")),
                        Flow::Close,
                    ));
                }
                Ok(n) => n?,
            };
            if n == 0 {
                return Ok((None, Flow::Close));
            }
            if keep {
                chunk.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        let Some(txn) = self.txn.as_mut() else {
            return Ok((Some(r(503, "5.5.1", "Send MAIL first")), Flow::Continue));
        };
        if txn.recipients.is_empty() {
            self.txn = None;
            return Ok((Some(r(554, "5.5.1", "No valid recipients")), Flow::Continue));
        }
        if !keep {
            txn.too_big = true;
            txn.chunks = Some(Vec::new());
        } else {
            txn.chunks
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&chunk);
        }
        if !last {
            return Ok((
                Some(r(250, "2.0.0", format!("{size} octets received"))),
                Flow::Continue,
            ));
        }
        let Some(mut txn) = self.txn.take() else {
            return Ok((None, Flow::Close));
        };
        if txn.too_big {
            return Ok((Some(too_big_reply(max)), Flow::Continue));
        }
        let body = txn.chunks.take().unwrap_or_default();
        Ok((Some(self.accept(txn, body).await), Flow::Continue))
    }

    /// RFC 5321 §4.1.1.4; the phase table has let it through.
    async fn data(&mut self) -> std::io::Result<(Option<Reply>, Flow)> {
        self.send(&r(354, "", "End data with <CR><LF>.<CR><LF>"))
            .await?;
        let max = self.settings.max_message_size;
        let deadline = Instant::now() + self.settings.data_timeout;
        let mut body: Vec<u8> = Vec::new();
        let mut too_big = false;
        // Only a line that follows CRLF can end the data or be unstuffed.
        let mut at_line_start = true;
        loop {
            let line = match timeout_at(deadline, self.read_line(max + 3)).await {
                Err(_) => {
                    self.txn = None;
                    return Ok((
                        Some(r(421, "4.4.2", "Timeout during DATA, closing")),
                        Flow::Close,
                    ));
                }
                Ok(l) => l?,
            };
            let bytes = match line {
                Line::Eof => return Ok((None, Flow::Close)),
                Line::TooLong(crlf) => {
                    too_big = true;
                    at_line_start = crlf;
                    continue;
                }
                Line::Ok(b) => b,
            };
            let crlf = bytes.ends_with(b"\r\n");
            if at_line_start && crlf {
                let content = &bytes[..bytes.len() - 2];
                match unstuff(content) {
                    None => break,
                    Some(c) => {
                        if !too_big {
                            body.extend_from_slice(c);
                            body.extend_from_slice(b"\r\n");
                        }
                    }
                }
            } else if !too_big {
                body.extend_from_slice(&bytes);
            }
            at_line_start = crlf;
            if body.len() > max {
                too_big = true;
                body = Vec::new();
            }
        }
        let Some(txn) = self.txn.take() else {
            return Ok((Some(r(503, "5.5.1", "Send MAIL first")), Flow::Continue));
        };
        if too_big {
            return Ok((Some(too_big_reply(max)), Flow::Continue));
        }
        Ok((Some(self.accept(txn, body).await), Flow::Continue))
    }

    async fn accept(&mut self, mut txn: Transaction, mut body: Vec<u8>) -> Reply {
        if let Some((account, _)) = &self.auth {
            match self
                .core
                .complete_submission(account, &body, &self.settings.hostname)
                .await
            {
                Ok(b) => body = b,
                Err(SubmissionError::NotYourAddress(a)) => {
                    return r(553, "5.7.1", format!("From: <{a}> is not yours"));
                }
                Err(SubmissionError::NoFrom) => {
                    return r(550, "5.6.0", "The message has no From: header");
                }
                // RFC 5322 §3.6: one From: and one Sender: at most.
                Err(SubmissionError::DuplicateHeader(h)) => {
                    return r(
                        550,
                        "5.6.0",
                        format!("The message has more than one {h}: header"),
                    );
                }
                Err(SubmissionError::Core(_)) => return unavailable(),
            }
        } else if let Some(checks) = &self.settings.sender_checks {
            // Mail from another server: who sent it (SPF, DKIM, DMARC).
            use super::inbound_auth::Verdict;
            let helo = self.helo.clone().unwrap_or_default();
            match checks
                .check(&self.core, &body, self.peer.ip(), &helo, &txn.env.mail_from)
                .await
            {
                Verdict::Deliver { header } => body = checks.stamp(&header, &body),
                Verdict::Junk { header } => {
                    body = checks.stamp(&header, &body);
                    for c in &mut txn.env.local {
                        c.junk = true;
                    }
                }
                Verdict::Reject(why) => {
                    metrics::counter!("tern_messages_total", "event" => "refused_auth")
                        .increment(1);
                    tracing::info!(peer = %self.peer, from = %txn.env.mail_from, result = "550", reason = %why, "smtp transaction");
                    return r(550, "5.7.1", why);
                }
                Verdict::TempFail(why) => return r(451, "4.7.0", why),
            }
        }
        let proto = match (self.esmtp, self.secure, self.auth.is_some()) {
            (_, true, true) => "ESMTPSA",
            (_, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, false, false) => "ESMTP",
            (false, _, _) => "SMTP",
        };
        let received = format!(
            "Received: from {} ({})\r\n\tby {} (Tern) with {proto};\r\n\t{}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.peer.ip(),
            self.settings.hostname,
            rfc5322_date(self.core.clock().now()),
        );
        let mut raw = Vec::with_capacity(received.len() + body.len());
        raw.extend_from_slice(received.as_bytes());
        raw.extend_from_slice(&body);
        let size = raw.len();
        let env = &txn.env;
        let user = self
            .auth
            .as_ref()
            .map(|(a, _)| a.address.clone())
            .unwrap_or_default();
        // FUTURERELEASE: kept on the server (committed before the 250),
        // and sent by the scheduler when the time comes.
        if let (Some(until), Some((account, _))) = (txn.hold_until, &self.auth) {
            let held = mailcore::scheduled::NewScheduled {
                kind: mailcore::scheduled::ScheduleKind::Smtp,
                mail_from: env.mail_from.clone(),
                recipients: txn.recipients.clone(),
                received,
                raw: body,
                draft: None,
                send_at: until,
                require_tls: env.require_tls,
            };
            return match self.core.schedule(account.id, held).await {
                Ok(id) => {
                    self.errors = 0;
                    let when = mail_parser::DateTime::from_timestamp(until).to_rfc3339();
                    tracing::info!(peer = %self.peer, user, from = %txn.env.mail_from, rcpt = ?txn.recipients, size, held = id, until = %when, result = "250", "smtp transaction");
                    r(250, "2.0.0", format!("OK: held until {when} (id {id})"))
                }
                Err(e) => {
                    tracing::warn!(peer = %self.peer, error = %e, result = "451", "smtp transaction");
                    unavailable()
                }
            };
        }
        // RFC 5321 §4.1.1.4: the 250 is the promise; `accept` returns only
        // once the message is on disk (the spool's group commit).
        match self.core.accept(env, &raw).await {
            Ok(accepted) => {
                // A delivered message wipes the slate (the error limit is
                // per stretch of trouble, not per connection).
                self.errors = 0;
                metrics::counter!("tern_messages_total", "event" => "accepted").increment(1);
                tracing::info!(
                    peer = %self.peer, user, from = %txn.env.mail_from, rcpt = ?txn.recipients, size,
                    id = %accepted, result = "250", "smtp transaction"
                );
                r(250, "2.0.0", format!("OK: queued as {accepted}"))
            }
            Err(AcceptError::OverQuota) => r(552, "5.2.2", "Mailbox full: quota exceeded"),
            // RFC 3463 §3.5: X.3.1, mail system full.
            Err(AcceptError::SpoolFull(why)) => {
                tracing::warn!(peer = %self.peer, error = %why, result = "452", "smtp transaction");
                r(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Err(AcceptError::Unavailable(e)) => {
                tracing::warn!(peer = %self.peer, error = %e, result = "451", "smtp transaction");
                unavailable()
            }
        }
    }
}
