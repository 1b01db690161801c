//! Outbound SMTP: the [`Relay`] the queue runner hands each transaction to.
//!
//! It finds the destination's hosts (a configured smarthost, a static route,
//! or the MX records in preference order with the RFC 5321 §5.1 fallback to
//! the domain's address records), then speaks SMTP through lettre's
//! low-level `AsyncSmtpConnection`. Every recipient gets its own reply: one
//! `550` fails only that recipient.
//!
//! Implementation notes:
//! - With a server that offers PIPELINING (RFC 2920), MAIL, every RCPT and
//!   DATA go in one write and their replies are read in order, so 100
//!   recipients cost one round trip, not 100. lettre itself does not
//!   pipeline; its public `command` (one write, first reply) and
//!   `read_response` are enough to do it on its connection, which keeps
//!   its TLS, AUTH and dot-stuffing. (mail-send, Stalwart's client, was
//!   the other choice; it would have been a second SMTP client in the
//!   tree beside lettre, which the webmail and outside accounts use.)
//! - Sessions are reused (Postfix's connection cache): after a
//!   transaction that stayed in step, RSET, and the session waits up to
//!   10 s for the next message to the same host; it is checked with NOOP
//!   before reuse, and closed after 300 s however busy.
//! - STARTTLS is opportunistic (RFC 3207) and unauthenticated, as for
//!   almost all MX traffic; a domain listed in `relay.require_tls` is never
//!   sent in clear text. A destination with an MTA-STS policy in `enforce`
//!   mode (RFC 8461, [`mta_sts`]) or an MX host with DNSSEC-signed TLSA
//!   records (DANE, RFC 7672) gets TLS with a checked certificate, or
//!   nothing: the mail is deferred ([`tls_auth`]). A message carrying
//!   `TLS-Required: No` (RFC 8689 §5) skips both.
//! - A refused or failed connection, a TLS failure or a `421` greeting
//!   moves on to the next host and marks the attempt as pushback, which
//!   halves the destination's concurrency in the runner.
//! - Every reply that is not 2xx or 5xx, and every failure without a reply,
//!   becomes a 4xx: the runner defers, never bounces, on those.
//! - The message reaches lettre in wire form (only CRLF line endings), which
//!   makes lettre's dot-stuffing exact; see `mailcore::queue::wire_form`.

pub mod dns;
pub mod mta_sts;
pub mod tls_auth;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
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
    /// MTA-STS policies, when `relay.mta_sts` is on and a fetcher is set.
    sts: Option<mta_sts::Sts>,
    dane: bool,
    /// Trust anchors for MTA-STS's WebPKI check.
    roots: Arc<rustls::RootCertStore>,
    hello: ClientId,
    smarthost: Option<Smarthost>,
    routes: HashMap<String, String>,
    require_tls: HashSet<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    data_timeout: Duration,
    /// Sessions kept open between messages, by host and address.
    kept: std::sync::Mutex<HashMap<String, Vec<Kept>>>,
}

/// What the server's EHLO offered that lettre does not keep.
#[derive(Clone, Copy, Debug, Default)]
struct Offers {
    /// RFC 2920.
    pipelining: bool,
    /// RFC 8689.
    requiretls: bool,
}

/// A session kept after its transaction (RSET answered), for the next
/// message to the same host, as Postfix's connection cache does: no new
/// TCP, TLS and EHLO per message.
struct Kept {
    conn: AsyncSmtpConnection,
    tls: bool,
    offers: Offers,
    opened: Instant,
    idle_since: Instant,
}

/// A kept session idle longer than this is closed (the peer would soon
/// close it anyway; Postfix keeps them 2 s by default).
const KEEP_IDLE: Duration = Duration::from_secs(10);
/// And one older than this, however busy (Postfix: 300 s).
const KEEP_LIFETIME: Duration = Duration::from_secs(300);
/// At most this many sessions kept per host, and in all.
const KEEP_PER_HOST: usize = 8;
const KEEP_TOTAL: usize = 256;

/// A group of pipelined commands, written at once (RFC 2920 §3.1).
struct Group(String);

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One reply read, and whether the session is still in step with the
/// server (a reply came: positive or not). A timeout or a lost connection
/// leaves it out of step, and it is not used again.
fn read_reply(
    r: Result<
        Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
        tokio::time::error::Elapsed,
    >,
    what: &str,
) -> (Reply, bool) {
    match r {
        Ok(Ok(resp)) => (
            Reply::new(
                u16::from(resp.code()),
                resp.message().collect::<Vec<_>>().join(" "),
            ),
            true,
        ),
        Ok(Err(e)) => {
            let synced = e.status().is_some();
            (lettre_reply(&e, what), synced)
        }
        Err(_) => (Reply::new(451, format!("4.4.2 {what}: timed out")), false),
    }
}

