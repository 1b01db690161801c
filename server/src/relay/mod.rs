//! Outbound SMTP: the [`Relay`] the queue runner hands each transaction to.
//!
//! It finds the destination's hosts (a configured smarthost, a static route,
//! or the MX records in preference order with the RFC 5321 §5.1 fallback to
//! the domain's address records), then speaks SMTP through lettre's
//! low-level `AsyncSmtpConnection`, one command at a time, so that every
//! recipient gets its own reply: one `550` fails only that recipient.
//!
//! Implementation notes:
//! - STARTTLS is opportunistic (RFC 3207) and unauthenticated, as for
//!   almost all MX traffic; a domain listed in `relay.require_tls` is never
//!   sent in clear text.
//! - A refused or failed connection, a TLS failure or a `421` greeting
//!   moves on to the next host and marks the attempt as pushback, which
//!   halves the destination's concurrency in the runner.
//! - Every reply that is not 2xx or 5xx, and every failure without a reply,
//!   becomes a 4xx: the runner defers, never bounces, on those.
//! - The message reaches lettre in wire form (only CRLF line endings), which
//!   makes lettre's dot-stuffing exact; see `mailcore::queue::wire_form`.

pub mod dns;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use mailcore::queue::{Relay, RelayReport, RelayRequest, Reply};

use self::dns::{Dns, MxAnswer};
use crate::config::RelayConfig;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmarthostTls {
    /// STARTTLS, required.
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
    /// Plain text (a relay on the same host).
    None,
}

#[derive(Clone, Debug)]
struct Smarthost {
    addr: String,
    tls: SmarthostTls,
    credentials: Option<Credentials>,
}

pub struct LettreRelay {
    dns: Arc<dyn Dns>,
    hello: ClientId,
    smarthost: Option<Smarthost>,
    routes: HashMap<String, String>,
    require_tls: HashSet<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    data_timeout: Duration,
}

/// One host to try: its name (for TLS and the log) and an address.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    addr: SocketAddr,
}

/// Why a host produced no session; the report carries the last one.
struct HostFailure {
    reply: Reply,
    pushback: bool,
}

/// Parses `a.test=host:port, b.test=host:port`.
pub fn parse_routes(s: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (d, t) = item
            .split_once('=')
            .ok_or_else(|| format!("relay.routes: `{item}` is not domain=host:port"))?;
        let t = t.trim();
        if t.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!("relay.routes: `{t}` is not host:port"));
        }
        out.insert(d.trim().to_ascii_lowercase(), t.to_owned());
    }
    Ok(out)
}

impl LettreRelay {
    pub fn new(cfg: &RelayConfig, hostname: &str, dns: Arc<dyn Dns>) -> Result<Self, String> {
        let smarthost = if cfg.smarthost.trim().is_empty() {
            None
        } else {
            let tls = match cfg.smarthost_tls.as_str() {
                "starttls" | "" => SmarthostTls::StartTls,
                "tls" => SmarthostTls::Tls,
                "none" => SmarthostTls::None,
                o => {
                    return Err(format!(
                        "relay.smarthost_tls: `{o}` is not starttls, tls or none"
                    ));
                }
            };
            let credentials = (!cfg.smarthost_username.is_empty()).then(|| {
                Credentials::new(
                    cfg.smarthost_username.clone(),
                    cfg.smarthost_password.clone(),
                )
            });
            Some(Smarthost {
                addr: cfg.smarthost.trim().to_owned(),
                tls,
                credentials,
            })
        };
        Ok(LettreRelay {
            dns,
            hello: ClientId::Domain(hostname.to_owned()),
            smarthost,
            routes: parse_routes(&cfg.routes)?,
            require_tls: cfg
                .require_tls
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(cfg.command_timeout_secs.max(1)),
            data_timeout: Duration::from_secs(cfg.data_timeout_secs.max(1)),
        })
    }

