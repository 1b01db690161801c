//! Reading an outside POP3 maildrop (RFC 1939, STLS from RFC 2595): a
//! small client with the same discipline as Tern's own POP3 server —
//! replies are parsed by pure functions, every line and every multi-line
//! answer is bounded, every step has a timeout. Messages are named by
//! their UIDL, never by number, because numbers shift when another
//! client deletes.

use std::time::Duration;

use mailcore::outside::{
    MessageRef, OutsideError, OutsideLogin, OutsidePage, OutsideSummary, Security,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Outside;
use super::net::{self, Bounded, Budget, Conn};

/// RFC 1939 §3 allows 512 octets for a reply line; some servers send more.
const MAX_LINE: usize = 8 * 1024;
const SMALL: u64 = 64 * 1024;
const MAX_MESSAGE_LINE: usize = 1024 * 1024;

/// `+OK text` or `-ERR text` (RFC 1939 §3).
pub fn status(line: &str) -> Result<&str, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("+OK") {
        Ok(rest.trim_start())
    } else if let Some(rest) = line.strip_prefix("-ERR") {
        Err(rest.trim_start().to_owned())
    } else {
        Err(format!(
            "not a POP3 reply: {}",
            line.chars().take(80).collect::<String>()
        ))
    }
}

/// `n uidl` lines of a UIDL answer (RFC 1939 §7), in order.
pub fn parse_uidl(lines: &[String]) -> Vec<(u32, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let n = it.next()?.parse().ok()?;
            let id = it.next()?;
            // RFC 1939: 1 to 70 characters in 0x21..0x7E.
            (id.len() <= 70 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)))
                .then(|| (n, id.to_owned()))
        })
        .collect()
}

/// `n size` lines of a LIST answer.
pub fn parse_list(lines: &[String]) -> Vec<(u32, u32)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

pub(super) struct Pop {
    io: BufReader<Bounded>,
    budget: Budget,
    timeout: Duration,
}

fn io_error(e: std::io::Error, budget: &Budget, what: &str) -> OutsideError {
    if budget.exhausted() {
        OutsideError::TooLarge(what.to_owned())
    } else {
        OutsideError::Unreachable(format!("{what}: {e}"))
    }
}

impl Pop {
    async fn line(&mut self, what: &str, max: usize) -> Result<String, OutsideError> {
        let mut buf = Vec::new();
        let read = async {
            loop {
                let chunk = self.io.fill_buf().await?;
                if chunk.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                let (used, done) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                buf.extend_from_slice(&chunk[..used]);
                self.io.consume(used);
                if done {
                    return Ok(());
                }
                if buf.len() > max {
                    return Err(std::io::Error::other("line too long"));
                }
            }
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.to_string() == "line too long" => {
                return Err(OutsideError::TooLarge(format!("a line of {what}")));
            }
            Ok(Err(e)) => return Err(io_error(e, &self.budget, what)),
            Err(_) => return Err(OutsideError::Timeout(what.to_owned())),
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    async fn command(&mut self, cmd: &str, what: &str) -> Result<String, OutsideError> {
        self.budget.set(SMALL);
        let w = async {
            self.io.get_mut().write_all(cmd.as_bytes()).await?;
            self.io.get_mut().write_all(b"\r\n").await?;
            self.io.get_mut().flush().await
        };
        match tokio::time::timeout(self.timeout, w).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io_error(e, &self.budget, what)),
            Err(_) => return Err(OutsideError::Timeout(what.to_owned())),
        }
        let l = self.line(what, MAX_LINE).await?;
        status(&l)
            .map(str::to_owned)
            .map_err(|e| OutsideError::Protocol(format!("{what}: -ERR {e}")))
    }

    /// The lines of a multi-line answer, dot-unstuffed (RFC 1939 §3), in
    /// at most `limit` bytes.
    async fn multi(&mut self, what: &str, limit: u64) -> Result<Vec<String>, OutsideError> {
        self.budget.set(limit);
        let mut out = Vec::new();
        loop {
            // Message lines may be long (RFC 5322 allows 998 octets, and
            // real mail breaks that); the budget bounds the whole answer.
            let l = self.line(what, MAX_MESSAGE_LINE).await?;
            let l = l.trim_end_matches(['\r', '\n']);
            if l == "." {
                return Ok(out);
            }
            out.push(l.strip_prefix('.').unwrap_or(l).to_owned());
        }
    }

