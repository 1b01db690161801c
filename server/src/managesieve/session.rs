//! One ManageSieve session (RFC 5804): NOT AUTHENTICATED -> AUTHENTICATED,
//! with STARTTLS before and UNAUTHENTICATE back. What each state accepts
//! is [`allowed`]; the scripts themselves live in the core
//! (`mailcore::rules`), the same ones the webmail's Rules page edits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailcore::{AccountRef, AuthError, Core, CoreError};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::proto::{Code, Command, LineEnd, Token, literal, parse, quoted, reply, tokenize};
use crate::limits::{AccountGuard, Limits};
use crate::listen::Conn;
use crate::netio::{BoxIo, Line, live, read_line, write_flush};

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_line: usize,
    pub idle: Duration,
    pub tls_handshake_timeout: Duration,
}

/// The most a literal may carry: a script at its largest, and a little.
const MAX_LITERAL: usize = mailcore::rules::eval::MAX_SCRIPT_BYTES + 1024;
/// A larger literal is not even read: the connection ends.
const MAX_DISCARD: usize = 1024 * 1024;

enum State {
    NotAuthenticated,
    Authenticated {
        account: AccountRef,
        epoch: i64,
        _slot: AccountGuard,
    },
}

/// What each state accepts (RFC 5804 §2): one table, so a command cannot
/// reach a handler its state does not allow.
fn allowed(authenticated: bool, cmd: &Command) -> bool {
    match cmd {
        Command::Capability | Command::Logout | Command::Noop(_) => true,
        Command::StartTls | Command::Authenticate(..) => !authenticated,
        Command::Unauthenticate
        | Command::HaveSpace(..)
        | Command::PutScript(..)
        | Command::CheckScript(_)
        | Command::ListScripts
        | Command::SetActive(_)
        | Command::GetScript(_)
        | Command::DeleteScript(_)
        | Command::RenameScript(..) => authenticated,
    }
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
}

/// What reading one command gave.
enum Read {
    Tokens(Vec<Token>),
    Bad(&'static str),
    /// The client left, went idle, or sent what cannot be skipped.
    End,
}

impl Session {
    pub fn new(core: Core, settings: Arc<Settings>, limits: Arc<Limits>, conn: Conn) -> Session {
        Session {
            core,
            settings,
            limits,
            peer: conn.peer,
            io: Some(BufReader::new(conn.io)),
            tls: conn.starttls,
            secure: conn.secure,
            state: State::NotAuthenticated,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_flush(live(&mut self.io)?, bytes).await
    }

    pub async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(peer = %self.peer, error = %e, "managesieve connection ended");
        }
        crate::netio::close(&mut self.io).await;
    }

    fn capabilities(&self) -> Vec<u8> {
        let mut o = Vec::new();
        let mut line = |k: &str, v: &str| {
            o.extend_from_slice(&quoted(k));
            o.push(b' ');
            o.extend_from_slice(&quoted(v));
            o.extend_from_slice(b"\r\n");
        };
        line("IMPLEMENTATION", "Tern");
        // PLAIN only over TLS (RFC 5804 §2.1: no plaintext mechanism
        // without it); before TLS the list is empty.
        line("SASL", if self.secure { "PLAIN" } else { "" });
        line("SIEVE", &mailcore::rules::eval::CAPABILITIES.join(" "));
        line("MAXREDIRECTS", "4");
        line("VERSION", "1.0");
        if !self.secure && self.tls.is_some() {
            o.extend_from_slice(b"\"STARTTLS\"\r\n");
        }
        o.extend_from_slice(&reply("OK", Code::None, "Tern ManageSieve ready"));
        o
    }

