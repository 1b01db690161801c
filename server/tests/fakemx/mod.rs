//! Fake remote mail servers for the queue tests: real SMTP over real
//! sockets on 127.0.0.1 (with STARTTLS when asked), whose behaviour each
//! test sets: per-recipient replies, a connection limit answered with
//! `421`, a connection dropped mid-DATA, a hang after the final dot. They
//! record what arrived, byte for byte. A fake DNS points domains at them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern::relay::dns::{Dns, DnsError, MxAnswer, TlsaAnswer, TxtAnswer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// The data as the client meant it: dot-stuffing undone, final dot off.
    pub data: Vec<u8>,
    pub tls: bool,
}

pub type RcptFn = dyn Fn(&str) -> String + Send + Sync;

pub struct Behaviour {
    /// The reply line to `RCPT TO:<addr>`; default `250 2.1.5 ok`.
    pub rcpt: Mutex<Box<RcptFn>>,
    /// More open connections than this get a `421` greeting.
    pub max_conns: Option<usize>,
    /// This many sessions drop the connection halfway through the data.
    pub drop_in_data: AtomicUsize,
    /// This many sessions never answer the final dot.
    pub hang_after_dot: AtomicUsize,
    pub starttls: bool,
    /// Wait this long before answering the final dot.
    pub data_delay: Duration,
    /// Wait this long before the greeting.
    pub greeting_delay: Duration,
    /// Answer MAIL only once RCPTs and DATA have arrived too, as one
    /// group: a client that waits for MAIL's reply before sending more
    /// (does not pipeline) waits forever.
    pub strict_pipelining: bool,
    /// Close the connection after this many messages (after the reply to
    /// the final dot), as a server with a per-session limit does.
    pub messages_per_connection: Option<usize>,
    /// The certificate chain (DER, leaf first) and PKCS#8 key STARTTLS
    /// presents; None for a self-signed one for `fake.mx.test`.
    pub cert: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    /// Offer REQUIRETLS (RFC 8689) once TLS is up.
    pub requiretls: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            rcpt: Mutex::new(Box::new(|_| "250 2.1.5 ok".to_owned())),
            max_conns: None,
            drop_in_data: AtomicUsize::new(0),
            hang_after_dot: AtomicUsize::new(0),
            starttls: false,
            data_delay: Duration::ZERO,
            greeting_delay: Duration::ZERO,
            strict_pipelining: false,
            messages_per_connection: None,
            cert: None,
            requiretls: false,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    /// Messages the fake acknowledged with 250.
    pub accepted: Mutex<Vec<Received>>,
    /// Data received completely, acknowledged or not.
    pub data_complete: AtomicUsize,
    pub sessions: AtomicUsize,
    pub refused_421: AtomicUsize,
    open: AtomicUsize,
    /// Most sessions open at once that were not refused.
    pub max_open: AtomicUsize,
    pub rsets: AtomicUsize,
    /// MAIL commands whose RCPTs and DATA were already in the server's
    /// buffer when MAIL was read (sent in the same write).
    pub pipelined_groups: AtomicUsize,
    /// Every MAIL command as it arrived.
    pub mail_lines: Mutex<Vec<String>>,
}

