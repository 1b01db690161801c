//! ACME for real against Pebble (Let's Encrypt's test server, Debian's
//! `pebble`) on loopback: Tern answers the HTTP-01 challenge on its own
//! web listener, Pebble checks it over real HTTP after looking the names up
//! in a DNS server of the test's, and the certificate it issues is what
//! IMAPS and POP3S present; a renewal is in use on every listener without
//! a restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fakedns::FakeDns;

struct Pebble {
    child: Child,
    _dir: tempfile::TempDir,
    dir_url: String,
    mgmt: u16,
    ca: std::path::PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pebble on `port`, validating HTTP-01 on `http_port`, resolving names
/// through `dns`, serving its API with a certificate from a CA made here.
fn pebble(port: u16, http_port: u16, dns: &FakeDns) -> Pebble {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Pebble API test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(p, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    let (ca_pem, cert, keyf) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&keyf, key.serialize_pem()).unwrap();
    let mgmt = common::free_port();
    let conf = dir.path().join("pebble.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{port}", "managementListenAddress": "127.0.0.1:{mgmt}",
  "certificate": {cert:?}, "privateKey": {keyf:?}, "httpPort": {http_port}, "tlsPort": {tls},
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            cert = cert.display().to_string(),
            keyf = keyf.display().to_string(),
            tls = common::free_port(),
        ),
    )
    .unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(&conf)
        .arg("-dnsserver")
        .arg(dns.addr())
        // No random waits or nonce rejections: the test is about Tern.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(if std::env::var_os("TERN_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if std::env::var_os("TERN_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("pebble (Debian package `pebble`; scripts/test.sh installs it)");
    Pebble {
        child,
        _dir: dir,
        dir_url: format!("https://127.0.0.1:{port}/dir"),
        mgmt,
        ca: ca_pem,
    }
}

/// Pebble's root for the certificates it issues (a new one each run),
/// from its management API.
fn issuing_root(p: &Pebble) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&p.ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", p.mgmt))
            .output()
            .unwrap();
        if o.status.success() && o.stdout.starts_with(b"-----BEGIN CERTIFICATE") {
            return o.stdout;
        }
        assert!(
            Instant::now() < end,
            "pebble's management API did not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leaf certificate a TLS port presents, when it chains to `root`
/// for `name`.
fn presented(port: u16, root: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &root[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), name.to_owned().try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // The IMAP or POP3 greeting: the handshake is done once it reads.
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).ok()?;
    let _ = tls.flush();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_pebble_is_used_and_renewed_without_a_restart() {
    let dns = FakeDns::start();
    for n in [
        "mail.example.test",
        "mta-sts.example.test",
        "autoconfig.example.test",
    ] {
        dns.a(n);
    }
    let pebble_port = common::free_port();
    let dir_url = format!("https://127.0.0.1:{pebble_port}/dir");
    // Tern first (its web port is the one Pebble must check), asking a
    // directory that is not up yet: it retries every second.
    let ca_file = tempfile::tempdir().unwrap();
    let ca_path = ca_file.path().join("pebble-api-ca.pem");
    let mut t = common::start(&[
        ("TERN_HOSTNAME", "mail.example.test"),
        ("TERN_TLS__ACME", "true"),
        ("TERN_TLS__ACME_DIRECTORY", &dir_url),
        ("TERN_TLS__ACME_ROOTS_FILE", &ca_path.display().to_string()),
        ("TERN_TLS__ACME_EMAIL", "postmaster@example.test"),
        ("TERN_TLS__ACME_CHECK_SECS", "1"),
    ]);
    let pid = t.child.id();
    let p = pebble(pebble_port, t.web, &dns);
    assert_eq!(p.dir_url, dir_url);
    std::fs::copy(&p.ca, &ca_path).unwrap();
    let root = issuing_root(&p);
    let mut first = None;
    wait_for("IMAPS to present Pebble's certificate", 90, || {
        first = presented(t.imaps, &root, "mail.example.test");
        first.is_some()
    });
    let first = first.unwrap();
    // One certificate for every name, on every listener.
    for name in ["mta-sts.example.test", "autoconfig.example.test"] {
        assert_eq!(
            presented(t.imaps, &root, name).as_ref(),
            Some(&first),
            "{name}"
        );
    }
    assert_eq!(
        presented(t.pop3s, &root, "mail.example.test").as_ref(),
        Some(&first)
    );
    let data = t.dir.path().join("tls");
    assert!(data.join("acme-cert.pem").exists() && data.join("acme-account.json").exists());

    // Renewal: make the certificate look due; the next check replaces
    // it, and the same process presents the new one.
    std::fs::write(data.join("acme-issued"), "0").unwrap();
    wait_for("a renewed certificate", 90, || {
        presented(t.imaps, &root, "mail.example.test").is_some_and(|c| c != first)
    });
    let second = presented(t.imaps, &root, "mail.example.test").unwrap();
    assert_eq!(presented(t.pop3s, &root, "mail.example.test"), Some(second));
    assert_eq!(t.child.id(), pid);
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "the same server, still running"
    );
}