    /// The hosts to try, in order, each with whether its name goes through
    /// the injected DNS (MX hosts) or is a configured `host:port`; or the
    /// reply every recipient gets when there is no host at all.
    async fn targets(&self, domain: &str) -> Result<Vec<(String, bool)>, HostFailure> {
        if let Some(s) = &self.smarthost {
            return Ok(vec![(s.addr.clone(), false)]);
        }
        if let Some(r) = self.routes.get(domain) {
            return Ok(vec![(r.clone(), false)]);
        }
        match self.dns.mx(domain).await {
            Ok(MxAnswer::Hosts(h)) => Ok(h.into_iter().map(|(_, n)| (n, true)).collect()),
            // RFC 5321 §5.1: no MX, so the domain is its own mail host.
            Ok(MxAnswer::NoMx) => Ok(vec![(domain.to_owned(), true)]),
            // RFC 7505 §4.2.
            Ok(MxAnswer::NullMx) => Err(HostFailure {
                reply: Reply::new(
                    556,
                    format!("5.1.10 {domain} does not accept mail (null MX)"),
                ),
                pushback: false,
            }),
            Ok(MxAnswer::NoDomain) => Err(HostFailure {
                reply: Reply::new(550, format!("5.1.2 domain {domain} does not exist")),
                pushback: false,
            }),
            Err(e) => Err(HostFailure {
                reply: Reply::new(
                    451,
                    format!("4.4.3 DNS lookup for {domain} failed: {}", e.message),
                ),
                pushback: false,
            }),
        }
    }

    /// Addresses for a target: `host:port` strings (smarthost, routes) go
    /// through the system resolver; MX names through the injected DNS.
    async fn resolve(&self, name: &str, via_dns: bool) -> Result<Vec<Target>, Reply> {
        if via_dns {
            let addrs = self.dns.addrs(name).await.map_err(|e| {
                Reply::new(451, format!("4.4.3 cannot resolve {name}: {}", e.message))
            })?;
            return Ok(addrs
                .into_iter()
                .map(|addr| Target {
                    host: name.to_owned(),
                    addr,
                })
                .collect());
        }
        let host = name.rsplit_once(':').map(|(h, _)| h).unwrap_or(name);
        let addrs = tokio::net::lookup_host(name)
            .await
            .map_err(|e| Reply::new(451, format!("4.4.3 cannot resolve {name}: {e}")))?;
        Ok(addrs
            .map(|addr| Target {
                host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                addr,
            })
            .collect())
    }
}

fn lettre_reply(e: &lettre::transport::smtp::Error, fallback: &str) -> Reply {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match e.status() {
        Some(code) => Reply::new(u16::from(code), text),
        None if e.is_timeout() => Reply::new(451, format!("4.4.2 {fallback}: timed out")),
        None if e.is_tls() => Reply::new(451, format!("4.7.5 {fallback}: TLS failed: {e}")),
        None => Reply::new(451, format!("4.4.2 {fallback}: {e}")),
    }
}

enum Session {
    /// The host took the transaction (whatever it replied per recipient).
    Done { replies: Vec<Reply>, tls: bool },
    /// Try the next host.
    NextHost(HostFailure),
}