    /// One command's tokens, its literals read in.
    async fn read_command(&mut self) -> std::io::Result<Read> {
        let mut tokens = Vec::new();
        loop {
            let max = self.settings.max_line;
            let io = live(&mut self.io)?;
            let line = match timeout(self.settings.idle, read_line(io, max)).await {
                Err(_) => {
                    self.write(&reply("BYE", Code::None, "Idle for too long"))
                        .await?;
                    return Ok(Read::End);
                }
                Ok(l) => l?,
            };
            let bytes = match line {
                Line::Eof => return Ok(Read::End),
                Line::TooLong(_) => return Ok(Read::Bad("line too long")),
                Line::Ok(b) => b,
            };
            match tokenize(&bytes, &mut tokens) {
                Err(why) => return Ok(Read::Bad(why)),
                Ok(LineEnd::Done) => return Ok(Read::Tokens(tokens)),
                Ok(LineEnd::Literal(n)) if n > MAX_DISCARD => {
                    self.write(&reply("BYE", Code::QuotaMaxSize, "Literal too large"))
                        .await?;
                    return Ok(Read::End);
                }
                Ok(LineEnd::Literal(n)) => {
                    let mut buf = vec![0u8; n];
                    let io = live(&mut self.io)?;
                    match timeout(self.settings.idle, io.read_exact(&mut buf)).await {
                        Ok(Ok(_)) => {}
                        _ => return Ok(Read::End),
                    }
                    if n > MAX_LITERAL {
                        // Read to stay in step, then refused.
                        tokens.push(Token::Str(Vec::new()));
                        return Ok(Read::Bad("QUOTA/MAXSIZE"));
                    }
                    tokens.push(Token::Str(buf));
                }
            }
        }
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let caps = self.capabilities();
        self.write(&caps).await?;
        loop {
            let tokens = match self.read_command().await? {
                Read::End => return Ok(()),
                Read::Bad("QUOTA/MAXSIZE") => {
                    self.write(&reply("NO", Code::QuotaMaxSize, "The script is too large"))
                        .await?;
                    continue;
                }
                Read::Bad(why) => {
                    self.write(&reply("NO", Code::None, why)).await?;
                    continue;
                }
                Read::Tokens(t) => t,
            };
            if tokens.is_empty() {
                continue;
            }
            let cmd = match parse(tokens) {
                Ok(c) => c,
                Err(why) => {
                    self.write(&reply("NO", Code::None, why)).await?;
                    continue;
                }
            };
            if let State::Authenticated { account, epoch, .. } = &self.state
                && self
                    .core
                    .login_epoch(account.id)
                    .await
                    .is_some_and(|e| e != *epoch)
            {
                self.write(&reply(
                    "BYE",
                    Code::None,
                    "Signed out: the password changed, the account was disabled, or it signed out everywhere",
                ))
                .await?;
                return Ok(());
            }
            let authenticated = matches!(self.state, State::Authenticated { .. });
            if !allowed(authenticated, &cmd) {
                let why = if authenticated {
                    "Already authenticated"
                } else {
                    "Authenticate first"
                };
                self.write(&reply("NO", Code::None, why)).await?;
                continue;
            }
            if !self.command(cmd).await? {
                return Ok(());
            }
        }
    }

    /// Runs one allowed command; false to close.
    async fn command(&mut self, cmd: Command) -> std::io::Result<bool> {
        let out = match cmd {
            Command::Capability => self.capabilities(),
            Command::Noop(tag) => match tag {
                // §2.11: the tag comes back in a TAG response code.
                Some(t) => {
                    let mut o = b"OK (TAG ".to_vec();
                    o.extend_from_slice(&quoted(&t));
                    o.extend_from_slice(b") \"Done\"\r\n");
                    o
                }
                None => reply("OK", Code::None, "Done"),
            },
            Command::Logout => {
                self.write(&reply("OK", Code::None, "Bye")).await?;
                return Ok(false);
            }
            Command::StartTls => {
                let Some(acceptor) = self.tls.clone().filter(|_| !self.secure) else {
                    self.write(&reply("NO", Code::None, "TLS is not available here"))
                        .await?;
                    return Ok(true);
                };
                self.write(&reply("OK", Code::None, "Begin TLS negotiation"))
                    .await?;
                let limit = self.settings.tls_handshake_timeout;
                if !crate::netio::upgrade_tls(&mut self.io, &acceptor, limit, self.peer).await? {
                    return Ok(false);
                }
                self.secure = true;
                // §2.2: the capabilities again, now that they changed.
                self.capabilities()
            }
            Command::Authenticate(mech, initial) => return self.authenticate(mech, initial).await,
            Command::Unauthenticate => {
                self.state = State::NotAuthenticated;
                reply("OK", Code::None, "Signed out")
            }
            cmd => {
                let State::Authenticated { account, .. } = &self.state else {
                    return Ok(true);
                };
                let id = account.id;
                let core = self.core.clone();
                Self::scripts(&core, id, cmd).await
            }
        };
        self.write(&out).await?;
        Ok(true)
    }

