//! One POP3 session: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939 §3).
//!
//! Invariants:
//! - The maildrop is INBOX, seen as it was at login; message numbers never
//!   change during a session.
//! - Deletions are only marks until QUIT; a dropped connection deletes
//!   nothing (RFC 1939 §6).
//! - One POP3 session per maildrop at a time (`[IN-USE]`, RFC 3206 §4), on
//!   whichever node: the lock is a lease in the database.
//! - UIDLs are `UIDVALIDITY.UID`, so they survive reconnects and anything
//!   IMAP does to other messages.
//! - After STLS, whatever the client pipelined is discarded.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailcore::messages::FlagOp;
use mailcore::{AccountId, AccountRef, AuthError, Core, Flags, OwnedMailbox, SortOrder, Uid};
use tokio::io::BufReader;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::proto::{Command, multiline, parse_command, top};
use crate::limits::{AccountGuard, Limits};
use crate::listen::Conn;
use crate::netio::{BoxIo, Line, live, read_line, write_flush};

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_line: usize,
    /// RFC 1939 §3: at least 10 minutes.
    pub autologout: Duration,
    pub tls_handshake_timeout: Duration,
}

/// The maildrop locks of this node's sessions: leases in the database
/// (`maildrop_locks`), so that a session on any node excludes one on any
/// other (RFC 1939 §8), and a node that dies lets go when its lease ends.
pub struct Locks {
    lease: Duration,
    next: AtomicU64,
}

impl Locks {
    pub fn new(lease: Duration) -> Self {
        Locks {
            lease: lease.max(Duration::from_secs(1)),
            next: AtomicU64::new(0),
        }
    }

    fn lease_secs(&self) -> i64 {
        i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX)
    }

    /// `Ok(None)` while another session holds the maildrop.
    async fn take(
        self: &Arc<Self>,
        core: &Core,
        account: AccountId,
    ) -> mailcore::CoreResult<Option<MaildropLock>> {
        let holder = format!(
            "{}#{}",
            core.node_id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        if !core
            .lock_maildrop(account, &holder, self.lease_secs())
            .await?
        {
            return Ok(None);
        }
        // Renewed at a third of the lease, so one slow renewal is no loss.
        let renewing = {
            let (core, holder, lease) = (core.clone(), holder.clone(), self.lease_secs());
            let every = self.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match core.renew_maildrop(account, &holder, lease).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!(error = %e, "could not renew a maildrop lock"),
                    }
                }
            })
        };
        Ok(Some(MaildropLock {
            core: core.clone(),
            account,
            holder,
            lease: self.lease_secs(),
            renewing,
        }))
    }
}

pub struct MaildropLock {
    core: Core,
    account: AccountId,
    holder: String,
    lease: i64,
    renewing: tokio::task::JoinHandle<()>,
}

impl MaildropLock {
    /// True while this session still holds the maildrop: a session whose
    /// lease ran out (the database was away longer than the lease) must
    /// not delete what another session may now be reading.
    async fn still_held(&self) -> bool {
        matches!(
            self.core
                .renew_maildrop(self.account, &self.holder, self.lease)
                .await,
            Ok(true)
        )
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.renewing.abort();
        let (core, account, holder) = (self.core.clone(), self.account, self.holder.clone());
        // Let go now rather than at the lease's end; if this fails the
        // lease still runs out.
        tokio::spawn(async move {
            let _ = core.unlock_maildrop(account, &holder).await;
        });
    }
}

struct Entry {
    uid: Uid,
    size: i64,
}

struct Maildrop {
    account: AccountRef,
    /// The INBOX, opened through the account's mail at login.
    inbox: OwnedMailbox,
    uidvalidity: i64,
    entries: Vec<Entry>,
    deleted: BTreeSet<usize>,
    login_epoch: i64,
    lock: MaildropLock,
    _slot: AccountGuard,
}

pub struct Session {
    core: Core,
    settings: Arc<Settings>,
    limits: Arc<Limits>,
    locks: Arc<Locks>,
    peer: SocketAddr,
    io: Option<BufReader<BoxIo>>,
    tls: Option<TlsAcceptor>,
    secure: bool,
    user: Option<String>,
    drop: Option<Maildrop>,
}

