//! Drives the built `tern` binary: admin commands, `tern serve` with
//! `/healthz`, the login endpoint over real HTTP, and clean shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::PgDb;

const BIN: &str = env!("CARGO_BIN_EXE_tern");
const PW: &str = "correct horse battery";

fn tern(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("TERN_DATA_DIR", dir)
        .env_remove("TERN_DATABASE__URL")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = tern(dir, args, stdin);
    assert!(
        out.status.success(),
        "tern {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its one-line error.
fn fails(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = tern(dir, args, stdin);
    assert!(!out.status.success(), "tern {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
    lines[0].to_owned()
}

#[test]
fn admin_commands() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert_eq!(
        ok(dir, &["domain", "add", "Example.TEST"], None),
        "added domain example.test\n"
    );
    assert!(fails(dir, &["domain", "add", "example.test"], None).contains("already exists"));
    assert!(fails(dir, &["domain", "add", "not a domain"], None).contains("not a valid host name"));

    let pw = format!("{PW}\n");
    assert_eq!(
        ok(dir, &["user", "add", "alice@example.test"], Some(&pw)),
        "added alice@example.test (user)\n"
    );
    ok(
        dir,
        &["user", "add", "bob@example.test", "--role", "domain_admin"],
        Some(&pw),
    );
    assert!(
        fails(dir, &["user", "add", "alice@example.test"], Some(&pw)).contains("already exists")
    );
    assert!(
        fails(dir, &["user", "add", "carol@nowhere.test"], Some(&pw))
            .contains("domain nowhere.test not found")
    );
    assert!(fails(dir, &["user", "add", "bad address"], Some(&pw)).contains("no @domain"));
    assert!(
        fails(dir, &["user", "add", "dave@example.test"], Some("short\n")).contains("at least 8")
    );
    assert!(fails(dir, &["user", "add", "dave@example.test"], Some("")).contains("no password"));
    assert!(
        fails(
            dir,
            &["user", "add", "dave@example.test", "--role", "king"],
            Some(&pw)
        )
        .contains("unknown role")
    );
    // A refused add leaves nothing behind.
    assert!(!ok(dir, &["user", "list"], None).contains("dave@"));
    // Passwords are never taken from argv.
    assert!(
        !tern(
            dir,
            &["user", "add", "eve@example.test", "--password", "x"],
            None
        )
        .status
        .success()
    );

    assert_eq!(
        ok(dir, &["user", "list"], None),
        "alice@example.test\tuser\t0/unlimited\nbob@example.test\tdomain_admin\t0/unlimited\n"
    );
    ok(
        dir,
        &["user", "set-role", "alice@example.test", "admin"],
        None,
    );
    assert!(
        ok(dir, &["user", "list", "example.test"], None).starts_with("alice@example.test\tadmin")
    );
    ok(
        dir,
        &["user", "passwd", "alice@example.test"],
        Some("another secret\n"),
    );
    assert!(fails(dir, &["user", "passwd", "ghost@example.test"], Some(&pw)).contains("not found"));

    assert_eq!(
        ok(
            dir,
            &[
                "alias",
                "add",
                "team@example.test",
                "alice@example.test",
                "bob@example.test"
            ],
            None
        ),
        "team@example.test -> alice@example.test, bob@example.test\n"
    );
    assert_eq!(
        ok(dir, &["alias", "list"], None),
        "team@example.test\talice@example.test, bob@example.test\n"
    );
    ok(
        dir,
        &["alias", "remove", "team@example.test", "bob@example.test"],
        None,
    );
    assert_eq!(
        ok(dir, &["alias", "list", "example.test"], None),
        "team@example.test\talice@example.test\n"
    );
    assert!(fails(dir, &["alias", "remove", "nope@example.test"], None).contains("not found"));

    ok(
        dir,
        &["domain", "set-catchall", "example.test", "bob"],
        None,
    );
    assert_eq!(
        ok(dir, &["domain", "list"], None),
        "example.test\tcatchall=bob@example.test\n"
    );
    assert!(
        fails(
            dir,
            &["domain", "set-catchall", "example.test", "ghost"],
            None
        )
        .contains("not found")
    );
    ok(
        dir,
        &["domain", "set-catchall", "example.test", "none"],
        None,
    );
    assert_eq!(ok(dir, &["domain", "list"], None), "example.test\n");
    ok(
        dir,
        &[
            "domain",
            "set-catchall",
            "example.test",
            "--reject",
            "Nobody here; write to info@example.test",
        ],
        None,
    );
    assert_eq!(
        ok(dir, &["domain", "list"], None),
        "example.test\tcatchall=reject: Nobody here; write to info@example.test\n"
    );
    ok(
        dir,
        &["domain", "set-catchall", "example.test", "none"],
        None,
    );

    // Disable, enable and quota, as on the admin pages.
    ok(dir, &["user", "disable", "bob@example.test"], None);
    assert!(
        ok(dir, &["user", "list"], None)
            .contains("bob@example.test\tdomain_admin\t0/unlimited\tdisabled\n")
    );
    ok(dir, &["user", "enable", "bob@example.test"], None);
    ok(dir, &["user", "quota", "bob@example.test", "5"], None);
    assert!(
        ok(dir, &["user", "list"], None).contains("bob@example.test\tdomain_admin\t0/5242880\n")
    );
    // A domain admin gets its own domain; grant adds another.
    ok(dir, &["domain", "add", "other.test"], None);
    ok(
        dir,
        &["user", "set-role", "bob@example.test", "domain_admin"],
        None,
    );
    ok(
        dir,
        &["domain", "grant", "other.test", "bob@example.test"],
        None,
    );
    assert!(
        fails(
            dir,
            &["domain", "grant", "other.test", "alice@example.test"],
            None
        )
        .contains("not domain_admin")
    );
    ok(dir, &["domain", "remove", "other.test"], None);

    // Every one of those is in the audit log, newest first, by the CLI user.
    let audit = ok(dir, &["audit", "--limit", "100"], None);
    let actions: Vec<&str> = audit
        .lines()
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    for want in [
        "domain.remove",
        "domain.grant",
        "account.role",
        "account.quota",
        "account.disable",
        "catchall.set",
        "alias.add",
        "account.add",
        "domain.add",
    ] {
        assert!(actions.contains(&want), "{want} missing from:\n{audit}");
    }
    assert_eq!(actions[0], "domain.remove");
    assert!(
        audit
            .lines()
            .all(|l| l.split('\t').nth(1).unwrap().starts_with("cli:")),
        "{audit}"
    );

    ok(dir, &["user", "remove", "bob@example.test"], None);
    ok(dir, &["domain", "remove", "example.test"], None);
    assert_eq!(ok(dir, &["user", "list"], None), "");
    assert!(fails(dir, &["domain", "remove", "example.test"], None).contains("not found"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw HTTP/1.1 exchange; returns (status, headers+body as text).
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(port: u16, path: &str, cookie: Option<&str>) -> (u16, String) {
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

fn post_form(port: u16, path: &str, body: &str, extra: &str) -> (u16, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Accept: text/html\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path, port: u16, db_url: Option<&str>) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("TERN_DATA_DIR", dir)
        .env("TERN_WEB__LISTEN", format!("127.0.0.1:{port}"))
        .env("TERN_WEB__SITE_ROOT", dir.join("site"))
        .env("TERN_LISTENERS__SMTP", "")
        .env("TERN_LISTENERS__SUBMISSION", "")
        .env("TERN_LISTENERS__SMTPS", "")
        .env("TERN_LISTENERS__POP3", "")
        .env("TERN_LISTENERS__POP3S", "")
        .env("TERN_LISTENERS__MANAGESIEVE", "")
        // Off too: two of these servers run at once in this file, and
        // the dev default ports would collide.
        .env("TERN_LISTENERS__IMAP", "")
        .env("TERN_LISTENERS__IMAPS", "")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match db_url {
        Some(u) => cmd.env("TERN_DATABASE__URL", u),
        None => cmd.env_remove("TERN_DATABASE__URL"),
    };
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tern serve did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server(child)
}

fn header<'a>(resp: &'a str, name: &str) -> Vec<&'a str> {
    resp.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

#[test]
fn serve_health_login_and_clean_stop() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["domain", "add", "example.test"], None);
    ok(
        dir,
        &["user", "add", "alice@example.test"],
        Some(&format!("{PW}\n")),
    );
    let port = free_port();
    let mut server = start_server(dir, port, None);

    let (status, body) = get(port, "/healthz", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("ok\n"));
    // First start wrote the self-signed certificate.
    let cert = std::fs::read_to_string(dir.join("tls/cert.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));

    // The login page renders on the server.
    let (status, page) = get(port, "/login", None);
    assert_eq!(status, 200);
    assert!(page.contains("Sign in"), "{page}");
    assert!(page.contains("name=\"password\""));
    // A script CSP whose nonce is the one on Leptos's own hydration script,
    // so markup that slipped through an escape could not run.
    let csp = header(&page, "content-security-policy");
    assert_eq!(csp.len(), 1, "{page}");
    let nonce = csp[0]
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a nonce in the CSP");
    assert!(nonce.len() >= 16);
    assert!(
        page.contains(&format!("<script type=\"module\" nonce=\"{nonce}\"")),
        "{page}"
    );
    for d in [
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp[0].contains(d), "{}", csp[0]);
    }
    assert!(!csp[0].contains("unsafe-inline"), "{}", csp[0]);

    // Wrong password: back to the form with an error, and no session.
    let (status, resp) = post_form(
        port,
        "/api/login",
        "address=alice%40example.test&password=nope-nope",
        "",
    );
    assert_eq!(status, 302, "{resp}");
    assert_eq!(header(&resp, "location"), ["/login?error=invalid"]);
    assert!(header(&resp, "set-cookie").is_empty());
    let (_, page) = get(port, "/login?error=invalid", None);
    assert!(page.contains("Wrong address or password."));

    // A cross-site post is refused before it reaches the login.
    let (status, _) = post_form(
        port,
        "/api/login",
        "address=alice%40example.test&password=correct+horse+battery",
        "Origin: https://evil.example\r\n",
    );
    assert_eq!(status, 403);

    // Right password: a session cookie and a redirect home.
    let (status, resp) = post_form(
        port,
        "/api/login",
        "address=alice%40example.test&password=correct+horse+battery",
        &format!("Origin: http://127.0.0.1:{port}\r\n"),
    );
    assert_eq!(status, 302, "{resp}");
    assert_eq!(header(&resp, "location"), ["/"]);
    let set = header(&resp, "set-cookie");
    assert_eq!(set.len(), 1);
    assert!(
        set[0].contains("HttpOnly") && set[0].contains("SameSite=Lax"),
        "{}",
        set[0]
    );
    let cookie = set[0].split(';').next().unwrap().to_owned();
    let (status, home) = get(port, "/", Some(&cookie));
    assert_eq!(status, 200);
    assert!(home.contains("Signed in as alice@example.test"), "{home}");
    assert!(home.contains("INBOX"));
    // Errors are typed: each kind has its status, and the page says what
    // it is (a folder that is not there is a 404, not a 200 with a line).
    let (status, page) = get(port, "/mail?f=Nowhere", Some(&cookie));
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("No folder named Nowhere"), "{page}");
    let (status, page) = get(port, "/read?f=INBOX&uid=999", Some(&cookie));
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("message uid 999 not found"), "{page}");
    // A server function's error crosses as the typed value (JSON).
    let (status, resp) = post_form(
        port,
        "/api/folder_action",
        "csrf=wrong&op=create&name=x",
        &format!("Cookie: {cookie}\r\nAccept: application/json\r\n"),
    );
    assert_eq!(status, 403, "{resp}");
    assert!(
        resp.contains(r#"{"Forbidden":"403 Forbidden: bad or missing CSRF token"}"#),
        "{resp}"
    );
    // An action is a type: an op no button sends is refused before the
    // handler runs, with the right token too.
    let csrf = home
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token on the page")
        .to_owned();
    let (status, resp) = post_form(
        port,
        "/api/message_action",
        &format!("csrf={csrf}&f=INBOX&uids[]=1&op=explode&back=%2F"),
        &format!("Cookie: {cookie}\r\nAccept: application/json\r\n"),
    );
    // (Leptos answers a form post whose arguments do not decode with a
    // redirect back and the error in the body.)
    assert_ne!(status, 200, "{resp}");
    assert!(
        resp.contains(r#"{"Invalid":"unknown variant `explode`"#),
        "{resp}"
    );
    // The front door: an anonymous visitor is sent to sign in, and back
    // to the page they asked for afterwards; never to another site.
    let (status, anon) = get(port, "/", None);
    assert_eq!(status, 303, "{anon}");
    assert_eq!(header(&anon, "location"), ["/login"]);
    let (status, anon) = get(port, "/read?f=INBOX&uid=1", None);
    assert_eq!(status, 303, "{anon}");
    assert_eq!(
        header(&anon, "location"),
        ["/login?next=%2Fread%3Ff%3DINBOX%26uid%3D1"]
    );
    let (status, anon) = get(port, "/admin/queue", None);
    assert_eq!(
        (status, header(&anon, "location")),
        (303, vec!["/login?next=%2Fadmin%2Fqueue"])
    );
    let (status, _) = get(port, "/login?next=%2Fread", None);
    assert_eq!(status, 200, "the sign-in page itself is open");
    let (_, form) = get(port, "/login?next=%2Fread%3Ff%3DINBOX", None);
    assert!(
        form.contains("name=\"next\" value=\"/read?f=INBOX\""),
        "{form}"
    );
    for (next, to) in [
        ("%2Fread%3Ff%3DINBOX%26uid%3D1", "/read?f=INBOX&uid=1"),
        ("https%3A%2F%2Fevil.example%2F", "/"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
    ] {
        let (status, resp) = post_form(
            port,
            "/api/login",
            &format!("address=alice%40example.test&password=correct+horse+battery&next={next}"),
            &format!("Origin: http://127.0.0.1:{port}\r\n"),
        );
        assert_eq!(status, 302, "{resp}");
        assert_eq!(header(&resp, "location"), [to], "next={next}");
    }
    let (status, resp) = post_form(
        port,
        "/api/login",
        "address=alice%40example.test&password=wrong&next=%2Funified",
        &format!("Origin: http://127.0.0.1:{port}\r\n"),
    );
    assert_eq!(status, 302, "{resp}");
    assert_eq!(
        header(&resp, "location"),
        ["/login?error=invalid&next=%2Funified"],
        "a failed try keeps where to go"
    );

    // SIGTERM stops it cleanly.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "tern did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DESIGN.md rule 2: while the database refuses connections `/healthz`
/// says 503, and it recovers without a restart when the database returns.
#[test]
fn healthz_follows_the_database() {
    let Some(pg) = PgDb::create("health") else {
        return;
    };
    let url = pg.url.clone();
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start_server(d.path(), port, Some(&url));
    assert_eq!(get(port, "/healthz", None).0, 200);

    pg.cut_off();
    let (status, body) = get(port, "/healthz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.ends_with("database unavailable\n"));
    // A page that needs the store says so with a 503, not a broken 200.
    let bogus = format!("tern_session={}", "0".repeat(64));
    for path in [
        "/",
        "/mail?f=INBOX",
        "/read?f=INBOX&uid=1",
        "/compose",
        "/folders",
    ] {
        let (status, page) = get(port, path, Some(&bogus));
        assert_eq!(status, 503, "{path}: {page}");
        assert!(
            page.contains("The mail store is unavailable right now.")
                && page.contains("Your mail is safe"),
            "{path}: {page}"
        );
    }

    pg.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/healthz", None).0 != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `tern domain dns D --check` asks DNS (here a DNS server on 127.0.0.1)
/// for every record the domain needs and says which are published as
/// needed, which are missing and which differ.
#[tokio::test(flavor = "multi_thread")]
async fn the_dns_helper_checks_what_is_published() {
    use hickory_resolver::proto::rr::rdata::MX;
    use hickory_resolver::proto::rr::{Name, RData};
    let dir = tempfile::tempdir().unwrap();
    let tern = |args: &[&str], ns: &str| {
        common::cli_with(
            dir.path(),
            &[
                ("TERN_HOSTNAME", "mx.example.test"),
                ("TERN_SMTP__NAMESERVER", ns),
            ],
            args,
        )
    };
    tern(&["domain", "add", "example.test"], "");
    let keys = tern(&["domain", "dkim", "example.test"], "");
    // The Ed25519 key's record, as the CLI prints it.
    let ed = keys
        .lines()
        .find(|l| l.contains("k=ed25519"))
        .unwrap()
        .trim()
        .to_owned();
    let (ed_name, ed_value) = ed.split_once(" TXT ").unwrap();
    let dns = common::fakedns::FakeDns::start();
    dns.add(
        "example.test",
        RData::MX(MX::new(10, Name::from_ascii("mx.example.test.").unwrap())),
    );
    dns.txt("example.test", "v=spf1 include:elsewhere.test -all");
    dns.txt("example.test", "google-site-verification=abc");
    dns.txt(ed_name, ed_value.trim_matches('"'));
    let out = tern(&["domain", "dns", "example.test", "--check"], &dns.addr());
    let state = |starts: &str| -> String {
        let mut lines = out.lines();
        while let Some(l) = lines.next() {
            if l.starts_with(starts) {
                return lines.next().unwrap_or("").to_owned();
            }
        }
        panic!("{starts} not listed: {out}");
    };
    assert!(state("example.test. 3600 IN MX").ends_with(": ok"), "{out}");
    assert!(
        state("example.test. 3600 IN TXT \"v=spf1")
            .ends_with(": differs: v=spf1 include:elsewhere.test -all"),
        "{out}"
    );
    assert!(state(ed_name).ends_with(": ok"), "{out}");
    assert!(
        state("_dmarc.example.test.").ends_with(": missing"),
        "{out}"
    );
    assert!(
        state("_imaps._tcp.example.test.").ends_with(": missing"),
        "{out}"
    );
}

/// The admin domain page does the same live check on request ("Check
/// what DNS publishes now"), against the server's DNS (`smtp.nameserver`).
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_page_checks_the_records_live() {
    use hickory_resolver::proto::rr::rdata::MX;
    use hickory_resolver::proto::rr::{Name, RData};
    let dns = common::fakedns::FakeDns::start();
    dns.add(
        "example.test",
        RData::MX(MX::new(10, Name::from_ascii("mx.example.test.").unwrap())),
    );
    dns.txt("example.test", "v=spf1 a -all");
    let t = common::start(&[("TERN_SMTP__NAMESERVER", &dns.addr())]);
    common::cli_db(
        t.dir.path(),
        None,
        &["user", "add", "root@example.test", "--role", "admin"],
        &format!("{}\n", common::PW),
    );
    let cookie = common::web_login(t.web, "root@example.test", common::PW).expect("signed in");
    let (st, page) = common::http_get(t.web, "/admin/domain?d=example.test", Some(&cookie));
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("Check what DNS publishes now"), "{page}");
    assert!(!page.contains("[ok]"), "no lookups unless asked: {page}");
    let (st, page) = common::http_get(t.web, "/admin/domain?d=example.test&check=1", Some(&cookie));
    assert_eq!(st, 200, "{page}");
    assert!(
        page.contains("other servers deliver mail for the domain here [ok]\nexample.test. 3600 IN MX 10 mx.example.test."),
        "{page}"
    );
    assert!(
        page.contains("[differs: v=spf1 a -all]\nexample.test. 3600 IN TXT \"v=spf1 mx -all\""),
        "{page}"
    );
    assert!(page.contains("report to postmaster [missing]"), "{page}");
}

/// `tern export` and `tern import`: a folder out as mboxrd (read back by
/// Python's mailbox module, an independent parser) and into another
/// account byte for byte; a second import adds nothing (by Message-ID);
/// the whole account goes out as one file per folder.
#[tokio::test(flavor = "multi_thread")]
async fn export_and_import_mbox_round_trip() {
    let t = common::start(&[]);
    let msgs: Vec<Vec<u8>> = (1..=3)
        .map(|i| {
            format!(
                "From: carol@far.example\r\nTo: alice@example.test\r\nSubject: mbox {i}\r\n\
                 Message-ID: <mbox{i}@far.example>\r\nDate: Sun, 6 Dec 2026 1{i}:00:00 +0000\r\n\r\n\
                 Line one.\r\nFrom the start of a line.\r\n>From quoted already.\r\n"
            )
            .into_bytes()
        })
        .collect();
    for m in &msgs {
        t.deliver("alice@example.test", m).await;
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("inbox.mbox");
    let f = file.display().to_string();
    let said = common::cli_out(
        t.dir.path(),
        &["export", "alice@example.test", &f, "--folder", "INBOX"],
    );
    assert!(said.starts_with("INBOX\t3 messages\t"), "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.matches("\nFrom - ").count() + usize::from(text.starts_with("From - ")),
        3
    );
    assert!(
        text.contains("\n>From the start of a line.\n>>From quoted already.\n"),
        "{text}"
    );
    assert!(!text.contains('\r'));
    common::run_python(&format!(
        r#"
import mailbox
box = mailbox.mbox({f:?})
subjects = [m["Subject"] for m in box]
assert subjects == ["mbox 1", "mbox 2", "mbox 3"], subjects
assert [m["Message-ID"] for m in box][0] == "<mbox1@far.example>"
"#
    ));

    let said = common::cli_out(
        t.dir.path(),
        &["import", "bob@example.test", &f, "--folder", "Imported"],
    );
    assert_eq!(said.trim(), "Imported\t3 added\t0 already there");
    let got = t.folder("bob@example.test", "Imported").await;
    assert_eq!(got, msgs, "byte for byte");
    let said = common::cli_out(
        t.dir.path(),
        &["import", "bob@example.test", &f, "--folder", "Imported"],
    );
    assert_eq!(said.trim(), "Imported\t0 added\t3 already there");
    assert_eq!(t.folder("bob@example.test", "Imported").await.len(), 3);

    let dir = out.path().join("all");
    let d = dir.display().to_string();
    let said = common::cli_out(t.dir.path(), &["export", "alice@example.test", &d]);
    assert!(said.contains("INBOX\t3 messages"), "{said}");
    assert!(said.contains("Sent\t0 messages"), "{said}");
    assert!(dir.join("INBOX.mbox").exists() && dir.join("Trash.mbox").exists());
}

/// Maildir in a zip: the whole account from `tern export --maildir` and
/// from the webmail (Maildir++: INBOX at the top, `.Work.Q1/` below), and
/// one folder; Python's zipfile checks the archive and its mailbox module,
/// an independent reader, reads the maildirs with their flags.
#[tokio::test(flavor = "multi_thread")]
async fn export_maildir_zip_reads_back_in_python() {
    let t = common::start(&[]);
    for i in 1..=3 {
        t.deliver(
            "alice@example.test",
            format!("From: carol@far.example\r\nSubject: md {i}\r\nMessage-ID: <md{i}@far.example>\r\n\r\nBody {i}.\r\n").as_bytes(),
        )
        .await;
    }
    let core = t.core().await;
    let a = core.account("alice@example.test").await.unwrap().unwrap();
    let mail = core.mail(a.id);
    mail.create_mailbox("Work/Q1", mailcore::NewMailbox::Subscribed)
        .await
        .unwrap();
    let inbox = mail.open("INBOX").await.unwrap();
    let (list, _) = inbox
        .list(0, 10, mailcore::SortOrder::UidAsc)
        .await
        .unwrap();
    inbox
        .store_flags(
            &[list[0].uid],
            mailcore::messages::FlagOp::Add,
            &mailcore::messages::FlagSet::system(
                mailcore::Flags::SEEN.union(mailcore::Flags::FLAGGED),
            ),
        )
        .await
        .unwrap();
    let work = mail.open("Work/Q1").await.unwrap();
    inbox.copy_to(&[list[2].uid], &work).await.unwrap();
    core.close().await;

    let out = tempfile::tempdir().unwrap();
    let zip = out.path().join("all.zip");
    let z = zip.display().to_string();
    let said = common::cli_out(
        t.dir.path(),
        &["export", "alice@example.test", &z, "--maildir"],
    );
    assert!(said.ends_with("\t4 messages\n"), "{said}");
    let cookie = common::web_login(t.web, "alice@example.test", common::PW).unwrap();
    let web_zip = out.path().join("web.zip");
    let one_zip = out.path().join("one.zip");
    for (path, q) in [
        (&web_zip, "format=maildir"),
        (&one_zip, "f=Work%2FQ1&format=maildir"),
    ] {
        let o = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                &path.display().to_string(),
                "-w",
                "%{http_code} %{content_type}",
                "-H",
                &format!("Cookie: {cookie}"),
            ])
            .arg(format!("http://127.0.0.1:{}/mail/export?{q}", t.web))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "200 application/zip");
    }
    common::run_python(&format!(
        r#"
import mailbox, os, tempfile, zipfile
for path in ({z:?}, {w:?}):
    zf = zipfile.ZipFile(path)
    assert zf.testzip() is None
    d = tempfile.mkdtemp()
    zf.extractall(d)
    md = mailbox.Maildir(d, create=False)
    subjects = sorted(m["Subject"] for m in md)
    assert subjects == ["md 1", "md 2", "md 3"], subjects
    flagged = [m for m in md if m["Subject"] == "md 1"][0]
    assert flagged.get_flags() == "FS", flagged.get_flags()
    assert "Work.Q1" in md.list_folders(), md.list_folders()
    sub = md.get_folder("Work.Q1")
    assert [m["Subject"] for m in sub] == ["md 3"]
    assert "Sent" in md.list_folders()
one = zipfile.ZipFile({o:?})
names = one.namelist()
assert names[:3] == ["cur/", "new/", "tmp/"], names
assert len(names) == 4 and names[3].startswith("cur/") and names[3].endswith(":2,"), names
"#,
        z = z,
        w = web_zip.display().to_string(),
        o = one_zip.display().to_string()
    ));
}

/// `tern backup` while the server runs, `tern restore` into a fresh data
/// dir (store, secrets key, TLS files), and a server there serves the mail
/// over IMAP. A backup goes only into a new directory, and a restore only
/// into a data dir without a store.
#[tokio::test(flavor = "multi_thread")]
async fn backup_while_running_restore_elsewhere_and_read_over_imap() {
    let t = common::start(&[]);
    t.deliver(
        "alice@example.test",
        b"From: carol@far.example\r\nTo: alice@example.test\r\nSubject: kept safe\r\n\r\nin the backup\r\n",
    )
    .await;
    let b = tempfile::tempdir().unwrap();
    let bdir = b.path().join("backup-1");
    let bd = bdir.display().to_string();
    let said = common::cli_out(t.dir.path(), &["backup", &bd]);
    assert!(
        said.contains(&format!("store\t{}", bdir.join("tern.db").display())),
        "{said}"
    );
    assert!(said.contains("copied\toutside.key"), "{said}");
    assert!(bdir.join("tern.db").is_file());
    let again = tern(t.dir.path(), &["backup", &bd], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let fresh = tempfile::tempdir().unwrap();
    let said = common::cli_out(fresh.path(), &["restore", &bd]);
    assert!(
        said.contains("restored\ttern.db") && said.contains("restored\toutside.key"),
        "{said}"
    );
    let twice = tern(fresh.path(), &["restore", &bd], None);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already has a store"));
    // The restored store opens, with the domain and its DKIM keys.
    let keys = common::cli_out(fresh.path(), &["domain", "dkim", "example.test"]);
    assert!(keys.contains("k=ed25519"), "{keys}");

    let r = common::start_existing(fresh, &[]);
    let cert = r.cert();
    common::run_python(&format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
M.login("alice@example.test", {pw:?})
typ, data = M.select("INBOX")
assert data == [b"1"], data
typ, data = M.fetch("1", "(BODY.PEEK[])")
assert b"Subject: kept safe" in data[0][1] and b"in the backup" in data[0][1], data
M.logout()
"#,
        cert = cert.display().to_string(),
        imaps = r.imaps,
        pw = common::PW,
    ));
}

/// `tern setup DOMAIN` with flags, as a script would run it: a config
/// `tern serve` loads (production ports, relay on), the domain and its
/// admin, the DNS records to publish, and a systemd unit that
/// `systemd-analyze verify` accepts, with the hardening the issue names.
/// A second run does not overwrite the config; a server started on the
/// data dir signs the admin in.
#[tokio::test(flavor = "multi_thread")]
async fn setup_writes_a_config_a_unit_and_the_dns_records() {
    let bin = env!("CARGO_BIN_EXE_tern");
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let conf = root.path().join("etc/tern.toml");
    let unit = root.path().join("tern.service");
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(bin);
        c.arg("--config")
            .arg(&conf)
            .args([
                "setup",
                "example.org",
                "--admin",
                "boss@example.org",
                "--data-dir",
            ])
            .arg(data.path())
            .arg("--unit")
            .arg(&unit)
            .args(extra)
            .env_remove("TERN_DATA_DIR")
            .env_remove("TERN_DATABASE__URL")
            .current_dir(root.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", common::PW).as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run(&[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("added domain example.org\nadded boss@example.org (admin)\n"),
        "{out}"
    );
    assert!(
        out.contains("example.org. 3600 IN MX 10 mail.example.org.\n"),
        "{out}"
    );
    assert!(
        out.contains("_domainkey.example.org. 3600 IN TXT \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    assert!(out.contains("_dmarc.example.org. 3600 IN TXT"), "{out}");
    assert!(
        out.contains("_submissions._tcp.example.org. 3600 IN SRV 0 1 465 mail.example.org."),
        "{out}"
    );
    assert!(out.contains("systemctl enable --now tern"), "{out}");

    let config = std::fs::read_to_string(&conf).unwrap();
    for line in [
        "hostname = \"mail.example.org\"",
        &format!("data_dir = \"{}\"", data.path().display()),
        "smtp = \"0.0.0.0:25\"",
        "submission = \"0.0.0.0:587\"",
        "imaps = \"0.0.0.0:993\"",
        "managesieve = \"0.0.0.0:4190\"",
        "listen_tls = \"0.0.0.0:443\"",
        "enabled = true",
    ] {
        assert!(config.contains(line), "{line} in {config}");
    }
    let u = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "User=tern",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        &format!("ReadWritePaths={}", data.path().display()),
        &format!(
            "ExecStart={} --config {} serve",
            std::fs::canonicalize(bin).unwrap().display(),
            conf.display()
        ),
    ] {
        assert!(u.contains(line), "{line} in {u}");
    }
    let v = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    // The config is not replaced without --force.
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists; add --force"));
    // With --force it is rewritten (here for ACME); the admin stays.
    let forced = run(&["--force", "--acme"]);
    let out = String::from_utf8_lossy(&forced.stdout);
    assert!(forced.status.success(), "{out}");
    assert!(
        out.contains("domain example.org is already set up\nboss@example.org exists"),
        "{out}"
    );
    let config = std::fs::read_to_string(&conf).unwrap();
    assert!(
        config.contains("acme = true\nacme_email = \"boss@example.org\"\n"),
        "{config}"
    );

    // The admin is an admin, and signs in on a server over that data dir.
    let list = std::process::Command::new(bin)
        .arg("--config")
        .arg(&conf)
        .args(["user", "list"])
        .env_remove("TERN_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("boss@example.org\tadmin"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    let t = common::start_existing(data, &[]);
    let cookie =
        common::web_login(t.web, "boss@example.org", common::PW).expect("the admin signs in");
    let (st, page) = common::http_get(t.web, "/admin", Some(&cookie));
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("example.org"), "{page}");
}

/// An upgrade never loses mail: a store the previous migration set made
/// (`tests/fixtures/upgrade-000028`, written by that build's own CLI) is
/// restored, migrated forward by `tern serve`, and read back: the mail
/// over IMAP byte for byte with its flags, both folders, the passwords,
/// the alias, and the DKIM keys sealed with the old secrets key.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_store_upgrades_without_losing_mail() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-000028");
    let data = tempfile::tempdir().unwrap();
    // Restored into a copy: the fixture itself never changes.
    let src = tempfile::tempdir().unwrap();
    for f in ["tern.db", "outside.key"] {
        std::fs::copy(fixture.join(f), src.path().join(f)).unwrap();
    }
    let said = common::cli_out(data.path(), &["restore", &src.path().display().to_string()]);
    assert!(said.contains("restored\ttern.db"), "{said}");
    let keys = common::cli_out(data.path(), &["domain", "dkim", "example.test"]);
    assert!(
        keys.contains("k=ed25519") && keys.contains("k=rsa"),
        "{keys}"
    );
    let t = common::start_existing(data, &[]);
    let mbox = std::fs::read(fixture.join("made-from.mbox")).unwrap();
    assert!(!mbox.is_empty());
    common::run_python(&format!(
        r#"
import imaplib, ssl, smtplib
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
M.login("alice@example.test", {pw:?})
for folder in ("INBOX", "Work"):
    typ, data = M.select(folder)
    assert data == [b"2"], (folder, data)
    typ, data = M.fetch("1:2", "(FLAGS BODY.PEEK[])")
    one, two = data[0], data[2]
    assert b"Subject: Before the upgrade 1\r\n" in one[1], one
    assert b"\r\n\r\nKept through the upgrade, number one.\r\n" in one[1], one
    assert b"\\Seen" not in one[0] and b"\\Seen" in two[0], (one[0], two[0])
M.logout()
B = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
B.login("bob@example.test", {pw:?})
B.logout()
with smtplib.SMTP("127.0.0.1", {mx}) as s:
    s.sendmail("carol@far.example", ["sales@example.test"], "Subject: After the upgrade\r\n\r\nvia the alias\r\n")
"#,
        cert = t.cert().display().to_string(),
        imaps = t.imaps,
        mx = t.mx,
        pw = common::PW,
    ));
    let inbox = t.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 3);
    assert!(String::from_utf8_lossy(&inbox[2]).contains("Subject: After the upgrade"));
}