/// Ends a session that is out of step. lettre's `abort` sends QUIT and
/// waits for an answer without a limit; a server that never answers must
/// not hold the worker.
async fn abort(conn: &mut AsyncSmtpConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.abort()).await;
}

/// One reply per recipient; one never answered (it cannot happen: each
/// path fills every slot) reads as a deferral, never as a success.
fn every(replies: Vec<Option<Reply>>) -> Vec<Reply> {
    replies
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Reply::new(451, "4.3.0 no reply")))
        .collect()
}

/// One host to try: its name (for TLS and the log) and an address.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    addr: SocketAddr,
}

/// What a host's certificate must pass before MAIL is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CertCheck {
    /// Opportunistic TLS (RFC 7435): any certificate, or none.
    None,
    /// MTA-STS: WebPKI for the host name. `enforce` false is the policy's
    /// testing mode: a failure is logged and delivery goes on.
    Pkix { enforce: bool },
    /// DANE: one of these secure TLSA records matches (RFC 7672 §3).
    Dane(Vec<tls_auth::Tlsa>),
}

impl CertCheck {
    fn must_tls(&self) -> bool {
        matches!(self, CertCheck::Pkix { enforce: true } | CertCheck::Dane(_))
    }

    /// For the kept-session key: a session is reused only for the same
    /// check (for DANE, the same records: a changed TLSA set checks anew).
    fn label(&self) -> String {
        match self {
            CertCheck::None => "none".into(),
            CertCheck::Pkix { enforce: true } => "sts".into(),
            CertCheck::Pkix { enforce: false } => "sts-testing".into(),
            CertCheck::Dane(records) => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                records.hash(&mut h);
                format!("dane-{:x}", h.finish())
            }
        }
    }
}