    /// A multi-line answer as bytes with CRLF line ends (a message).
    async fn multi_bytes(&mut self, what: &str, limit: u64) -> Result<Vec<u8>, OutsideError> {
        let lines = self.multi(what, limit).await?;
        let mut raw = Vec::new();
        for l in lines {
            raw.extend_from_slice(l.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        Ok(raw)
    }
}

impl Outside {
    pub(super) async fn pop_session(&self, login: &OutsideLogin) -> Result<Pop, OutsideError> {
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
        let cmd_timeout = Duration::from_secs(self.cfg.command_timeout_secs.max(1));
        let mut pop = match ep.security {
            Security::Tls => {
                let tls = net::tls(tcp, &ep.host, pinned, timeout).await?;
                Pop {
                    io: BufReader::new(Bounded::new(Conn::Tls(Box::new(tls)), budget.clone())),
                    budget: budget.clone(),
                    timeout: cmd_timeout,
                }
            }
            Security::StartTls => {
                let mut plain = Pop {
                    io: BufReader::new(Bounded::new(Conn::Plain(tcp), budget.clone())),
                    budget: budget.clone(),
                    timeout: cmd_timeout,
                };
                let g = plain.line("the greeting", MAX_LINE).await?;
                status(&g)
                    .map_err(|e| OutsideError::Unreachable(format!("the server said -ERR {e}")))?;
                plain.command("STLS", "STLS").await.map_err(|e| match e {
                    OutsideError::Protocol(m) => {
                        OutsideError::Protocol(format!("the server offers no STLS ({m})"))
                    }
                    other => other,
                })?;
                // Bytes buffered after +OK are dropped with the plain reader.
                let Conn::Plain(tcp) = plain.io.into_inner().conn else {
                    return Err(OutsideError::Protocol("STLS state".into()));
                };
                let tls = net::tls(tcp, &ep.host, pinned, timeout).await?;
                return self
                    .pop_login(
                        Pop {
                            io: BufReader::new(Bounded::new(
                                Conn::Tls(Box::new(tls)),
                                budget.clone(),
                            )),
                            budget,
                            timeout: cmd_timeout,
                        },
                        login,
                    )
                    .await;
            }
        };
        let g = pop.line("the greeting", MAX_LINE).await?;
        status(&g).map_err(|e| OutsideError::Unreachable(format!("the server said -ERR {e}")))?;
        self.pop_login(pop, login).await
    }

    async fn pop_login(&self, mut pop: Pop, login: &OutsideLogin) -> Result<Pop, OutsideError> {
        let user = &login.settings.username;
        if user.contains(['\r', '\n']) || login.password.contains(['\r', '\n']) {
            return Err(OutsideError::Login(
                "the user name or password holds a line break".into(),
            ));
        }
        let login_err = |e: OutsideError| match e {
            OutsideError::Protocol(m) => OutsideError::Login(m),
            other => other,
        };
        pop.command(&format!("USER {user}"), "USER")
            .await
            .map_err(login_err)?;
        pop.command(&format!("PASS {}", login.password), "PASS")
            .await
            .map_err(login_err)?;
        Ok(pop)
    }

    pub(super) async fn pop_quit(&self, mut pop: Pop) -> Result<(), OutsideError> {
        pop.command("QUIT", "QUIT").await.map(|_| ())
    }

    pub(super) async fn pop_check(&self, login: &OutsideLogin) -> Result<(), OutsideError> {
        let pop = self.pop_session(login).await?;
        self.pop_quit(pop).await
    }

    pub(super) async fn pop_uidls(
        &self,
        pop: &mut Pop,
    ) -> Result<Vec<(u32, String)>, OutsideError> {
        pop.command("UIDL", "UIDL").await?;
        let lines = pop.multi("UIDL", self.cfg.max_listing_bytes).await?;
        Ok(parse_uidl(&lines))
    }

    pub(super) async fn pop_messages(
        &self,
        login: &OutsideLogin,
        page: u32,
        page_size: u32,
    ) -> Result<OutsidePage, OutsideError> {
        let mut pop = self.pop_session(login).await?;
        let uidls = self.pop_uidls(&mut pop).await?;
        let sizes = self.pop_sizes(&mut pop).await?;
        let total = u32::try_from(uidls.len()).unwrap_or(u32::MAX);
        let page_size = page_size.clamp(1, 200) as usize;
        let skip = (page.max(1) as usize - 1).saturating_mul(page_size);
        // The maildrop lists oldest first; the page is newest first.
        let chosen: Vec<(u32, String)> = uidls
            .iter()
            .rev()
            .skip(skip)
            .take(page_size)
            .cloned()
            .collect();
        let mut rows = Vec::new();
        for (n, uidl) in chosen {
            rows.push(self.pop_top(&mut pop, n, uidl, &sizes).await?);
        }
        self.pop_quit(pop).await?;
        Ok(OutsidePage { total, rows })
    }

    /// TOP n 0: the headers only (RFC 1939 §7), as a listing row. POP3
    /// keeps no flags: every row reads as seen.
    pub(super) async fn pop_top(
        &self,
        pop: &mut Pop,
        n: u32,
        uidl: String,
        sizes: &std::collections::HashMap<u32, u32>,
    ) -> Result<OutsideSummary, OutsideError> {
        pop.command(&format!("TOP {n} 0"), "TOP").await?;
        let header = pop.multi_bytes("TOP", SMALL * 4).await?;
        Ok(super::summary_of(
            &header,
            MessageRef(uidl),
            sizes.get(&n).copied().unwrap_or(0),
            true,
            false,
        ))
    }

    /// Message sizes by number (LIST).
    pub(super) async fn pop_sizes(
        &self,
        pop: &mut Pop,
    ) -> Result<std::collections::HashMap<u32, u32>, OutsideError> {
        pop.command("LIST", "LIST").await?;
        Ok(
            parse_list(&pop.multi("LIST", self.cfg.max_listing_bytes).await?)
                .into_iter()
                .collect(),
        )
    }

    pub(super) async fn pop_retr(&self, pop: &mut Pop, n: u32) -> Result<Vec<u8>, OutsideError> {
        pop.command(&format!("RETR {n}"), "RETR").await?;
        pop.multi_bytes("RETR", self.cfg.max_message_bytes.saturating_add(SMALL))
            .await
    }

    pub(super) async fn pop_dele(&self, pop: &mut Pop, n: u32) -> Result<(), OutsideError> {
        pop.command(&format!("DELE {n}"), "DELE").await.map(|_| ())
    }

    async fn pop_number(&self, pop: &mut Pop, id: &MessageRef) -> Result<u32, OutsideError> {
        self.pop_uidls(pop)
            .await?
            .into_iter()
            .find(|(_, u)| u == id.as_str())
            .map(|(n, _)| n)
            .ok_or_else(|| OutsideError::NotFound(format!("message {}", id.as_str())))
    }

    pub(super) async fn pop_message(
        &self,
        login: &OutsideLogin,
        id: &MessageRef,
    ) -> Result<Vec<u8>, OutsideError> {
        let mut pop = self.pop_session(login).await?;
        let n = self.pop_number(&mut pop, id).await?;
        pop.command(&format!("RETR {n}"), "RETR").await?;
        let raw = pop
            .multi_bytes("RETR", self.cfg.max_message_bytes.saturating_add(SMALL))
            .await?;
        self.pop_quit(pop).await?;
        Ok(raw)
    }

    /// DELE, then QUIT: the deletion happens only in the UPDATE state
    /// (RFC 1939 §6), so a QUIT that fails is reported as a failure.
    pub(super) async fn pop_delete(
        &self,
        login: &OutsideLogin,
        id: &MessageRef,
    ) -> Result<(), OutsideError> {
        let mut pop = self.pop_session(login).await?;
        let n = self.pop_number(&mut pop, id).await?;
        pop.command(&format!("DELE {n}"), "DELE").await?;
        self.pop_quit(pop).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_listings() {
        assert_eq!(status("+OK ready\r\n"), Ok("ready"));
        assert_eq!(status("+OK\r\n"), Ok(""));
        assert_eq!(status("-ERR [AUTH] no\r\n"), Err("[AUTH] no".into()));
        assert!(status("* OK imap\r\n").is_err());
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_uidl(&l(&["1 abc", "2 d~f", "x y", "3", "4 bad\u{7f}"])),
            vec![(1, "abc".into()), (2, "d~f".into())]
        );
        assert_eq!(
            parse_list(&l(&["1 120", "2 x", "3 9"])),
            vec![(1, 120), (3, 9)]
        );
    }
}