pub struct FakeMx {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub behaviour: Arc<Behaviour>,
    task: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeMx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl FakeMx {
    pub async fn start(b: Behaviour) -> FakeMx {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let behaviour = Arc::new(b);
        let stop = Arc::new(AtomicBool::new(false));
        let tls = tls_acceptor(behaviour.cert.clone());
        let (st, bh) = (stats.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (st, bh, tls) = (st.clone(), bh.clone(), tls.clone());
                tokio::spawn(async move {
                    st.sessions.fetch_add(1, Ordering::SeqCst);
                    let open = st.open.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut sock = sock;
                    if bh.max_conns.is_some_and(|m| open > m) {
                        st.refused_421.fetch_add(1, Ordering::SeqCst);
                        let _ = sock
                            .write_all(b"421 4.7.0 Too many concurrent SMTP connections\r\n")
                            .await;
                        st.open.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    st.max_open.fetch_max(open, Ordering::SeqCst);
                    if !bh.greeting_delay.is_zero() {
                        tokio::time::sleep(bh.greeting_delay).await;
                    }
                    let _ = sock.write_all(b"220 fake.mx.test ESMTP\r\n").await;
                    let (upgrade, _) = session(sock, &st, &bh, false).await;
                    if let Some(plain) = upgrade
                        && let Ok(t) = tls.accept(plain).await
                    {
                        let _ = session(t, &st, &bh, true).await;
                    }
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FakeMx {
            addr,
            stats,
            behaviour,
            task,
            stop,
        }
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.stats.accepted.lock().unwrap().clone()
    }

    pub fn set_rcpt(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        *self.behaviour.rcpt.lock().unwrap() = Box::new(f);
    }
}

fn tls_acceptor(cert: Option<(Vec<Vec<u8>>, Vec<u8>)>) -> tokio_rustls::TlsAcceptor {
    let (chain, key) = cert.unwrap_or_else(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["fake.mx.test".to_owned()]).unwrap();
        (vec![ck.cert.der().to_vec()], ck.signing_key.serialize_der())
    });
    let chain: Vec<_> = chain
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Runs SMTP until QUIT or EOF. Returns the plain stream when the client
/// asked for STARTTLS, so the caller can upgrade it.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    sock: S,
    st: &Stats,
    bh: &Behaviour,
    tls: bool,
) -> (Option<S>, ()) {
    let mut io = BufReader::new(sock);
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut served = 0usize;
    loop {
        let mut line = Vec::new();
        match io.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return (None, ()),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = text.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = "250-fake.mx.test\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n".to_owned();
            if bh.starttls && !tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if bh.requiretls && tls {
                r.push_str("250-REQUIRETLS\r\n");
            }
            r.push_str("250 PIPELINING");
            r
        } else if upper.starts_with("HELO") {
            "250 fake.mx.test".into()
        } else if upper == "STARTTLS" && bh.starttls && !tls {
            let _ = io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await;
            return (Some(io.into_inner()), ());
        } else if upper.starts_with("MAIL FROM:") {
            st.mail_lines.lock().unwrap().push(text.clone());
            from = between(&text, '<', '>');
            rcpts.clear();
            if io
                .buffer()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"DATA\r\n"))
            {
                st.pipelined_groups.fetch_add(1, Ordering::SeqCst);
            }
            if bh.strict_pipelining {
                // Hold MAIL's reply until the group is complete.
                let mut held = vec!["250 2.1.0 ok".to_owned()];
                loop {
                    let mut l = Vec::new();
                    match io.read_until(b'\n', &mut l).await {
                        Ok(0) | Err(_) => return (None, ()),
                        Ok(_) => {}
                    }
                    let t = String::from_utf8_lossy(&l).trim_end().to_owned();
                    if t.eq_ignore_ascii_case("DATA") {
                        break;
                    }
                    let addr = between(&t, '<', '>');
                    let r = (bh.rcpt.lock().unwrap())(&addr);
                    if r.starts_with('2') {
                        rcpts.push(addr);
                    }
                    held.push(r);
                }
                let mut out = held.join("\r\n");
                out.push_str("\r\n");
                if rcpts.is_empty() {
                    out.push_str("554 5.5.1 no valid recipients\r\n");
                    let _ = io.get_mut().write_all(out.as_bytes()).await;
                    continue;
                }
                let _ = io.get_mut().write_all(out.as_bytes()).await;
                // Then DATA as usual.
                match data_phase(&mut io, st, bh, &from, &mut rcpts, tls).await {
                    Some(r) => r,
                    None => return (None, ()),
                }
            } else {
                "250 2.1.0 ok".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let addr = between(&text, '<', '>');
            let r = (bh.rcpt.lock().unwrap())(&addr);
            if r.starts_with('2') {
                rcpts.push(addr);
            }
            r
        } else if upper == "DATA" {
            match data_phase(&mut io, st, bh, &from, &mut rcpts, tls).await {
                Some(r) => r,
                None => return (None, ()),
            }
        } else if upper == "RSET" {
            st.rsets.fetch_add(1, Ordering::SeqCst);
            rcpts.clear();
            "250 2.0.0 ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 ok".into()
        } else if upper == "QUIT" {
            let _ = io.get_mut().write_all(b"221 2.0.0 bye\r\n").await;
            return (None, ());
        } else {
            "500 5.5.2 unknown command".into()
        };
        if io
            .get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return (None, ());
        }
        if reply.starts_with("250 2.0.0 queued") {
            served += 1;
            if bh.messages_per_connection.is_some_and(|m| served >= m) {
                return (None, ());
            }
        }
    }
}