impl LettreRelay {
    async fn session(&self, t: &Target, req: &RelayRequest<'_>) -> Session {
        let fail =
            |reply: Reply, pushback: bool| Session::NextHost(HostFailure { reply, pushback });
        let implicit = match &self.smarthost {
            Some(s) if s.tls == SmarthostTls::Tls => Some(self.tls_params(&t.host)),
            _ => None,
        };
        let implicit = match implicit.transpose() {
            Ok(p) => p,
            Err(r) => return fail(r, false),
        };
        let tls_implicit = implicit.is_some();
        let connect = AsyncSmtpConnection::connect_tokio1(
            t.addr,
            Some(self.connect_timeout),
            &self.hello,
            implicit,
            None,
        );
        let mut conn = match tokio::time::timeout(
            self.connect_timeout + self.command_timeout,
            connect,
        )
        .await
        {
            Ok(Ok(c)) => c,
            // A 421 greeting, a refused connection, a timeout, a failed TLS
            // handshake: all say "not now, not here".
            Ok(Err(e)) => {
                return fail(
                    lettre_reply(&e, &format!("connecting to {} ({})", t.host, t.addr)),
                    true,
                );
            }
            Err(_) => {
                return fail(
                    Reply::new(
                        451,
                        format!("4.4.2 connecting to {} ({}): timed out", t.host, t.addr),
                    ),
                    true,
                );
            }
        };

        let must_tls = match &self.smarthost {
            Some(s) => s.tls == SmarthostTls::StartTls,
            None => self.require_tls.contains(&req.domain.to_ascii_lowercase()),
        };
        if !tls_implicit && conn.can_starttls() {
            let params = match self.tls_params(&t.host) {
                Ok(p) => p,
                Err(r) => return fail(r, false),
            };
            match tokio::time::timeout(self.command_timeout, conn.starttls(params, &self.hello))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    conn.abort().await;
                    return fail(lettre_reply(&e, &format!("STARTTLS with {}", t.host)), true);
                }
                Err(_) => {
                    conn.abort().await;
                    return fail(
                        Reply::new(451, format!("4.4.2 STARTTLS with {}: timed out", t.host)),
                        true,
                    );
                }
            }
        } else if !tls_implicit && must_tls {
            conn.abort().await;
            return fail(
                Reply::new(
                    451,
                    format!(
                        "4.7.10 TLS is required for {} but {} does not offer STARTTLS",
                        req.domain, t.host
                    ),
                ),
                false,
            );
        }
        let tls = conn.is_encrypted();

        if let Some(creds) = self.smarthost.as_ref().and_then(|s| s.credentials.as_ref()) {
            let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], creds);
            match tokio::time::timeout(self.command_timeout, auth).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    conn.abort().await;
                    // A refused login is our configuration's fault, not the
                    // recipients': defer so a fixed config delivers.
                    let mut r = lettre_reply(&e, "smarthost AUTH");
                    if r.is_permanent() {
                        r = Reply::new(451, format!("4.7.8 smarthost refused our login: {r}"));
                    }
                    return fail(r, false);
                }
                Err(_) => {
                    conn.abort().await;
                    return fail(Reply::new(451, "4.4.2 smarthost AUTH timed out"), false);
                }
            }
        }

        let replies = self.transaction(&mut conn, req).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        Session::Done { replies, tls }
    }

    fn tls_params(&self, host: &str) -> Result<TlsParameters, Reply> {
        // Opportunistic TLS between MTAs does not authenticate the peer
        // (RFC 7435): MX certificates rarely match, and refusing them would
        // push the mail to plain text, which is worse.
        TlsParameters::builder(host.to_owned())
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true)
            .build_rustls()
            .map_err(|e| Reply::new(451, format!("4.7.5 TLS setup: {e}")))
    }

    /// MAIL, one RCPT per recipient, DATA. Returns one reply per recipient.
    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        req: &RelayRequest<'_>,
    ) -> Vec<Reply> {
        let n = req.rcpts.len();
        let all = |r: Reply| vec![r; n];
        let sender = if req.mail_from.is_empty() {
            None
        } else {
            match req.mail_from.parse::<lettre::Address>() {
                Ok(a) => Some(a),
                Err(e) => return all(Reply::new(550, format!("5.1.7 bad sender address: {e}"))),
            }
        };
        let mut params = Vec::new();
        // RFC 6152: say when the body has 8-bit bytes, if the server takes them.
        if req.message.iter().any(|b| *b >= 0x80)
            && conn.server_info().supports_feature(Extension::EightBitMime)
        {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        params.push(MailParameter::Size(req.message.len()));
        match tokio::time::timeout(
            self.command_timeout,
            conn.command(Mail::new(sender, params)),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return all(lettre_reply(&e, "MAIL FROM")),
            Err(_) => return all(Reply::new(451, "4.4.2 MAIL FROM timed out")),
        }
        let mut replies: Vec<Option<Reply>> = vec![None; n];
        let mut accepted = Vec::new();
        for (i, rcpt) in req.rcpts.iter().enumerate() {
            let addr = match rcpt.parse::<lettre::Address>() {
                Ok(a) => a,
                Err(e) => {
                    replies[i] = Some(Reply::new(550, format!("5.1.3 bad recipient address: {e}")));
                    continue;
                }
            };
            match tokio::time::timeout(self.command_timeout, conn.command(Rcpt::new(addr, vec![])))
                .await
            {
                Ok(Ok(_)) => accepted.push(i),
                Ok(Err(e)) if e.status().is_some() => {
                    replies[i] = Some(lettre_reply(&e, "RCPT TO"))
                }
                Ok(Err(e)) => {
                    let r = lettre_reply(&e, "RCPT TO");
                    return replies
                        .into_iter()
                        .map(|o| o.unwrap_or_else(|| r.clone()))
                        .collect();
                }
                Err(_) => {
                    let r = Reply::new(451, "4.4.2 RCPT TO timed out");
                    return replies
                        .into_iter()
                        .map(|o| o.unwrap_or_else(|| r.clone()))
                        .collect();
                }
            }
        }
        if !accepted.is_empty() {
            let end = match tokio::time::timeout(self.command_timeout, conn.command(Data)).await {
                Ok(Ok(_)) => {
                    // lettre adds "\r\n.\r\n" itself; the wire form already
                    // ends in CRLF, so drop that one to send the bytes as
                    // they were accepted.
                    let body = req.message.strip_suffix(b"\r\n").unwrap_or(req.message);
                    match tokio::time::timeout(self.data_timeout, conn.message(body)).await {
                        Ok(Ok(resp)) => Reply::new(
                            u16::from(resp.code()),
                            resp.message().collect::<Vec<_>>().join(" "),
                        ),
                        Ok(Err(e)) if e.status().is_some() => lettre_reply(&e, "end of data"),
                        Ok(Err(e)) => {
                            Reply::new(451, format!("4.4.2 connection lost during DATA: {e}"))
                        }
                        Err(_) => Reply::new(451, "4.4.2 no reply to the end of data in time"),
                    }
                }
                Ok(Err(e)) => lettre_reply(&e, "DATA"),
                Err(_) => Reply::new(451, "4.4.2 DATA timed out"),
            };
            for i in accepted {
                replies[i] = Some(end.clone());
            }
        }
        replies
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Reply::new(451, "4.3.0 no reply")))
            .collect()
    }
}

