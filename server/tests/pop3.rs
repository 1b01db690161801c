//! POP3 over real sockets against the built binary (RFC 1939, 2449, 2595,
//! 3206, 5034), with Python's poplib and curl as independent clients.

mod common;

use std::process::Command;

use common::*;
use mailcore::{Flags, SortOrder};

const M1: &[u8] = b"Subject: one\r\n\r\nfirst\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\n.dot first\r\n.\r\nbare\n.\nend\r\n";
const M3: &[u8] = b"Subject: three\r\n\r\nthird\r\nline 2\r\nline 3\r\n";

async fn with_mail() -> Tern {
    let t = start(&[]);
    for m in [M1, M2, M3] {
        t.deliver("alice@example.test", m).await;
    }
    t
}

async fn inbox_uids(t: &Tern) -> Vec<(i64, Flags)> {
    let core = t.core().await;
    let a = core.account("alice@example.test").await.unwrap().unwrap();
    let ib = core.mail(a.id).open("INBOX").await.unwrap();
    let (m, _) = ib.list(0, 100, SortOrder::UidAsc).await.unwrap();
    m.into_iter().map(|m| (m.uid.get(), m.flags)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_session_over_stls() {
    let t = with_mail().await;
    let v = t.core().await;
    let a = v.account("alice@example.test").await.unwrap().unwrap();
    let uv = v.mail(a.id).open("INBOX").await.unwrap().head().uidvalidity;

    let (mut c, greet) = Client::connect(t.pop3);
    assert!(greet.starts_with("+OK"), "{greet}");
    c.send(b"CAPA\r\n");
    assert!(c.line().starts_with("+OK"));
    let caps = String::from_utf8(c.until_dot()).unwrap();
    assert!(
        caps.contains("STLS\r\n") && !caps.contains("USER\r\n"),
        "{caps}"
    );
    assert_eq!(
        c.pop("USER alice@example.test"),
        "-ERR [AUTH] Plaintext authentication is not allowed before STLS\r\n"
    );
    assert!(c.pop("STAT").starts_with("-ERR"));
    // STLS with a command pipelined behind it in clear text.
    c.send(b"STLS\r\nUSER alice@example.test\r\n");
    assert_eq!(c.line(), "+OK Begin TLS negotiation\r\n");
    let mut c = c.starttls(&t.cert());
    assert_eq!(
        c.pop("PASS correct horse battery"),
        "-ERR USER first\r\n",
        "the injected USER was dropped"
    );
    c.send(b"CAPA\r\n");
    c.line();
    let caps = String::from_utf8(c.until_dot()).unwrap();
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN",
        "RESP-CODES",
        "PIPELINING",
        "EXPIRE NEVER",
        "IMPLEMENTATION Tern",
    ] {
        assert!(caps.contains(&format!("{cap}\r\n")), "{cap} in {caps}");
    }
    assert!(!caps.contains("STLS"));
    c.pop("USER alice@example.test");
    assert_eq!(
        c.pop("PASS wrong password"),
        "-ERR [AUTH] Invalid credentials\r\n"
    );
    c.pop("USER alice@example.test");
    assert_eq!(
        c.pop("PASS correct horse battery"),
        "+OK Maildrop ready, 3 messages\r\n"
    );

    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(c.pop("STAT"), format!("+OK 3 {total}\r\n"));
    assert_eq!(
        c.pop("LIST"),
        format!("+OK 3 messages ({total} octets)\r\n")
    );
    assert_eq!(
        c.until_dot(),
        format!(
            "1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
            M1.len(),
            M2.len(),
            M3.len()
        )
        .into_bytes()
    );
    assert_eq!(c.pop("UIDL"), "+OK\r\n");
    assert_eq!(
        c.until_dot(),
        format!("1 {uv}.1\r\n2 {uv}.2\r\n3 {uv}.3\r\n.\r\n").into_bytes()
    );
    assert_eq!(c.pop("UIDL 2"), format!("+OK 2 {uv}.2\r\n"));
    assert_eq!(c.pop("TOP 3 1"), "+OK Top follows\r\n");
    assert_eq!(c.until_dot(), b"Subject: three\r\n\r\nthird\r\n.\r\n");
    assert_eq!(c.pop("RETR 2"), format!("+OK {} octets\r\n", M2.len()));
    // Byte-stuffed exactly; bare LFs become CRLF so ".\n" cannot end it.
    assert_eq!(
        c.until_dot(),
        b"Subject: two\r\n\r\n..dot first\r\n..\r\nbare\r\n..\r\nend\r\n.\r\n"
    );
    assert_eq!(c.pop("RETR 9"), "-ERR No such message\r\n");
    assert_eq!(c.pop("DELE 1"), "+OK Message 1 marked for deletion\r\n");
    assert_eq!(c.pop("STAT"), format!("+OK 2 {}\r\n", M2.len() + M3.len()));
    assert_eq!(c.pop("LIST 1"), "-ERR No such message\r\n");
    assert_eq!(c.pop("RSET"), "+OK\r\n");
    assert!(c.pop("LIST 1").starts_with("+OK 1 "));
    c.pop("DELE 1");

    // A second session on the same maildrop is refused while this one lives.
    let (mut d, _) = Client::connect_tls(t.pop3s, &t.cert());
    d.pop("USER alice@example.test");
    assert_eq!(
        d.pop("PASS correct horse battery"),
        "-ERR [IN-USE] Maildrop is locked by another POP3 session\r\n"
    );

    assert_eq!(c.pop("QUIT"), "+OK Bye, 1 message deleted\r\n");
    let left = inbox_uids(&t).await;
    assert_eq!(
        left.iter().map(|x| x.0).collect::<Vec<_>>(),
        [2, 3],
        "deleted at QUIT, seen by the core"
    );
    assert!(left[0].1.contains(Flags::SEEN), "RETR marks seen");

    // Reconnect over 995 with AUTH PLAIN: the UIDLs are unchanged, and a
    // dropped connection deletes nothing.
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD
        .encode("\0alice@example.test\0correct horse battery");
    assert_eq!(
        d.pop(&format!("AUTH PLAIN {plain}")),
        "+OK Maildrop ready, 2 messages\r\n"
    );
    d.pop("UIDL");
    assert_eq!(
        d.until_dot(),
        format!("1 {uv}.2\r\n2 {uv}.3\r\n.\r\n").into_bytes()
    );
    assert!(d.pop("DELE 1").starts_with("+OK"));
    drop(d);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(inbox_uids(&t).await.len(), 2, "no QUIT, no deletion");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_clients_change_the_mailbox_during_a_session() {
    let t = with_mail().await;
    let (mut c, _) = Client::connect_tls(t.pop3s, &t.cert());
    c.pop("USER alice@example.test");
    c.pop("PASS correct horse battery");
    assert!(c.pop("LIST").starts_with("+OK 3 messages"));
    let listing = c.until_dot();
    // A real IMAP client (Python's imaplib) expunges message 2 and flags
    // message 3 while the POP3 session is open.
    let cert = t.cert().display().to_string();
    common::run_python(&format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
M.login("alice@example.test", "correct horse battery")
typ, data = M.select("INBOX")
assert data == [b"3"], data
assert M.uid("STORE", "2", "+FLAGS", "(\\Deleted)")[0] == "OK"
typ, data = M.expunge()
assert data == [b"2"], data
assert M.uid("STORE", "3", "+FLAGS", "(\\Flagged)")[0] == "OK"
M.logout()
"#,
        port = t.imaps
    ));
    // The POP3 view keeps its numbering and listing; the vanished message
    // says so, the flagged one is still there.
    assert!(c.pop("LIST").starts_with("+OK 3 messages"));
    assert_eq!(c.until_dot(), listing);
    assert_eq!(
        c.pop("RETR 2"),
        "-ERR Message was removed by another client\r\n"
    );
    assert!(c.pop("RETR 3").starts_with("+OK"));
    c.until_dot();
    c.pop("DELE 2");
    c.pop("DELE 3");
    assert!(c.pop("QUIT").starts_with("+OK Bye"));
    // IMAP sees POP3's deletions after QUIT: only UID 1 is left.
    common::run_python(&format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
M.login("alice@example.test", "correct horse battery")
typ, data = M.select("INBOX")
assert data == [b"1"], data
typ, data = M.uid("SEARCH", None, "ALL")
assert data == [b"1"], data
M.logout()
"#,
        port = t.imaps
    ));
    assert_eq!(
        inbox_uids(&t).await.iter().map(|x| x.0).collect::<Vec<_>>(),
        [1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_poplib_and_curl() {
    let t = with_mail().await;
    // The acceptance path: mail that arrived over SMTP.
    let (mut s, _) = Client::connect(t.mx);
    s.cmd("EHLO sender.example");
    s.cmd("MAIL FROM:<x@sender.example>");
    s.cmd("RCPT TO:<alice@example.test>");
    s.cmd("DATA");
    s.send(b"Subject: via smtp\r\n\r\narrived over port 25\r\n");
    assert!(s.cmd(".").starts_with("250 "));
    let cert = t.cert().display().to_string();
    // curl first, read-only: list and fetch one message over pop3s.
    let url = format!("pop3s://localhost:{}/", t.pop3s);
    let resolve = format!("localhost:{}:127.0.0.1", t.pop3s);
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "--cacert",
                &cert,
                "--resolve",
                &resolve,
                "-u",
                "alice@example.test:correct horse battery",
            ])
            .arg(format!("{url}{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listing = curl("");
    let expect = format!("1 {}\r\n2 {}\r\n3 {}\r\n4 ", M1.len(), M2.len(), M3.len());
    assert!(listing.starts_with(&expect), "{listing}");
    assert_eq!(curl("1").as_bytes(), M1);

    let script = format!(
        r#"
import poplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
p = poplib.POP3_SSL("127.0.0.1", {pop3s}, context=ctx)
p.user("alice@example.test"); p.pass_("correct horse battery")
assert p.stat()[0] == 4, p.stat()
assert b"arrived over port 25" in p.retr(4)[1], "the SMTP-delivered message"
resp, lines, octets = p.retr(2)
assert lines == [b"Subject: two", b"", b".dot first", b".", b"bare", b".", b"end"], lines
uidl1 = p.uidl()[1]
p.dele(1); p.quit()
q = poplib.POP3("127.0.0.1", {pop3})
q.stls(context=ctx)
q.user("alice@example.test"); q.pass_("correct horse battery")
ids = lambda listing: [l.split()[1] for l in listing]
assert ids(q.uidl()[1]) == ids(uidl1[1:]), (q.uidl(), uidl1)
for i in range(1, q.stat()[0] + 1):
    q.retr(i); q.dele(i)
q.quit()
# The acceptance check: IMAP sees an empty INBOX.
import imaplib
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
M.login("alice@example.test", "correct horse battery")
typ, data = M.select("INBOX")
assert data == [b"0"], data
M.logout()
print("ok")
"#,
        pop3s = t.pop3s,
        pop3 = t.pop3,
        imaps = t.imaps,
    );
    run_python(&script);
    assert!(inbox_uids(&t).await.is_empty(), "poplib deleted everything");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_autologout() {
    let t = start(&[("TERN_POP3__AUTOLOGOUT_SECS", "1")]);
    let (mut c, _) = Client::connect(t.pop3);
    assert_eq!(
        c.pop(&format!("NOOP {}", "x".repeat(10_000))),
        "-ERR Line too long\r\n"
    );
    assert_eq!(c.pop("FROB"), "-ERR unknown command\r\n");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(c.line(), "-ERR Autologout: idle for too long\r\n");
}

/// DESIGN.md rule 2 for POP3: `-ERR [SYS/TEMP]` while the database is away.
#[tokio::test(flavor = "multi_thread")]
async fn database_loss_is_sys_temp() {
    let Some(pg) = PgDb::create("pop3") else {
        return;
    };
    let url = pg.url.clone();
    let t = start(&[("TERN_DATABASE__URL", &url)]);
    let (mut c, _) = Client::connect_tls(t.pop3s, &t.cert());
    pg.cut_off();
    c.pop("USER alice@example.test");
    assert_eq!(
        c.pop("PASS correct horse battery"),
        "-ERR [SYS/TEMP] Mail store temporarily unavailable, try again later\r\n"
    );
    pg.restore();
    c.pop("USER alice@example.test");
    assert_eq!(
        c.pop("PASS correct horse battery"),
        "+OK Maildrop ready, 0 messages\r\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_throttled() {
    let t = start(&[]);
    let (mut c, _) = Client::connect_tls(t.pop3s, &t.cert());
    for _ in 0..5 {
        c.pop("USER bob@example.test");
        assert_eq!(
            c.pop("PASS bad guess!"),
            "-ERR [AUTH] Invalid credentials\r\n"
        );
    }
    c.pop("USER bob@example.test");
    let r = c.pop("PASS correct horse battery");
    assert!(
        r.starts_with("-ERR [LOGIN-DELAY] Too many failed logins, retry in "),
        "{r}"
    );
}