const TEMP: &str = "-ERR [SYS/TEMP] Mail store temporarily unavailable, try again later";

/// "1 message", "2 messages" (the text after `+OK` is for people).
fn messages(n: usize) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

impl Session {
    pub fn new(
        core: Core,
        settings: Arc<Settings>,
        limits: Arc<Limits>,
        locks: Arc<Locks>,
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
            locks,
            peer,
            io: Some(BufReader::new(io)),
            tls,
            secure,
            user: None,
            drop: None,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_flush(live(&mut self.io)?, bytes).await
    }

    async fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.write(format!("{text}\r\n").as_bytes()).await
    }

    pub async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(peer = %self.peer, error = %e, "pop3 connection ended");
        }
        crate::netio::close(&mut self.io).await;
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        self.line("+OK Tern POP3 ready").await?;
        loop {
            let io = live(&mut self.io)?;
            let line = match timeout(
                self.settings.autologout,
                read_line(io, self.settings.max_line),
            )
            .await
            {
                Err(_) => {
                    // Autologout: no UPDATE state, so nothing is deleted.
                    let _ = self.line("-ERR Autologout: idle for too long").await;
                    return Ok(());
                }
                Ok(l) => l?,
            };
            let bytes = match line {
                Line::Eof => return Ok(()),
                Line::TooLong(_) => {
                    self.line("-ERR Line too long").await?;
                    continue;
                }
                Line::Ok(b) => b,
            };
            let cmd = match parse_command(&bytes) {
                Ok(c) => c,
                Err(why) => {
                    self.line(&format!("-ERR {why}")).await?;
                    continue;
                }
            };
            let ended = match &self.drop {
                Some(d) => self
                    .core
                    .login_epoch(d.account.id)
                    .await
                    .is_some_and(|e| e != d.login_epoch),
                None => false,
            };
            if ended {
                // RFC 1939 §6: a session that ends without QUIT does not
                // enter UPDATE, so nothing marked is removed.
                self.line("-ERR [AUTH] Signed out: this account's password changed, it was disabled, or it signed out everywhere")
                    .await?;
                return Ok(());
            }
            let (name, started) = (cmd.name(), std::time::Instant::now());
            let go_on = if self.drop.is_some() {
                self.transaction(cmd).await?
            } else {
                self.authorization(cmd).await?
            };
            crate::listen::observe_command("pop3", name, started);
            if !go_on {
                return Ok(());
            }
        }
    }

    fn capa(&self) -> Vec<u8> {
        let mut caps = vec![
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "EXPIRE NEVER",
            "LOGIN-DELAY 0",
        ];
        if self.drop.is_none() {
            if self.secure {
                caps.push("USER");
                caps.push("SASL PLAIN");
            } else if self.tls.is_some() {
                caps.push("STLS");
            }
        }
        caps.push("IMPLEMENTATION Tern");
        let mut out = b"+OK Capability list follows\r\n".to_vec();
        out.extend_from_slice(&multiline(caps.join("\r\n").as_bytes()));
        out
    }

    /// AUTHORIZATION state. Returns false to close.
    async fn authorization(&mut self, cmd: Command) -> std::io::Result<bool> {
        match cmd {
            Command::Capa => {
                let c = self.capa();
                self.write(&c).await?;
            }
            Command::Quit => {
                self.line("+OK Bye").await?;
                return Ok(false);
            }
            Command::Noop => self.line("+OK").await?,
            Command::Stls => {
                if self.secure {
                    self.line("-ERR TLS already active").await?;
                } else if let Some(acceptor) = self.tls.clone() {
                    self.line("+OK Begin TLS negotiation").await?;
                    let limit = self.settings.tls_handshake_timeout;
                    if !crate::netio::upgrade_tls(&mut self.io, &acceptor, limit, self.peer).await?
                    {
                        return Ok(false);
                    }
                    self.secure = true;
                    self.user = None;
                } else {
                    self.line("-ERR TLS not available").await?;
                }
            }
            Command::User(_) | Command::Pass(_) | Command::Auth(..) if !self.secure => {
                self.line("-ERR [AUTH] Plaintext authentication is not allowed before STLS")
                    .await?;
            }
            Command::User(u) => {
                self.user = Some(u);
                self.line("+OK Send PASS").await?;
            }
            Command::Pass(p) => match self.user.take() {
                None => self.line("-ERR USER first").await?,
                Some(u) => self.login(&u, &p).await?,
            },
            Command::Auth(None, _) => {
                self.write(b"+OK\r\nPLAIN\r\n.\r\n").await?;
            }
            Command::Auth(Some(m), initial) if m == "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => {
                        self.line("+ ").await?;
                        let io = live(&mut self.io)?;
                        match timeout(
                            self.settings.autologout,
                            read_line(io, self.settings.max_line),
                        )
                        .await
                        {
                            Ok(Ok(Line::Ok(b))) => String::from_utf8_lossy(&b).trim().to_owned(),
                            _ => return Ok(false),
                        }
                    }
                };
                match crate::sasl::plain(&resp) {
                    Ok(c) => self.login(&c.user, &c.password).await?,
                    Err(crate::sasl::SaslError::Cancelled) => {
                        self.line("-ERR Authentication cancelled").await?;
                    }
                    Err(_) => self.line("-ERR [AUTH] Invalid credentials").await?,
                }
            }
            Command::Auth(Some(_), _) => self.line("-ERR Unsupported SASL mechanism").await?,
            _ => self.line("-ERR Not allowed before login").await?,
        }
        Ok(true)
    }

    async fn login(&mut self, user: &str, pass: &str) -> std::io::Result<()> {
        let authed = self
            .core
            .authenticate_session(user, pass, self.peer.ip())
            .await;
        crate::logins::record("pop3", self.peer, user, &authed);
        let (account, login_epoch) = match authed {
            Ok(a) => a,
            Err(AuthError::Throttled { retry_after }) => {
                return self
                    .line(&format!(
                        "-ERR [LOGIN-DELAY] Too many failed logins, retry in {retry_after} seconds"
                    ))
                    .await;
            }
            Err(AuthError::Core(_)) => return self.line(TEMP).await,
            Err(AuthError::InvalidCredentials) => {
                return self.line("-ERR [AUTH] Invalid credentials").await;
            }
        };
        let Some(slot) = self
            .limits
            .account_in_cluster(&self.core, account.id, "pop3")
            .await
        else {
            return self
                .line(&format!(
                    "-ERR [SYS/TEMP] Too many connections for this account (limit {})",
                    self.limits.per_account
                ))
                .await;
        };
        let lock = match self.locks.take(&self.core, account.id).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                return self
                    .line("-ERR [IN-USE] Maildrop is locked by another POP3 session")
                    .await;
            }
            Err(_) => return self.line(TEMP).await,
        };
        let inbox = match self.core.mail(account.id).mailbox("INBOX").await {
            Ok(Some(m)) => m,
            _ => return self.line(TEMP).await,
        };
        let entries = match inbox.list(0, u32::MAX as u64, SortOrder::UidAsc).await {
            Ok((msgs, _)) => msgs
                .into_iter()
                .map(|m| Entry {
                    uid: m.uid,
                    size: m.size,
                })
                .collect::<Vec<_>>(),
            Err(_) => return self.line(TEMP).await,
        };
        tracing::info!(peer = %self.peer, account = %account.address, messages = entries.len(), "pop3 login");
        let n = entries.len();
        self.drop = Some(Maildrop {
            account,
            uidvalidity: inbox.head().uidvalidity,
            inbox,
            entries,
            deleted: BTreeSet::new(),
            login_epoch,
            lock,
            _slot: slot,
        });
        self.line(&format!("+OK Maildrop ready, {}", messages(n)))
            .await
    }

    /// The entry for message number `n`, unless absent or marked deleted.
    fn entry(&self, n: u32) -> Option<(usize, &Entry)> {
        let d = self.drop.as_ref()?;
        let i = (n as usize).checked_sub(1)?;
        if d.deleted.contains(&i) {
            return None;
        }
        d.entries.get(i).map(|e| (i, e))
    }

    /// TRANSACTION state. Returns false to close.
    async fn transaction(&mut self, cmd: Command) -> std::io::Result<bool> {
        let Some(d) = self.drop.as_ref() else {
            return Ok(false);
        };
        let live = || {
            d.entries
                .iter()
                .enumerate()
                .filter(|(i, _)| !d.deleted.contains(i))
        };
        match cmd {
            Command::Stat => {
                let (n, size) = live().fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size));
                self.line(&format!("+OK {n} {size}")).await?;
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(None));
                let body: Vec<String> = live()
                    .map(|(i, e)| {
                        if uidl {
                            format!("{} {}.{}", i + 1, d.uidvalidity, e.uid)
                        } else {
                            format!("{} {}", i + 1, e.size)
                        }
                    })
                    .collect();
                // RFC 1939 §5 LIST: "+OK 2 messages (320 octets)".
                let status = if uidl {
                    "+OK\r\n".to_owned()
                } else {
                    let (n, size) = live().fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size));
                    format!("+OK {} ({size} octets)\r\n", messages(n))
                };
                let mut out = status.into_bytes();
                out.extend_from_slice(&multiline(body.join("\r\n").as_bytes()));
                self.write(&out).await?;
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let uidvalidity = d.uidvalidity;
                let text = match self.entry(n) {
                    Some((_, e)) if uidl => format!("+OK {n} {uidvalidity}.{}", e.uid),
                    Some((_, e)) => format!("+OK {n} {}", e.size),
                    None => "-ERR No such message".to_owned(),
                };
                self.line(&text).await?;
            }
            Command::Retr(n) | Command::Top(n, _) => {
                let Some((_, e)) = self.entry(n) else {
                    self.line("-ERR No such message").await?;
                    return Ok(true);
                };
                let (uid, inbox) = (e.uid, d.inbox.clone());
                let raw = match inbox.raw(uid).await {
                    Ok(r) => r,
                    Err(e) if e.is_temporary() => {
                        self.line(TEMP).await?;
                        return Ok(true);
                    }
                    Err(_) => {
                        self.line("-ERR Message was removed by another client")
                            .await?;
                        return Ok(true);
                    }
                };
                let (head, body) = match cmd {
                    Command::Top(_, lines) => ("+OK Top follows".to_owned(), top(&raw, lines)),
                    _ => (format!("+OK {} octets", raw.len()), &raw[..]),
                };
                let mut out = format!("{head}\r\n").into_bytes();
                out.extend_from_slice(&multiline(body));
                self.write(&out).await?;
                if matches!(cmd, Command::Retr(_)) {
                    // As Dovecot does: a message a POP3 client downloaded
                    // reads as seen in IMAP and the webmail.
                    let _ = inbox.set_flags(&[uid], FlagOp::Add, Flags::SEEN).await;
                }
            }
            Command::Dele(n) => {
                let text = match self.entry(n) {
                    Some((i, _)) => {
                        if let Some(d) = self.drop.as_mut() {
                            d.deleted.insert(i);
                        }
                        format!("+OK Message {n} marked for deletion")
                    }
                    None => "-ERR No such message".to_owned(),
                };
                self.line(&text).await?;
            }
            Command::Rset => {
                if let Some(d) = self.drop.as_mut() {
                    d.deleted.clear();
                }
                self.line("+OK").await?;
            }
            Command::Noop => self.line("+OK").await?,
            Command::Capa => {
                let c = self.capa();
                self.write(&c).await?;
            }
            Command::Quit => {
                let reply = self.update().await;
                self.line(&reply).await?;
                return Ok(false);
            }
            _ => self.line("-ERR Not allowed after login").await?,
        }
        Ok(true)
    }

    /// UPDATE state (RFC 1939 §6): remove the marked messages.
    async fn update(&mut self) -> String {
        let Some(d) = self.drop.take() else {
            return "+OK Bye".into();
        };
        let uids: Vec<Uid> = d.deleted.iter().map(|&i| d.entries[i].uid).collect();
        if uids.is_empty() {
            return "+OK Bye".into();
        }
        if !d.lock.still_held().await {
            return "-ERR [IN-USE] The maildrop lock was lost; nothing was deleted".into();
        }
        // RFC 1939 §6: the UPDATE state removes what was marked.
        match d.inbox.destroy(&uids).await {
            Ok(gone) => format!("+OK Bye, {} deleted", messages(gone.len())),
            Err(_) => "-ERR [SYS/TEMP] Some deleted messages were not removed".into(),
        }
    }
}
