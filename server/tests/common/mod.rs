//! Shared by the protocol tests: start the built `tern serve` on free
//! loopback ports with a small directory, and a line client over plain TCP
//! or rustls.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailcore::{Core, CoreOptions};

pub mod fakedns;

pub const BIN: &str = env!("CARGO_BIN_EXE_tern");
pub const PW: &str = "correct horse battery";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Tern {
    pub child: Child,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub mx: u16,
    pub sub: u16,
    pub smtps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub imap: u16,
    pub imaps: u16,
    pub web: u16,
    /// ManageSieve.
    pub sieve: u16,
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tern ARGS` against a data dir and, when given, a database URL.
fn tern(dir: &Path, db: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    match db {
        Some(u) => cmd.env("TERN_DATABASE__URL", u),
        None => cmd.env_remove("TERN_DATABASE__URL"),
    };
    cmd.args(args).env("TERN_DATA_DIR", dir);
    cmd
}

/// Runs a `tern` command against a data dir and returns its stdout; fails
/// the test, with the command's stderr, if the command fails.
pub fn cli_out(dir: &Path, args: &[&str]) -> String {
    cli_with(dir, &[], args)
}

/// [`cli_out`] with more environment (a database URL, a name server).
pub fn cli_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = tern(dir, None, args);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn cli_db(dir: &Path, db: Option<&str>, args: &[&str], stdin: &str) {
    let mut c = tern(dir, db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "tern {args:?}");
}

/// A server with example.test: alice, bob, an alias team -> alice+bob.
pub fn start(extra_env: &[(&str, &str)]) -> Tern {
    start_with(extra_env, true)
}

/// Another node on a database `start` already set up (same
/// `TERN_DATABASE__URL` in `extra_env`): no directory set-up.
pub fn start_node(extra_env: &[(&str, &str)]) -> Tern {
    start_with(extra_env, false)
}

fn start_with(extra_env: &[(&str, &str)], setup: bool) -> Tern {
    let db = extra_env
        .iter()
        .find(|(k, _)| *k == "TERN_DATABASE__URL")
        .map(|(_, v)| *v);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    if setup {
        directory_setup(p, db);
    }
    launch(dir, extra_env)
}

fn directory_setup(p: &Path, db: Option<&str>) {
    cli_db(p, db, &["domain", "add", "example.test"], "");
    cli_db(
        p,
        db,
        &["user", "add", "alice@example.test"],
        &format!("{PW}\n"),
    );
    cli_db(
        p,
        db,
        &["user", "add", "bob@example.test"],
        &format!("{PW}\n"),
    );
    cli_db(
        p,
        db,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@example.test",
        ],
        "",
    );
}

/// A server on a data dir that already holds a store (a restored backup):
/// no directory set-up.
pub fn start_existing(dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> Tern {
    launch(dir, extra_env)
}

/// `start` in a directory the test prepared (a small tmpfs, say).
pub fn start_in(dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> Tern {
    directory_setup(dir.path(), None);
    launch(dir, extra_env)
}

struct Ports {
    mx: u16,
    sub: u16,
    smtps: u16,
    pop3: u16,
    pop3s: u16,
    imap: u16,
    imaps: u16,
    web: u16,
    sieve: u16,
}

fn serve_command<K: AsRef<str>, V: AsRef<str>>(
    p: &Path,
    ports: &Ports,
    extra_env: &[(K, V)],
) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("TERN_DATA_DIR", p)
        .env_remove("TERN_DATABASE__URL")
        .env("TERN_HOSTNAME", "mx.example.test")
        .env("TERN_WEB__LISTEN", format!("127.0.0.1:{}", ports.web))
        .env("TERN_LISTENERS__SMTP", format!("127.0.0.1:{}", ports.mx))
        .env(
            "TERN_LISTENERS__SUBMISSION",
            format!("127.0.0.1:{}", ports.sub),
        )
        .env(
            "TERN_LISTENERS__SMTPS",
            format!("127.0.0.1:{}", ports.smtps),
        )
        .env("TERN_LISTENERS__POP3", format!("127.0.0.1:{}", ports.pop3))
        .env(
            "TERN_LISTENERS__POP3S",
            format!("127.0.0.1:{}", ports.pop3s),
        )
        .env("TERN_LISTENERS__IMAP", format!("127.0.0.1:{}", ports.imap))
        .env(
            "TERN_LISTENERS__IMAPS",
            format!("127.0.0.1:{}", ports.imaps),
        )
        .env(
            "TERN_LISTENERS__MANAGESIEVE",
            format!("127.0.0.1:{}", ports.sieve),
        )
        // Tests reach nothing but 127.0.0.1: outbound delivery (which
        // would look up real MX records) is off unless a test turns it
        // on with routes to its own fake MX servers.
        .env("TERN_RELAY__ENABLED", "false")
        // Nor do the sender checks on port 25 (SPF, DKIM, DMARC), which
        // would ask the system's DNS; the test of them turns them on with
        // a DNS server of its own.
        .env("TERN_SMTP__SENDER_CHECKS", "false")
        // Webmail sends go at once unless a test asks for the undo window.
        .env("TERN_WEB__UNDO_SEND_SECS", "0")
        .stdout(Stdio::null());
    // TERN_TEST_STDERR=1 shows the servers' logs when a test is debugged.
    if std::env::var_os("TERN_TEST_STDERR").is_none() {
        cmd.stderr(Stdio::null());
    }
    for (k, v) in extra_env {
        // The server's log into a file, for a test that reads it.
        if k.as_ref() == "TERN_TEST_STDERR_FILE" {
            cmd.stderr(std::fs::File::create(v.as_ref()).unwrap());
        }
        cmd.env(k.as_ref(), v.as_ref());
    }
    cmd
}

fn launch(dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> Tern {
    let p = dir.path();
    // Ports come from binding :0 and letting go, so another test's server
    // can take one in between; a server that fails to bind exits, and we
    // try again on fresh ports.
    for _attempt in 0..5 {
        let (mx, sub, smtps) = (free_port(), free_port(), free_port());
        let (pop3, pop3s, web) = (free_port(), free_port(), free_port());
        let (imap, imaps, sieve) = (free_port(), free_port(), free_port());
        let ports = Ports {
            mx,
            sub,
            smtps,
            pop3,
            pop3s,
            imap,
            imaps,
            web,
            sieve,
        };
        let mut cmd = serve_command(p, &ports, extra_env);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The web listener binds last; once it answers, all mail ports are up.
        let up = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if TcpStream::connect(("127.0.0.1", web)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                break child.try_wait().unwrap().is_none();
            }
            assert!(Instant::now() < deadline, "tern did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        return Tern {
            child,
            dir,
            env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mx,
            sub,
            smtps,
            pop3,
            pop3s,
            imap,
            imaps,
            web,
            sieve,
        };
    }
    panic!("tern could not bind its ports in 5 attempts");
}

impl Tern {
    /// Kills the server (SIGKILL, as a crash) and starts it again on the
    /// same directory and ports.
    pub fn restart(&mut self) {
        self.while_stopped(|_| {});
    }

    /// Kills the server (SIGKILL), runs `f` on its data dir while nothing
    /// runs, and starts it again on the same directory and ports.
    pub fn while_stopped(&mut self, f: impl FnOnce(&Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        f(self.dir.path());
        let ports = Ports {
            mx: self.mx,
            sub: self.sub,
            smtps: self.smtps,
            pop3: self.pop3,
            pop3s: self.pop3s,
            imap: self.imap,
            imaps: self.imaps,
            web: self.web,
            sieve: self.sieve,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.web)).is_ok() {
            assert!(Instant::now() < deadline, "the old server still listens");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = serve_command(self.dir.path(), &ports, &self.env)
            .spawn()
            .unwrap();
        while TcpStream::connect(("127.0.0.1", self.web)).is_err() {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "tern exited on restart"
            );
            assert!(Instant::now() < deadline, "tern did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn core(&self) -> Core {
        let url = format!("sqlite://{}/tern.db", self.dir.path().display());
        Core::open(CoreOptions::new(url)).await.unwrap()
    }

    /// Delivers `raw` to a local user through the core, as SMTP would but
    /// for the `Delivered-To:` line (tests/smtp.rs checks that), so tests
    /// can compare what a client reads with `raw` byte for byte.
    pub async fn deliver(&self, user: &str, raw: &[u8]) {
        let core = self.core().await;
        let a = core.account(user).await.unwrap().unwrap();
        let env = mailcore::delivery::Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![mailcore::delivery::LocalCopy::new(a.id, "")],
            remote: vec![],
        };
        core.deliver(&env, raw).await.unwrap();
        // Closed before the test's runtime ends: an sqlx pool left open
        // can spin in its maintenance task while the runtime shuts down
        // (seen once as a test that never finished).
        core.close().await;
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls/cert.pem")
    }

    /// Waits until every message this server answered `250` for is in
    /// the store: SMTP answers once a message is in the node's spool, and
    /// the ingest worker stores it a moment later.
    pub fn settle(&self) {
        self.settle_within(Duration::from_secs(30));
    }

    /// [`Tern::settle`] with a longer wait, for a backlog built on purpose.
    pub fn settle_within(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let mut cmd = Command::new(BIN);
            cmd.args(["spool", "stats"])
                .env("TERN_DATA_DIR", self.dir.path())
                .env_remove("TERN_DATABASE__URL");
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && s.lines().any(|l| l == "records: 0") {
                return;
            }
            assert!(Instant::now() < deadline, "spool not drained: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        self.folder(user, "INBOX").await
    }

    /// The raw messages of one of a user's mailboxes, oldest first.
    pub async fn folder(&self, user: &str, name: &str) -> Vec<Vec<u8>> {
        self.settle();
        let url = format!("sqlite://{}/tern.db", self.dir.path().display());
        let core = Core::open(CoreOptions::new(url)).await.unwrap();
        let a = core.account(user).await.unwrap().unwrap();
        let ib = core.mail(a.id).open(name).await.unwrap();
        let (msgs, _) = ib.list(0, 100, mailcore::SortOrder::UidAsc).await.unwrap();
        let mut out = Vec::new();
        for m in msgs {
            out.push(ib.raw(m.uid).await.unwrap());
        }
        core.close().await;
        out
    }

    pub async fn queue_len(&self) -> u64 {
        self.settle();
        let url = format!("sqlite://{}/tern.db", self.dir.path().display());
        let core = Core::open(CoreOptions::new(url)).await.unwrap();
        let n = core.queue().len().await.unwrap();
        core.close().await;
        n
    }
}

pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

pub struct Client {
    pub r: BufReader<Box<dyn Stream>>,
    /// A second handle on the plain socket, for STARTTLS.
    plain: Option<TcpStream>,
}

pub fn tls_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cert).unwrap();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn wrap_tls(sock: TcpStream, cert: &Path) -> Box<dyn Stream> {
    let conn =
        rustls::ClientConnection::new(tls_config(cert), "localhost".try_into().unwrap()).unwrap();
    Box::new(rustls::StreamOwned::new(conn, sock))
}

impl Client {
    pub fn connect(port: u16) -> (Client, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let plain = s.try_clone().ok();
        let mut c = Client {
            r: BufReader::new(Box::new(s)),
            plain,
        };
        let greet = c.reply();
        (c, greet)
    }

    pub fn connect_tls(port: u16, cert: &Path) -> (Client, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            r: BufReader::new(wrap_tls(s, cert)),
            plain: None,
        };
        let greet = c.reply();
        (c, greet)
    }

    /// Over implicit TLS, with the greeting read as one line (IMAP, POP3).
    pub fn connect_tls_line(port: u16, cert: &Path) -> (Client, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            r: BufReader::new(wrap_tls(s, cert)),
            plain: None,
        };
        let greet = c.line();
        (c, greet)
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        let w = self.r.get_mut();
        w.write_all(raw).unwrap();
        w.flush().unwrap();
    }

    /// One line, CRLF included.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// A POP3 multi-line body up to and including ".CRLF", raw.
    pub fn until_dot(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            if self.r.read_until(b'\n', &mut l).unwrap() == 0 {
                return out;
            }
            out.extend_from_slice(&l);
            if l == b".\r\n" {
                return out;
            }
        }
    }

    /// Sends a POP3 command and returns its status line.
    pub fn pop(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    pub fn starttls(self, cert: &Path) -> Client {
        let sock = self.plain.expect("STARTTLS on a plain connection");
        Client {
            r: BufReader::new(wrap_tls(sock, cert)),
            plain: None,
        }
    }

    pub fn login_plain(&mut self, user: &str, pw: &str) -> String {
        use base64::Engine;
        let t = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
        self.cmd(&format!("AUTH PLAIN {t}"))
    }
}

/// A fresh database on the test PostgreSQL server, or `None` (with a loud
/// line) when there is none; with `TERN_REQUIRE_PG=1` its absence fails.
pub struct PgDb {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub fn create(test: &str) -> Option<PgDb> {
        let Ok(admin) = std::env::var("TERN_TEST_PG_URL") else {
            if std::env::var("TERN_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("TERN_REQUIRE_PG=1 but TERN_TEST_PG_URL is not set");
            }
            eprintln!("!!! {test}: SKIPPED (no PostgreSQL) !!!");
            return None;
        };
        let name = format!("tern_{test}_{}", std::process::id());
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let db = PgDb { admin, name, url };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    pub fn psql(&self, sql: &str) {
        let st = Command::new("psql")
            .args([self.admin.as_str(), "-qAtc", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "psql {sql}");
    }

    /// Simulates the database going away: no new connections, and the
    /// open ones are killed.
    pub fn cut_off(&self) {
        self.psql(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            self.name
        ));
        self.psql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }

    pub fn restore(&self) {
        self.psql(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ));
    }
}

/// Runs a Python client script (smtplib, poplib) and fails the test with
/// its traceback if it fails.
pub fn run_python(script: &str) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One HTTP/1.1 request over a fresh connection: (status, whole response).
pub fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub fn http_get(port: u16, path: &str, cookie: Option<&str>) -> (u16, String) {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    http(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Connection: close\r\n\r\n"
        ),
    )
}

pub fn http_post_form(port: u16, path: &str, body: &str, extra: &str) -> (u16, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Accept: text/html\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The `name=value` of the session cookie a response sets, if any.
/// The CSRF token of a signed-in page's forms.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

pub fn session_cookie(resp: &str) -> Option<String> {
    resp.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .find(|c| c.starts_with("tern_session=") && c.len() > "tern_session=".len())
}

/// Signs in over HTTP as a form post; the session cookie, or None.
pub fn web_login(port: u16, user: &str, pw: &str) -> Option<String> {
    let body = format!(
        "address={}&password={}",
        user.replace('@', "%40"),
        pw.replace(' ', "+")
    );
    let (_, resp) = http_post_form(port, "/api/login", &body, "");
    session_cookie(&resp)
}