/// After `354`: reads the data to the final dot, then the reply to it
/// (None: the connection is to be dropped).
async fn data_phase<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    st: &Stats,
    bh: &Behaviour,
    from: &str,
    rcpts: &mut Vec<String>,
    tls: bool,
) -> Option<String> {
    let _ = io.get_mut().write_all(b"354 go ahead\r\n").await;
    let mut data = Vec::new();
    let mut lines = 0;
    loop {
        let mut l = Vec::new();
        match io.read_until(b'\n', &mut l).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        lines += 1;
        if lines == 2 && bh.drop_in_data.load(Ordering::SeqCst) > 0 {
            bh.drop_in_data.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // Lenient like the receivers SMTP smuggling exploits: a
        // dot line ends the data whatever its line ending.
        if l == b".\r\n" || l == b".\n" {
            break;
        }
        // RFC 5321 §4.5.2: remove one leading dot.
        if l.starts_with(b".") {
            l.remove(0);
        }
        data.extend_from_slice(&l);
    }
    st.data_complete.fetch_add(1, Ordering::SeqCst);
    if bh.hang_after_dot.load(Ordering::SeqCst) > 0 {
        bh.hang_after_dot.fetch_sub(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return None;
    }
    if !bh.data_delay.is_zero() {
        tokio::time::sleep(bh.data_delay).await;
    }
    st.accepted.lock().unwrap().push(Received {
        mail_from: from.to_owned(),
        rcpts: std::mem::take(rcpts),
        data,
        tls,
    });
    Some("250 2.0.0 queued as fake".into())
}

fn between(s: &str, a: char, b: char) -> String {
    match (s.find(a), s.rfind(b)) {
        (Some(i), Some(j)) if j > i => s[i + 1..j].to_owned(),
        _ => String::new(),
    }
}

/// DNS answers set by the test.
#[derive(Default)]
pub struct FakeDns {
    pub mx: Mutex<HashMap<String, MxAnswer>>,
    pub hosts: Mutex<HashMap<String, Vec<SocketAddr>>>,
    pub txt: Mutex<HashMap<String, Vec<String>>>,
    /// By MX host name.
    pub tlsa: Mutex<HashMap<String, TlsaAnswer>>,
}

impl FakeDns {
    pub fn mx(&self, domain: &str, answer: MxAnswer) {
        self.mx.lock().unwrap().insert(domain.to_owned(), answer);
    }

    pub fn host(&self, host: &str, addrs: &[SocketAddr]) {
        self.hosts
            .lock()
            .unwrap()
            .insert(host.to_owned(), addrs.to_vec());
    }

    /// `domain` has one MX, `mx.<domain>`, at `addr`.
    pub fn point(&self, domain: &str, addr: SocketAddr) {
        let host = format!("mx.{domain}");
        self.mx(domain, MxAnswer::Hosts(vec![(10, host.clone())]));
        self.host(&host, &[addr]);
    }
}

#[async_trait::async_trait]
impl Dns for FakeDns {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        Ok(self
            .mx
            .lock()
            .unwrap()
            .get(domain)
            .cloned()
            .unwrap_or(MxAnswer::NoDomain))
    }

    async fn txt(&self, name: &str) -> Result<TxtAnswer, DnsError> {
        Ok(match self.txt.lock().unwrap().get(name) {
            Some(r) => TxtAnswer::Records(r.clone()),
            None => TxtAnswer::None,
        })
    }

    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        Ok(self
            .tlsa
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or_default())
    }

    async fn addrs(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError> {
        self.hosts
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .ok_or_else(|| DnsError {
                message: format!("{host}: no such host"),
                temporary: false,
            })
    }
}

/// An address on 127.0.0.1 where nothing listens: connections are refused.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
