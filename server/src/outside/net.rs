//! Connections to outside servers: which addresses may be reached, a byte
//! budget on everything read, and TLS that either verifies against the
//! web's roots or matches a certificate the user trusted by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mailcore::outside::{CertProblem, OutsideError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::dns::Resolve;

/// True for addresses a user's outside account must not make the server
/// reach: loopback, private (RFC 1918, ULA), link-local (which holds the
/// cloud metadata service at 169.254.169.254), CGNAT, multicast,
/// unspecified, documentation and other reserved ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                // NAT64 (64:ff9b::/96) leads to the IPv4 address inside.
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]
                    && private_v4(Ipv4Addr::new(
                        (s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)))
                // IPv4-compatible (::a.b.c.d), long deprecated.
                || (s[0..6] == [0, 0, 0, 0, 0, 0])
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved, and 255.255.255.255
}

/// The addresses `host` may be reached at under the policy; the check is on
/// the resolved addresses, and the connection goes to one of exactly these,
/// so a name that resolves differently a second time cannot slip through.
pub async fn allowed_addrs(
    dns: &dyn Resolve,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, OutsideError> {
    let ips = match host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        Ok(ip) => vec![ip],
        Err(_) => dns
            .ips(host)
            .await
            .map_err(|e| OutsideError::Unreachable(format!("{host}: {e}")))?,
    };
    if ips.is_empty() {
        return Err(OutsideError::Unreachable(format!("{host}: no address")));
    }
    let ok: Vec<SocketAddr> = ips
        .iter()
        .filter(|ip| allow_private || !is_private(**ip))
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    if ok.is_empty() {
        return Err(OutsideError::Forbidden(host.to_owned()));
    }
    Ok(ok)
}

/// Connects to the first allowed address that answers.
pub async fn connect(
    dns: &dyn Resolve,
    host: &str,
    port: u16,
    allow_private: bool,
    timeout: Duration,
) -> Result<TcpStream, OutsideError> {
    let addrs = allowed_addrs(dns, host, port, allow_private).await?;
    let mut last = String::new();
    for a in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: no answer in {} s", timeout.as_secs()),
        }
    }
    Err(OutsideError::Unreachable(format!("{host}:{port} ({last})")))
}

/// How many more bytes a connection may read; each operation sets it.
#[derive(Clone, Debug)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    pub fn new(n: u64) -> Self {
        Budget(Arc::new(AtomicU64::new(n)))
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn exhausted(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// A plain or TLS connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A connection that fails reads past its budget instead of letting a
/// server that sends an endless line or a huge literal fill memory.
pub struct Bounded {
    pub conn: Conn,
    pub budget: Budget,
    /// IMAP only: the literals announced in what was read.
    literals: Option<LiteralScan>,
}

impl Bounded {
    pub fn new(conn: Conn, budget: Budget) -> Self {
        Bounded {
            conn,
            budget,
            literals: None,
        }
    }

    /// For IMAP: a literal announced as larger than the budget left
    /// (`{4000000000}`) fails the read at once. async-imap sizes its
    /// buffer from the announcement before a byte of it arrives, so the
    /// byte budget alone would come too late.
    pub fn imap(conn: Conn, budget: Budget) -> Self {
        Bounded {
            conn,
            budget,
            literals: Some(LiteralScan::default()),
        }
    }
}

/// Finds IMAP literal announcements (`{N}` or `{N+}` right before CRLF,
/// RFC 9051 §4.3) in a byte stream, skipping the literals' own bytes.
#[derive(Default)]
pub struct LiteralScan {
    /// Bytes of a literal still to pass unscanned.
    skip: u64,
    /// The end of the current line, up to 32 bytes: enough for `{N}\r`.
    tail: Vec<u8>,
}

impl LiteralScan {
    /// Feeds bytes; the size of each literal announced in them.
    pub fn feed(&mut self, mut data: &[u8], mut found: impl FnMut(u64)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let b = data[0];
            data = &data[1..];
            if b == b'\n' {
                if let Some(n) = literal_size(&self.tail) {
                    found(n);
                    self.skip = n;
                }
                self.tail.clear();
            } else {
                if self.tail.len() == 32 {
                    self.tail.remove(0);
                }
                self.tail.push(b);
            }
        }
    }
}