    /// The script commands: only the core is needed (and a session's
    /// stream must not be held across the awaits).
    async fn scripts(core: &Core, id: mailcore::AccountId, cmd: Command) -> Vec<u8> {
        use mailcore::rules::{MAX_SCRIPTS, eval::MAX_SCRIPT_BYTES};
        let result: Result<Vec<u8>, CoreError> = async {
            Ok(match cmd {
                Command::ListScripts => {
                    let mut o = Vec::new();
                    for s in core.sieve_scripts(id).await? {
                        o.extend_from_slice(&quoted(&s.name));
                        if s.active {
                            o.extend_from_slice(b" ACTIVE");
                        }
                        o.extend_from_slice(b"\r\n");
                    }
                    o.extend_from_slice(&reply("OK", Code::None, "Listed"));
                    o
                }
                Command::GetScript(name) => {
                    match core
                        .sieve_scripts(id)
                        .await?
                        .into_iter()
                        .find(|s| s.name == name)
                    {
                        Some(s) => {
                            let mut o = literal(s.content.as_bytes());
                            o.extend_from_slice(b"\r\n");
                            o.extend_from_slice(&reply("OK", Code::None, "Got it"));
                            o
                        }
                        None => reply("NO", Code::NonExistent, "There is no script by that name"),
                    }
                }
                Command::HaveSpace(name, size) => {
                    let scripts = core.sieve_scripts(id).await?;
                    if size > MAX_SCRIPT_BYTES as u64 {
                        reply(
                            "NO",
                            Code::QuotaMaxSize,
                            &format!("A script may have {MAX_SCRIPT_BYTES} octets at most"),
                        )
                    } else if !scripts.iter().any(|s| s.name == name)
                        && scripts.len() >= MAX_SCRIPTS
                    {
                        reply(
                            "NO",
                            Code::QuotaMaxScripts,
                            &format!("At most {MAX_SCRIPTS} scripts"),
                        )
                    } else {
                        reply("OK", Code::None, "Putscript would succeed")
                    }
                }
                Command::CheckScript(text) | Command::PutScript(_, text)
                    if std::str::from_utf8(&text).is_err() =>
                {
                    reply("NO", Code::None, "A script is UTF-8 text")
                }
                Command::CheckScript(text) => {
                    let text = String::from_utf8_lossy(&text);
                    match core.check_sieve(&text) {
                        Ok(()) => reply("OK", Code::None, "The script is valid"),
                        Err(e) => reply("NO", Code::None, &e.to_string()),
                    }
                }
                Command::PutScript(name, text) => {
                    let text = String::from_utf8_lossy(&text);
                    match core.put_sieve_script(id, &name, &text, false).await {
                        Ok(()) => reply("OK", Code::None, "Stored"),
                        Err(CoreError::Invalid(why)) if why.starts_with("at most") => {
                            reply("NO", Code::QuotaMaxScripts, &why)
                        }
                        Err(CoreError::Invalid(why)) => reply("NO", Code::None, &why),
                        Err(e) => return Err(e),
                    }
                }
                Command::SetActive(name) => {
                    let name = (!name.is_empty()).then_some(name.as_str());
                    match core.activate_sieve_script(id, name).await {
                        Ok(()) => reply("OK", Code::None, "Active script set"),
                        Err(CoreError::NotFound(_)) => {
                            reply("NO", Code::NonExistent, "There is no script by that name")
                        }
                        Err(e) => return Err(e),
                    }
                }
                Command::DeleteScript(name) => match core.delete_sieve_script(id, &name).await {
                    Ok(()) => reply("OK", Code::None, "Deleted"),
                    Err(CoreError::NotFound(_)) => {
                        reply("NO", Code::NonExistent, "There is no script by that name")
                    }
                    Err(CoreError::Conflict(_)) => {
                        reply("NO", Code::Active, "The active script cannot be deleted")
                    }
                    Err(e) => return Err(e),
                },
                Command::RenameScript(from, to) => {
                    match core.rename_sieve_script(id, &from, &to).await {
                        Ok(()) => reply("OK", Code::None, "Renamed"),
                        Err(CoreError::NotFound(_)) => {
                            reply("NO", Code::NonExistent, "There is no script by that name")
                        }
                        Err(CoreError::Conflict(_)) => {
                            reply("NO", Code::AlreadyExists, "A script has that name already")
                        }
                        Err(CoreError::Invalid(why)) => reply("NO", Code::None, &why),
                        Err(e) => return Err(e),
                    }
                }
                _ => reply("NO", Code::None, "Not here"),
            })
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "managesieve: the store failed");
            reply(
                "NO",
                Code::TryLater,
                "The mail store is unavailable; try again later",
            )
        })
    }

    /// AUTHENTICATE PLAIN (§2.1), over TLS only.
    async fn authenticate(
        &mut self,
        mech: String,
        initial: Option<String>,
    ) -> std::io::Result<bool> {
        if !self.secure {
            self.write(&reply("NO", Code::EncryptNeeded, "Use STARTTLS first"))
                .await?;
            return Ok(true);
        }
        if mech != "PLAIN" {
            self.write(&reply("NO", Code::None, "Unsupported SASL mechanism"))
                .await?;
            return Ok(true);
        }
        let resp = match initial {
            Some(r) => r,
            None => {
                // An empty challenge; the client answers with a string.
                self.write(b"\"\"\r\n").await?;
                match self.read_command().await? {
                    Read::Tokens(mut t) if t.len() == 1 => match t.pop() {
                        Some(Token::Str(s)) => String::from_utf8_lossy(&s).into_owned(),
                        _ => String::new(),
                    },
                    Read::End => return Ok(false),
                    _ => String::new(),
                }
            }
        };
        let creds = match crate::sasl::plain(&resp) {
            Ok(c) => c,
            Err(crate::sasl::SaslError::Cancelled) => {
                self.write(&reply("NO", Code::None, "Authentication cancelled"))
                    .await?;
                return Ok(true);
            }
            Err(_) => {
                self.write(&reply("NO", Code::None, "Invalid credentials"))
                    .await?;
                return Ok(true);
            }
        };
        let authed = self
            .core
            .authenticate_session(&creds.user, &creds.password, self.peer.ip())
            .await;
        crate::logins::record("managesieve", self.peer, &creds.user, &authed);
        let out = match authed {
            Ok((account, epoch)) => {
                match self
                    .limits
                    .account_in_cluster(&self.core, account.id, "managesieve")
                    .await
                {
                    Some(slot) => {
                        self.state = State::Authenticated {
                            account,
                            epoch,
                            _slot: slot,
                        };
                        reply("OK", Code::None, "Authenticated")
                    }
                    None => reply(
                        "NO",
                        Code::TryLater,
                        "Too many connections for this account",
                    ),
                }
            }
            Err(AuthError::Throttled { retry_after }) => reply(
                "NO",
                Code::TryLater,
                &format!("Too many failed logins, retry in {retry_after} seconds"),
            ),
            Err(AuthError::Core(_)) => reply("NO", Code::TryLater, "The mail store is unavailable"),
            Err(AuthError::InvalidCredentials) => reply("NO", Code::None, "Invalid credentials"),
        };
        self.write(&out).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_table() {
        assert!(allowed(false, &Command::Capability));
        assert!(allowed(false, &Command::StartTls));
        assert!(!allowed(false, &Command::ListScripts));
        assert!(!allowed(false, &Command::PutScript("a".into(), vec![])));
        assert!(allowed(true, &Command::ListScripts));
        assert!(!allowed(true, &Command::Authenticate("PLAIN".into(), None)));
        assert!(!allowed(true, &Command::StartTls));
    }
}