/// RFC 8689 §5: `TLS-Required: No` in the header asks the relay to
/// deliver even where a TLS policy (MTA-STS, DANE) cannot be met.
fn tls_optional(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]);
    head.split("\r\n").any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("TLS-Required") && v.trim().eq_ignore_ascii_case("no")
        })
    })
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
        let extra =
            if cfg.tls_roots_file.trim().is_empty() {
                None
            } else {
                Some(std::fs::read(cfg.tls_roots_file.trim()).map_err(|e| {
                    format!("relay.tls_roots_file {}: {e}", cfg.tls_roots_file.trim())
                })?)
            };
        Ok(LettreRelay {
            dns,
            sts: None,
            dane: cfg.dane,
            roots: Arc::new(tls_auth::roots(extra.as_deref())?),
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
            kept: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Honours destinations' MTA-STS policies, fetched with `fetcher` and
    /// kept in `store`.
    pub fn with_mta_sts(
        mut self,
        fetcher: Arc<dyn mta_sts::PolicyFetcher>,
        store: Arc<dyn mta_sts::PolicyStore>,
    ) -> Self {
        self.sts = Some(mta_sts::Sts::new(fetcher, store));
        self
    }

    /// The MTA-STS trust anchors (the policy fetch uses them too).
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        self.roots.clone()
    }

    /// The certificate check for one MX host of `domain`, or the reply
    /// that says why the host is not tried at all.
    async fn cert_check(
        &self,
        domain: &str,
        host: &str,
        policy: Option<&mta_sts::Policy>,
    ) -> Result<CertCheck, Reply> {
        if let Some(p) = policy
            && !p.allows(host)
        {
            if p.mode == mta_sts::Mode::Enforce {
                return Err(Reply::new(
                    451,
                    format!("4.7.5 MX host {host} is not named in the MTA-STS policy of {domain}"),
                ));
            }
            tracing::warn!(%domain, %host, "MTA-STS (testing): MX host is not named in the policy; delivering anyway");
        }
        if self.dane {
            match self.dns.tlsa(host).await {
                Ok(a) if a.secure => {
                    let usable: Vec<_> = a.records.into_iter().filter(tls_auth::usable).collect();
                    if !usable.is_empty() {
                        return Ok(CertCheck::Dane(usable));
                    }
                }
                Ok(_) => {}
                // RFC 7672 §2.2: a TLSA lookup that fails (not "none") may
                // hide records an attacker blocked; try the host later.
                Err(e) if e.temporary => {
                    return Err(Reply::new(
                        451,
                        format!("4.4.3 TLSA lookup for {host} failed: {}", e.message),
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(match policy {
            Some(p) => CertCheck::Pkix {
                enforce: p.mode == mta_sts::Mode::Enforce,
            },
            None => CertCheck::None,
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
    /// One transaction with one host: on a kept session when there is a
    /// healthy one, else on a new one; the session is kept afterwards when
    /// it is still in step with the server and RSET is answered.
    async fn session(&self, t: &Target, req: &RelayRequest<'_>, check: &CertCheck) -> Session {
        let must_tls = check.must_tls()
            || match &self.smarthost {
                Some(s) => s.tls == SmarthostTls::StartTls,
                None => self.require_tls.contains(&req.domain.to_ascii_lowercase()),
            };
        let key = format!("{}|{}|{}", t.host, t.addr, check.label());
        let (mut conn, tls, offers, opened) = match self.checkout(&key, must_tls).await {
            Some(k) => (k.conn, k.tls, k.offers, k.opened),
            None => match self.open(t, req, must_tls).await {
                Ok((mut conn, tls, offers)) => {
                    if let Err(f) = self.check_cert(&mut conn, t, req, check).await {
                        return Session::NextHost(f);
                    }
                    (conn, tls, offers, Instant::now())
                }
                Err(f) => return Session::NextHost(f),
            },
        };
        // RFC 8689 §4.2.1: a REQUIRETLS message goes only to a server that
        // offers REQUIRETLS (and so passes the requirement on). The session
        // stays for other mail.
        let kept = |conn| Kept {
            conn,
            tls,
            offers,
            opened,
            idle_since: Instant::now(),
        };
        if req.require_tls && !offers.requiretls {
            self.checkin(key, kept(conn));
            return Session::NextHost(HostFailure {
                reply: Reply::new(
                    550,
                    format!(
                        "5.7.30 REQUIRETLS support required: {} does not offer it",
                        t.host
                    ),
                ),
                pushback: false,
            });
        }
        let (replies, synced) = self.transaction(&mut conn, req, offers.pipelining).await;
        // RFC 5321 §4.1.1.5: RSET ends the transaction's state; an answer
        // also says the session is alive.
        let reset = synced
            && matches!(
                tokio::time::timeout(self.command_timeout, conn.command(Rset)).await,
                Ok(Ok(_))
            );
        if reset {
            self.checkin(key, kept(conn));
        } else if synced {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        } else {
            abort(&mut conn).await;
        }
        Session::Done { replies, tls }
    }

    /// Checks the certificate of a new session as `check` asks, before
    /// anything of the message is sent; a failure ends the session.
    async fn check_cert(
        &self,
        conn: &mut AsyncSmtpConnection,
        t: &Target,
        req: &RelayRequest<'_>,
        check: &CertCheck,
    ) -> Result<(), HostFailure> {
        if *check == CertCheck::None {
            return Ok(());
        }
        let chain = conn.certificate_chain().unwrap_or_default();
        let verdict = if chain.is_empty() {
            Err("no TLS".to_owned())
        } else {
            match check {
                CertCheck::Dane(records) => tls_auth::dane(&chain, records, &t.host),
                _ => tls_auth::pkix(&chain, &t.host, &self.roots),
            }
        };
        let Err(why) = verdict else {
            return Ok(());
        };
        if *check == (CertCheck::Pkix { enforce: false }) {
            tracing::warn!(domain = %req.domain, host = %t.host, reason = %why, "MTA-STS (testing): the certificate check failed; delivering anyway");
            return Ok(());
        }
        abort(conn).await;
        let what = match check {
            CertCheck::Dane(_) => "DANE",
            _ => "MTA-STS",
        };
        tracing::warn!(domain = %req.domain, host = %t.host, reason = %why, "{what}: the certificate check failed; not delivering to this host");
        Err(HostFailure {
            reply: Reply::new(
                451,
                format!(
                    "4.7.5 {what}: certificate of {} not accepted: {why}",
                    t.host
                ),
            ),
            pushback: false,
        })
    }

    /// A kept session for `key` that answers NOOP, or None. One that
    /// idled or lived too long, or is in clear text where TLS is required,
    /// is closed instead.
    async fn checkout(&self, key: &str, must_tls: bool) -> Option<Kept> {
        loop {
            let k = {
                let mut kept = self.kept.lock().ok()?;
                let list = kept.get_mut(key)?;
                let k = list.pop()?;
                if list.is_empty() {
                    kept.remove(key);
                }
                k
            };
            let mut k = k;
            if k.idle_since.elapsed() > KEEP_IDLE
                || k.opened.elapsed() > KEEP_LIFETIME
                || (must_tls && !k.tls)
            {
                let _ = tokio::time::timeout(Duration::from_secs(2), k.conn.quit()).await;
                continue;
            }
            // The server may have closed it while it idled.
            if tokio::time::timeout(self.command_timeout, k.conn.test_connected())
                .await
                .unwrap_or(false)
            {
                return Some(k);
            }
            abort(&mut k.conn).await;
        }
    }

    fn checkin(&self, key: String, k: Kept) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.retain(|_, v| {
            v.retain(|k| k.idle_since.elapsed() <= KEEP_IDLE);
            !v.is_empty()
        });
        let total: usize = kept.values().map(Vec::len).sum();
        let list = kept.entry(key).or_default();
        if list.len() < KEEP_PER_HOST && total < KEEP_TOTAL {
            list.push(k);
        }
    }

    /// A new session with `t`: connected, TLS as configured or offered,
    /// PIPELINING looked up, logged in to a smarthost.
    async fn open(
        &self,
        t: &Target,
        req: &RelayRequest<'_>,
        must_tls: bool,
    ) -> Result<(AsyncSmtpConnection, bool, Offers), HostFailure> {
        let fail = |reply: Reply, pushback: bool| Err(HostFailure { reply, pushback });
        let implicit = match &self.smarthost {
            Some(s) if s.tls == SmarthostTls::Tls => Some(self.tls_params(&t.host)),
            _ => None,
        };
        let implicit = match implicit.transpose() {
            Ok(p) => p,
            Err(r) => return fail(r, false),
        };
        let tls_implicit = implicit.is_some();
        let (addr, hello, limit) = (t.addr, &self.hello, self.connect_timeout);
        // Our own socket where we can, so that it has TCP_NODELAY: lettre
        // writes the body and the final dot in two writes, and with Nagle
        // the dot waits for the peer's delayed ACK (about 40 ms a message
        // on a reused session).
        let tcp = if implicit.is_none() {
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    Some(tcp)
                }
                Ok(Err(e)) => {
                    return fail(
                        Reply::new(451, format!("4.4.1 connecting to {} ({addr}): {e}", t.host)),
                        true,
                    );
                }
                Err(_) => {
                    return fail(
                        Reply::new(
                            451,
                            format!("4.4.2 connecting to {} ({addr}): timed out", t.host),
                        ),
                        true,
                    );
                }
            }
        } else {
            None
        };
        let connect = async move {
            match tcp {
                Some(tcp) => {
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), hello).await
                }
                None => {
                    AsyncSmtpConnection::connect_tokio1(addr, Some(limit), hello, implicit, None)
                        .await
                }
            }
        };
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
                    abort(&mut conn).await;
                    return fail(lettre_reply(&e, &format!("STARTTLS with {}", t.host)), true);
                }
                Err(_) => {
                    abort(&mut conn).await;
                    return fail(
                        Reply::new(451, format!("4.4.2 STARTTLS with {}: timed out", t.host)),
                        true,
                    );
                }
            }
        } else if !tls_implicit && must_tls {
            abort(&mut conn).await;
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
        // lettre keeps no PIPELINING or REQUIRETLS flag from EHLO, so ask
        // once more on this session (a later EHLO is allowed, RFC 5321
        // §4.1.4); only a server that offers it gets pipelined commands
        // (RFC 2920 §3.1).
        let offers = match tokio::time::timeout(
            self.command_timeout,
            conn.command(Ehlo::new(self.hello.clone())),
        )
        .await
        {
            Ok(Ok(resp)) => {
                let offered = |kw: &str| {
                    resp.message().any(|l| {
                        l.split_whitespace()
                            .next()
                            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
                    })
                };
                Offers {
                    pipelining: offered("PIPELINING"),
                    requiretls: offered("REQUIRETLS"),
                }
            }
            _ => Offers::default(),
        };

        if let Some(creds) = self.smarthost.as_ref().and_then(|s| s.credentials.as_ref()) {
            let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], creds);
            match tokio::time::timeout(self.command_timeout, auth).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    abort(&mut conn).await;
                    // A refused login is our configuration's fault, not the
                    // recipients': defer so a fixed config delivers.
                    let mut r = lettre_reply(&e, "smarthost AUTH");
                    if r.is_permanent() {
                        r = Reply::new(451, format!("4.7.8 smarthost refused our login: {r}"));
                    }
                    return fail(r, false);
                }
                Err(_) => {
                    abort(&mut conn).await;
                    return fail(Reply::new(451, "4.4.2 smarthost AUTH timed out"), false);
                }
            }
        }

        Ok((conn, tls, offers))
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

    /// MAIL, one RCPT per recipient, DATA: as one pipelined group when
    /// the server offers PIPELINING (RFC 2920), else one command at a
    /// time. Returns one reply per recipient, and whether the session is
    /// still in step with the server (every command got its reply).
    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        req: &RelayRequest<'_>,
        pipelining: bool,
    ) -> (Vec<Reply>, bool) {
        let n = req.rcpts.len();
        let sender = if req.mail_from.is_empty() {
            None
        } else {
            match req.mail_from.parse::<lettre::Address>() {
                Ok(a) => Some(a),
                Err(e) => {
                    let r = Reply::new(550, format!("5.1.7 bad sender address: {e}"));
                    return (vec![r; n], true);
                }
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
        if req.require_tls {
            params.push(MailParameter::Other {
                keyword: "REQUIRETLS".into(),
                value: None,
            });
        }
        let mail = Mail::new(sender, params);
        let mut replies: Vec<Option<Reply>> = vec![None; n];
        let mut rcpts = Vec::new();
        for (i, rcpt) in req.rcpts.iter().enumerate() {
            match rcpt.parse::<lettre::Address>() {
                Ok(a) => rcpts.push((i, Rcpt::new(a, vec![]))),
                Err(e) => {
                    replies[i] = Some(Reply::new(550, format!("5.1.3 bad recipient address: {e}")))
                }
            }
        }
        if rcpts.is_empty() {
            return (every(replies), true);
        }
        let t = self.command_timeout;
        let (accepted, data, synced) = if pipelining {
            // One write: MAIL, every RCPT, DATA; then their replies in order
            // (RFC 2920 §3.1). MAIL's reply comes back from `command`.
            let mut group = mail.to_string();
            for (_, r) in &rcpts {
                group.push_str(&r.to_string());
            }
            group.push_str(&Data.to_string());
            let (mail_reply, mut synced) = read_reply(
                tokio::time::timeout(t, conn.command(Group(group))).await,
                "MAIL FROM",
            );
            let mut accepted = Vec::new();
            for (i, _) in &rcpts {
                let r = if synced {
                    let (r, ok) = read_reply(
                        tokio::time::timeout(t, conn.read_response()).await,
                        "RCPT TO",
                    );
                    synced = ok;
                    r
                } else {
                    mail_reply.clone()
                };
                // A refused MAIL refuses the transaction, whatever RCPT said.
                let r = if mail_reply.is_success() {
                    r
                } else {
                    mail_reply.clone()
                };
                if r.is_success() {
                    accepted.push(*i);
                }
                replies[*i] = Some(r);
            }
            let data = if synced {
                let (r, ok) =
                    read_reply(tokio::time::timeout(t, conn.read_response()).await, "DATA");
                synced = ok;
                r
            } else {
                mail_reply.clone()
            };
            (accepted, data, synced)
        } else {
            let (mail_reply, synced) = read_reply(
                tokio::time::timeout(t, conn.command(mail)).await,
                "MAIL FROM",
            );
            if !mail_reply.is_success() {
                for (i, _) in &rcpts {
                    replies[*i] = Some(mail_reply.clone());
                }
                return (every(replies), synced);
            }
            let mut accepted = Vec::new();
            let mut synced = true;
            for (i, rcpt) in rcpts {
                let (r, ok) =
                    read_reply(tokio::time::timeout(t, conn.command(rcpt)).await, "RCPT TO");
                if r.is_success() {
                    accepted.push(i);
                }
                replies[i] = Some(r.clone());
                if !ok {
                    // Out of step: the rest get this reply, untried.
                    for o in replies.iter_mut().filter(|o| o.is_none()) {
                        *o = Some(r.clone());
                    }
                    synced = false;
                    break;
                }
            }
            if accepted.is_empty() || !synced {
                return (every(replies), synced);
            }
            let (data, ok) = read_reply(tokio::time::timeout(t, conn.command(Data)).await, "DATA");
            (accepted, data, ok)
        };
        if !synced {
            for i in &accepted {
                replies[*i] = Some(data.clone());
            }
            return (every(replies), false);
        }
        if data.code != 354 {
            // DATA refused: every recipient RCPT accepted gets that reply.
            for i in &accepted {
                replies[*i] = Some(data.clone());
            }
            return (every(replies), true);
        }
        if accepted.is_empty() {
            // Pipelined DATA was accepted though no recipient was: end it
            // with an empty body (RFC 2920 §3.1), and the RCPT replies
            // stand. Its answer keeps the session in step.
            let (_, ok) = read_reply(
                tokio::time::timeout(self.data_timeout, conn.message(b"")).await,
                "end of data",
            );
            return (every(replies), ok);
        }
        // lettre adds "\r\n.\r\n" itself; the wire form already ends in
        // CRLF, so drop that one to send the bytes as they were accepted.
        let body = req.message.strip_suffix(b"\r\n").unwrap_or(req.message);
        let (end, ok) = match tokio::time::timeout(self.data_timeout, conn.message(body)).await {
            Err(_) => (
                Reply::new(451, "4.4.2 no reply to the end of data in time"),
                false,
            ),
            Ok(Err(e)) if e.status().is_none() => (
                Reply::new(451, format!("4.4.2 connection lost during DATA: {e}")),
                false,
            ),
            Ok(r) => read_reply(Ok(r), "end of data"),
        };
        for i in accepted {
            replies[i] = Some(end.clone());
        }
        (every(replies), ok)
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
        // MTA-STS and DANE protect the MX path only: a smarthost or a
        // static route is the operator's own choice of host.
        // RFC 8689 §5: REQUIRETLS wins over `TLS-Required: No`.
        let optional = tls_optional(req.message) && !req.require_tls;
        let mx_path = self.smarthost.is_none() && !self.routes.contains_key(req.domain);
        let mut policy = match &self.sts {
            Some(sts) if mx_path && !optional => sts.policy(self.dns.as_ref(), req.domain).await,
            _ => None,
        };
        // RFC 8689 §4.2.1: for REQUIRETLS a policy in testing mode is
        // enforced.
        if req.require_tls
            && let Some(p) = policy.as_mut()
        {
            p.mode = mta_sts::Mode::Enforce;
        }
        // Hosts passed over only because REQUIRETLS could not be met, and
        // hosts passed over for anything else: when every host was of the
        // first kind the answer is permanent.
        let (mut requiretls_refusals, mut other_failures) = (0usize, 0usize);
        for (name, via_dns) in names {
            let check = if via_dns && !optional {
                match self.cert_check(req.domain, &name, policy.as_ref()).await {
                    Ok(c) => c,
                    Err(r) => {
                        last = r;
                        other_failures += 1;
                        continue;
                    }
                }
            } else if req.require_tls {
                // A smarthost or a static route: the operator's host, whose
                // certificate must still be valid for its name.
                CertCheck::Pkix { enforce: true }
            } else {
                CertCheck::None
            };
            if req.require_tls && check == CertCheck::None {
                last = Reply::new(
                    550,
                    format!(
                        "5.7.10 REQUIRETLS: nothing authenticates {name} (no MTA-STS policy for {}, no DNSSEC-signed TLSA record)",
                        req.domain
                    ),
                );
                requiretls_refusals += 1;
                continue;
            }
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
                match self.session(&t, req, &check).await {
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
                        if f.reply.text.starts_with("5.7.30") {
                            requiretls_refusals += 1;
                        } else {
                            other_failures += 1;
                        }
                        pushback |= f.pushback;
                        report.remote_host = Some(t.host.clone());
                        report.remote_ip = Some(t.addr.ip().to_string());
                        last = f.reply;
                    }
                }
            }
        }
        // No host took the transaction: every recipient is deferred (a 5xx
        // before MAIL would be odd, and is not a verdict on the recipients),
        // unless REQUIRETLS is what every host failed: that will not change
        // by waiting, and the sender must hear it (RFC 8689 §4.2.1).
        if req.require_tls && requiretls_refusals > 0 && other_failures == 0 {
            report.replies = vec![last; n];
            report.unreachable = false;
            return report;
        }
        if last.is_permanent() || last.is_success() {
            last = Reply::new(451, format!("4.4.1 {last}"));
        }
        report.replies = vec![last; n];
        report.pushback = pushback;
        report.unreachable = true;
        report
    }
}