#[async_trait::async_trait]
impl Relay for LettreRelay {
    async fn send(&self, req: &RelayRequest<'_>) -> RelayReport {
        let n = req.rcpts.len();
        let mut report = RelayReport::default();
        let names = match self.targets(req.domain).await {
            Ok(t) => t,
            Err(f) => {
                report.replies = vec![f.reply; n];
                report.unreachable = !report.replies[0].is_permanent();
                return report;
            }
        };
        let mut last = Reply::new(
            451,
            format!("4.4.1 no host of {} could be reached", req.domain),
        );
        let mut pushback = false;
        for (name, via_dns) in names {
            let targets = match self.resolve(&name, via_dns).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => {
                    last = Reply::new(451, format!("4.4.3 {name} has no address"));
                    continue;
                }
                Err(r) => {
                    last = r;
                    continue;
                }
            };
            for t in targets {
                match self.session(&t, req).await {
                    Session::Done { replies, tls } => {
                        report.remote_host = Some(t.host.clone());
                        report.remote_ip = Some(t.addr.ip().to_string());
                        report.tls = tls;
                        report.replies = replies;
                        report.pushback = pushback || report.replies.iter().any(|r| r.code == 421);
                        return report;
                    }
                    Session::NextHost(f) => {
                        tracing::info!(host = %t.host, addr = %t.addr, reply = %f.reply, "MX host failed; trying the next");
                        pushback |= f.pushback;
                        report.remote_host = Some(t.host.clone());
                        report.remote_ip = Some(t.addr.ip().to_string());
                        last = f.reply;
                    }
                }
            }
        }
        // No host took the transaction: every recipient is deferred (a 5xx
        // before MAIL would be odd, and is not a verdict on the recipients).
        if last.is_permanent() || last.is_success() {
            last = Reply::new(451, format!("4.4.1 {last}"));
        }
        report.replies = vec![last; n];
        report.pushback = pushback;
        report.unreachable = true;
        report
    }
}
