//! MTA-STS (RFC 8461) for outbound delivery: a destination that publishes
//! `_mta-sts.D TXT "v=STSv1; id=.."` and a policy at
//! `https://mta-sts.D/.well-known/mta-sts.txt` says which MX hosts are
//! genuine and that they must be reached over TLS with a valid
//! certificate.
//!
//! - The policy is fetched over HTTPS behind [`PolicyFetcher`] (tests serve
//!   it locally), and cached in memory and in a [`PolicyStore`] (the
//!   database), until its `max_age` runs out. A cached policy is kept when
//!   the TXT record disappears or the fetch fails: that is what stops an
//!   attacker who strips them from downgrading the destination (§5.1).
//! - The TXT record is looked up again at most every [`TXT_RECHECK`]; a new
//!   id fetches the policy again (§5.1).
//! - `enforce`: only MX hosts matching a `mx:` pattern are tried, and each
//!   must pass a WebPKI check for its name; otherwise the mail is deferred,
//!   never sent in clear and never bounced at once (§5). `testing`: the
//!   same checks are made and logged, and delivery goes on as usual.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dns::{Dns, TxtAnswer};

/// RFC 8461 §3.2: `max_age` is at most 31557600 (a year).
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// How long a TXT answer (or its absence) is trusted before asking again.
pub const TXT_RECHECK: Duration = Duration::from_secs(300);
/// A policy larger than this is refused (policies are a few lines;
/// RFC 8461 §3.3 lets the sender cap it; 64 KiB is what mox allows).
const MAX_POLICY_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx:` patterns, lower case, without a trailing dot.
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// RFC 8461 §3.2: `key: value` lines (CRLF or LF); version, mode and
/// max_age are required, and at least one mx unless mode is none.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("policy line `{line}` is not key: value"))?;
        let v = v.trim();
        match k.trim() {
            "version" => version = Some(v.to_owned()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    o => return Err(format!("unknown policy mode `{o}`")),
                })
            }
            "max_age" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("max_age `{v}` is not a number"))?;
                max_age = Some(n.min(MAX_AGE_LIMIT));
            }
            "mx" => mx.push(v.trim_end_matches('.').to_ascii_lowercase()),
            // §3.2: unknown keys are ignored.
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("policy has no `version: STSv1`".into());
    }
    let mode = mode.ok_or("policy has no mode")?;
    let max_age = max_age.ok_or("policy has no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("policy names no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// RFC 8461 §3.1: the id of the one `v=STSv1` record, or None when there
/// is none or more than one (both read as "no policy published").
pub fn txt_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.trim_start().starts_with("v=STSv1"))
        .collect();
    let [one] = sts.as_slice() else {
        return None;
    };
    one.split(';').find_map(|f| {
        let (k, v) = f.trim().split_once('=')?;
        let v = v.trim();
        (k.trim() == "id"
            && !v.is_empty()
            && v.len() <= 32
            && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| v.to_owned())
    })
}

/// RFC 8461 §4.1: an MX host matches `mail.example.com` exactly, or
/// `*.example.com` with exactly one label in place of the star.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => host == pattern,
    }
}

impl Policy {
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// Fetches a domain's policy text (RFC 8461 §3.3).
#[async_trait::async_trait]
pub trait PolicyFetcher: Send + Sync + 'static {
    async fn fetch(&self, domain: &str) -> Result<String, String>;
}

/// Where fetched policies are kept across restarts (the database).
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// (policy id, policy text, expiry as Unix seconds).
    async fn load(&self, domain: &str) -> Option<(String, String, i64)>;
    async fn save(&self, domain: &str, id: &str, text: &str, expires_at: i64);
}

/// HTTPS GET over rustls, checked against the MTA-STS trust anchors for
/// the name `mta-sts.D`; no redirects, `200` only, `text/plain`, at most
/// 64 KiB (§3.3).
pub struct HttpsFetcher {
    pub roots: Arc<rustls::RootCertStore>,
    pub resolver: hickory_resolver::TokioResolver,
    /// 443; the tests point it at a web listener on another port.
    pub port: u16,
}

#[async_trait::async_trait]
impl PolicyFetcher for HttpsFetcher {
    async fn fetch(&self, domain: &str) -> Result<String, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get(domain))
            .await
            .map_err(|_| "policy fetch timed out".to_owned())?
    }
}

impl HttpsFetcher {
    async fn get(&self, domain: &str) -> Result<String, String> {
        let host = format!("mta-sts.{domain}");
        let ips = self
            .resolver
            .lookup_ip(format!("{host}."))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let ip = ips.iter().next().ok_or(format!("{host} has no address"))?;
        let tcp = tokio::net::TcpStream::connect((ip, self.port))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(self.roots.clone())
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let req = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tern\r\n\
             Accept: text/plain\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                // A server that closes without close_notify still sent
                // its whole response when the body length says so.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.to_string()),
            };
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_POLICY_BYTES + 16 * 1024 {
                return Err("policy response too large".into());
            }
        }
        parse_http(&buf)
    }
}

/// The body of an HTTP/1.1 response, if it is a `200` `text/plain`
/// (with Content-Length, chunked, or to the end).
pub fn parse_http(resp: &[u8]) -> Result<String, String> {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    let head = std::str::from_utf8(&resp[..split]).map_err(|_| "header is not UTF-8")?;
    let body = &resp[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        // §3.3: redirects are not followed.
        return Err(format!("policy fetch answered `{status}`"));
    }
    let (mut ctype, mut len, mut chunked) = (String::new(), None, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-type" => ctype = v.to_ascii_lowercase(),
            "content-length" => len = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    if !ctype.starts_with("text/plain") {
        return Err(format!("policy is served as `{ctype}`, not text/plain"));
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = len {
        body.get(..n).ok_or("policy body cut short")?.to_vec()
    } else {
        body.to_vec()
    };
    if body.len() > MAX_POLICY_BYTES {
        return Err("policy too large".into());
    }
    String::from_utf8(body).map_err(|_| "policy is not UTF-8".into())
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = b.get(..size).ok_or("chunk cut short")?;
        out.extend_from_slice(data);
        if out.len() > MAX_POLICY_BYTES {
            return Err("policy too large".into());
        }
        b = b.get(size + 2..).ok_or("chunk cut short")?;
    }
}

struct Cached {
    id: String,
    policy: Policy,
    expires_at: i64,
    /// When the TXT record was last looked at.
    checked: Instant,
}

/// The policies known to this node, in front of the store.
pub struct Sts {
    fetcher: Arc<dyn PolicyFetcher>,
    store: Arc<dyn PolicyStore>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Domains found without a policy, and when: most destinations have
    /// none, and they are not asked about (TXT, database) again until
    /// [`TXT_RECHECK`] has passed.
    absent: Mutex<HashMap<String, Instant>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Sts {
    pub fn new(fetcher: Arc<dyn PolicyFetcher>, store: Arc<dyn PolicyStore>) -> Sts {
        Sts {
            fetcher,
            store,
            cache: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, domain: &str) -> Option<(String, Policy, i64, Instant)> {
        let c = self.cache.lock().ok()?;
        c.get(domain)
            .map(|c| (c.id.clone(), c.policy.clone(), c.expires_at, c.checked))
    }

    fn remember(&self, domain: &str, id: String, policy: Policy, expires_at: i64) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(
                domain.to_owned(),
                Cached {
                    id,
                    policy,
                    expires_at,
                    checked: Instant::now(),
                },
            );
        }
    }

    /// The policy in force for `domain`, or None (deliver as usual). Mode
    /// `none` comes back as None too.
    pub async fn policy(&self, dns: &dyn Dns, domain: &str) -> Option<Policy> {
        let domain = domain.to_ascii_lowercase();
        let t = now();
        let recently_absent = self
            .absent
            .lock()
            .ok()
            .and_then(|a| a.get(&domain).map(|at| at.elapsed() < TXT_RECHECK))
            .unwrap_or(false);
        if recently_absent {
            return None;
        }
        let mut known = self.cached(&domain);
        if let Some((_, p, exp, checked)) = &known
            && *exp > t
            && checked.elapsed() < TXT_RECHECK
        {
            return (p.mode != Mode::None).then(|| p.clone());
        }
        if known.is_none()
            && let Some((id, text, exp)) = self.store.load(&domain).await
            && let Ok(p) = parse_policy(&text)
        {
            known = Some((id, p, exp, Instant::now() - TXT_RECHECK));
        }
        let known = known.filter(|k| k.2 > t);
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(TxtAnswer::Records(r)) => txt_id(&r),
            Ok(TxtAnswer::None) => None,
            Err(e) => {
                tracing::info!(%domain, error = %e.message, "MTA-STS TXT lookup failed; using the cached policy if any");
                None
            }
        };
        let chosen = match (id, known) {
            (Some(id), Some(k)) if k.0 == id => Some((id, k.1, k.2)),
            (Some(id), known) => match self.fetch(&domain).await {
                Ok((text, p)) => {
                    let exp = t.saturating_add(p.max_age as i64);
                    self.store.save(&domain, &id, &text, exp).await;
                    Some((id, p, exp))
                }
                Err(e) => {
                    tracing::warn!(%domain, error = %e, "MTA-STS policy fetch failed; using the cached policy if any");
                    known.map(|k| (k.0, k.1, k.2))
                }
            },
            // No TXT now: a cached, unexpired policy still holds (§5.1).
            (None, known) => known.map(|k| (k.0, k.1, k.2)),
        };
        let Some((id, p, exp)) = chosen else {
            if let Ok(mut a) = self.absent.lock() {
                // Forgotten now and then, so the map stays the size of the
                // recent destinations.
                if a.len() > 100_000 {
                    a.retain(|_, at| at.elapsed() < TXT_RECHECK);
                }
                a.insert(domain, Instant::now());
            }
            return None;
        };
        if let Ok(mut a) = self.absent.lock() {
            a.remove(&domain);
        }
        self.remember(&domain, id, p.clone(), exp);
        (p.mode != Mode::None).then_some(p)
    }

    async fn fetch(&self, domain: &str) -> Result<(String, Policy), String> {
        let text = self.fetcher.fetch(domain).await?;
        let p = parse_policy(&text)?;
        Ok((text, p))
    }
}

/// The database, shared by every node.
pub struct DbStore(pub mailcore::Core);

#[async_trait::async_trait]
impl PolicyStore for DbStore {
    async fn load(&self, domain: &str) -> Option<(String, String, i64)> {
        match self.0.mta_sts_policy(domain).await {
            Ok(p) => p.map(|p| (p.policy_id, p.policy, p.expires_at)),
            Err(e) => {
                tracing::warn!(%domain, error = %e, "reading the cached MTA-STS policy failed");
                None
            }
        }
    }

    async fn save(&self, domain: &str, id: &str, text: &str, expires_at: i64) {
        if let Err(e) = self
            .0
            .save_mta_sts_policy(domain, id, text, expires_at)
            .await
        {
            tracing::warn!(%domain, error = %e, "keeping the MTA-STS policy failed");
        }
    }
}

/// A store that keeps nothing across restarts (tests, and a relay built
/// without a database).
pub struct NoStore;

#[async_trait::async_trait]
impl PolicyStore for NoStore {
    async fn load(&self, _: &str) -> Option<(String, String, i64)> {
        None
    }
    async fn save(&self, _: &str, _: &str, _: &str, _: i64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_rfc_8461_says() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
             max_age: 604800\r\nfuture: x\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("a.example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.example.com"));
        assert!(parse_policy("version: STSv1\nmode: testing\nmax_age: 5\n").is_err());
        assert!(parse_policy("mode: enforce\nmx: a\nmax_age: 5\n").is_err());
        assert!(parse_policy("version: STSv1\nmode: strict\nmx: a\nmax_age: 5\n").is_err());
        assert_eq!(
            parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n")
                .unwrap()
                .max_age,
            MAX_AGE_LIMIT
        );
        let r = mailcore::dns_records::mta_sts_policy("mx.a.test", "testing", 86400);
        assert_eq!(
            parse_policy(&r).unwrap(),
            Policy {
                mode: Mode::Testing,
                mx: vec!["mx.a.test".into()],
                max_age: 86400
            }
        );
    }

    #[test]
    fn the_txt_record_gives_one_id() {
        assert_eq!(
            txt_id(&["v=STSv1; id=20261206a;".into()]),
            Some("20261206a".into())
        );
        assert_eq!(
            txt_id(&["v=spf1 -all".into(), "v=STSv1;id=x1".into()]),
            Some("x1".into())
        );
        assert_eq!(
            txt_id(&["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
            None
        );
        assert_eq!(txt_id(&["v=STSv1; id=bad-id".into()]), None);
        assert_eq!(txt_id(&[]), None);
    }

    #[test]
    fn http_bodies() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_http(ok).unwrap(), "hello");
        let ch = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(parse_http(ch).unwrap(), "hello");
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://x/\r\n\r\n";
        assert!(parse_http(redirect).unwrap_err().contains("301"));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>";
        assert!(parse_http(html).unwrap_err().contains("text/html"));
    }
}