/// `…{123}\r` or `…{123+}\r` at the end of a line: 123.
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|b| *b == b'{')?;
    let digits = &line[open + 1..];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl std::fmt::Debug for Bounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bounded")
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let left = self.budget.0.load(Ordering::Relaxed);
        if left == 0 {
            return Poll::Ready(Err(std::io::Error::other("read budget exhausted")));
        }
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        let this = &mut *self;
        let n = if left >= buf.remaining() {
            let before = buf.filled().len();
            std::task::ready!(poll_conn(&mut this.conn, cx, buf))?;
            buf.filled().len() - before
        } else {
            // Less budget than room: read through a buffer of exactly the
            // budget, so not one byte more is taken from the server.
            let mut scratch = vec![0u8; left];
            let mut rb = ReadBuf::new(&mut scratch);
            std::task::ready!(poll_conn(&mut this.conn, cx, &mut rb))?;
            buf.put_slice(rb.filled());
            rb.filled().len()
        };
        this.budget.0.fetch_sub(n as u64, Ordering::Relaxed);
        if let Some(scan) = &mut this.literals {
            let left = this.budget.0.load(Ordering::Relaxed);
            let mut too_big = None;
            let filled = buf.filled();
            scan.feed(&filled[filled.len() - n..], |size| {
                if size > left {
                    too_big = Some(size);
                }
            });
            if let Some(size) = too_big {
                this.budget.set(0);
                return Poll::Ready(Err(std::io::Error::other(format!(
                    "a literal of {size} bytes, more than allowed"
                ))));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn poll_conn(
    conn: &mut Conn,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<std::io::Result<()>> {
    match conn {
        Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
        Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.conn {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, data),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.conn {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.conn {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    hex_lower(&sha2::Sha256::digest(der))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies as a browser would, except that the one certificate the user
/// trusted for this account (by SHA-256) is accepted as it is; a failure
/// is kept so the page can show the certificate.
#[derive(Debug)]
struct Verifier {
    roots: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Option<String>,
    problem: Mutex<Option<CertProblem>>,
}

fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "self-signed or from an unknown issuer".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "not valid for this host name".into()
            }
            C::Expired | C::ExpiredContext { .. } => "expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
            C::Revoked => "revoked".into(),
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        if self.pinned.as_deref() == Some(fp.as_str()) {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .roots
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e) => {
                if let Ok(mut p) = self.problem.lock() {
                    *p = Some(CertProblem {
                        host: server_name.to_str().into_owned(),
                        reason: describe(&e),
                        fingerprint: fp,
                    });
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.roots.supported_verify_schemes()
    }
}

fn web_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut r = rustls::RootCertStore::empty();
            r.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(r)
        })
        .clone()
}

/// Runs the TLS handshake with `host`, verified (or pinned).
pub async fn tls(
    tcp: TcpStream,
    host: &str,
    pinned: Option<&str>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, OutsideError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots =
        rustls::client::WebPkiServerVerifier::builder_with_provider(web_roots(), provider.clone())
            .build()
            .map_err(|e| OutsideError::Protocol(format!("TLS roots: {e}")))?;
    let verifier = Arc::new(Verifier {
        roots,
        pinned: pinned.map(str::to_owned),
        problem: Mutex::new(None),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutsideError::Protocol(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
        .map_err(|_| OutsideError::Protocol(format!("{host} is not a TLS server name")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            if let Some(p) = verifier.problem.lock().ok().and_then(|mut p| p.take()) {
                return Err(OutsideError::Certificate(p));
            }
            Err(OutsideError::Protocol(format!("TLS with {host}: {e}")))
        }
        Err(_) => Err(OutsideError::Timeout(format!("TLS handshake with {host}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements_are_found_and_their_bytes_skipped() {
        let mut sizes = Vec::new();
        let mut scan = LiteralScan::default();
        // Split across reads, a literal whose content looks like another
        // announcement, and a non-synchronising literal.
        scan.feed(b"* 1 FETCH (BODY[] {1", |n| sizes.push(n));
        scan.feed(b"2}\r\n{99999}\r\n!) x {7+}\r\nabcdefg)\r\n", |n| {
            sizes.push(n)
        });
        scan.feed(b"* OK {not} a literal\r\n* OK {}\r\n", |n| sizes.push(n));
        assert_eq!(sizes, vec![12, 7]);
    }

    #[test]
    fn private_and_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2a00:1450::1", "64:ff9b::808:808"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
