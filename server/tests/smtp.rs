//! SMTP over real sockets against the built binary: MX, submission with
//! STARTTLS, SMTPS, with the reply codes of RFC 5321, 3207 and 4954.

mod common;
mod fakemx;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use mailcore::{Core, CoreOptions};

fn code(reply: &str) -> &str {
    &reply[..reply.len().min(9)]
}

const MSG: &str = "From: Remote <r@remote.example>\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n..dot line\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn mx_delivers_locally_and_refuses_relay() {
    let t = start(&[]);
    let (mut c, greet) = Client::connect(t.mx);
    assert!(greet.starts_with("220 mx.example.test ESMTP"), "{greet}");
    let ehlo = c.cmd("EHLO client.remote.example");
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.contains(ext), "{ext} in {ehlo}");
    }
    assert!(!ehlo.contains("AUTH"), "no AUTH on MX: {ehlo}");
    assert_eq!(code(&c.cmd("AUTH PLAIN AGFAYgBj")), "502 5.5.1");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "503 5.5.1");
    assert_eq!(code(&c.cmd("MAIL FROM:<r@remote.example>")), "250 2.1.0");
    assert_eq!(code(&c.cmd("RCPT TO:<Alice@Example.test>")), "250 2.1.5");
    assert_eq!(code(&c.cmd("RCPT TO:<nobody@example.test>")), "550 5.1.1");
    assert_eq!(
        code(&c.cmd("RCPT TO:<victim@elsewhere.example>")),
        "554 5.7.1"
    );
    for trick in [
        "victim%elsewhere.example@example.test",
        "elsewhere.example!victim@example.test",
        "\"victim@elsewhere.example\"@example.test",
        "@example.test:victim@elsewhere.example",
    ] {
        assert_eq!(
            code(&c.cmd(&format!("RCPT TO:<{trick}>"))),
            "554 5.7.1",
            "{trick}"
        );
    }
    assert_eq!(code(&c.cmd("VRFY alice")), "252 2.5.0");
    assert_eq!(code(&c.cmd("EXPN team")), "502 5.5.1");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(MSG.as_bytes());
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    // Alias fan-out through a second transaction.
    c.cmd("MAIL FROM:<>");
    assert_eq!(code(&c.cmd("RCPT TO:<team@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: team\r\n\r\nfor the team\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    assert_eq!(code(&c.cmd("QUIT")), "221 2.0.0");

    let inbox = t.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 2);
    let first = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(first.starts_with("Delivered-To: alice@example.test\r\nReceived: from client.remote.example (127.0.0.1)\r\n\tby mx.example.test (Tern) with ESMTP;"), "{first}");
    assert!(
        first.ends_with(MSG.replace("..dot", ".dot").as_str()),
        "unstuffed, byte for byte: {first:?}"
    );
    assert_eq!(t.inbox("bob@example.test").await.len(), 1);
}

/// Each local copy names the address it was delivered for (issue 14):
/// a catchall's owner sees which address the sender used, an alias
/// member sees the alias, a subaddress keeps its tag; an account reached
/// twice in one transaction gets one copy, named by the first recipient.
#[tokio::test(flavor = "multi_thread")]
async fn each_local_copy_names_its_recipient() {
    let t = start(&[]);
    t.core()
        .await
        .set_catchall("example.test", Some("bob"))
        .await
        .unwrap();
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO client.remote.example");
    c.cmd("MAIL FROM:<r@remote.example>");
    assert_eq!(code(&c.cmd("RCPT TO:<Whoever@Example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: one\r\n\r\nfor a made-up address\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    c.cmd("MAIL FROM:<r@remote.example>");
    assert_eq!(
        code(&c.cmd("RCPT TO:<alice+news@example.test>")),
        "250 2.1.5"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<team@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: two\r\n\r\nfor a tag and an alias\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    c.cmd("QUIT");

    let first_line = |m: &[u8]| {
        let s = String::from_utf8_lossy(m).into_owned();
        s.split("\r\n").next().unwrap_or_default().to_owned()
    };
    let bob = t.inbox("bob@example.test").await;
    assert_eq!(bob.len(), 2);
    assert_eq!(first_line(&bob[0]), "Delivered-To: whoever@example.test");
    assert_eq!(first_line(&bob[1]), "Delivered-To: team@example.test");
    let alice = t.inbox("alice@example.test").await;
    assert_eq!(alice.len(), 1, "one copy for an account reached twice");
    assert_eq!(
        first_line(&alice[0]),
        "Delivered-To: alice+news@example.test"
    );
    // Exactly one such line, and the rest of the message as received.
    let text = String::from_utf8_lossy(&alice[0]).into_owned();
    assert_eq!(text.matches("Delivered-To:").count(), 1, "{text}");
    assert!(
        text.ends_with("Subject: two\r\n\r\nfor a tag and an alias\r\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_never_splits_a_message() {
    let t = start(&[]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO attacker.example");
    c.cmd("MAIL FROM:<a@attacker.example>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("DATA");
    // Each of these ends a message in some broken MTA; none may end it here.
    c.send(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<x@y.example>\r\nbare\r.\r\nlf\r\n.\nRCPT TO:<bob@example.test>\r\nend\r\n");
    let r = c.cmd(".");
    assert_eq!(code(&r), "250 2.0.0", "{r}");
    assert_eq!(
        code(&c.cmd("NOOP")),
        "250 2.0.0",
        "nothing smuggled is replayed as commands"
    );
    let inbox = t.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1, "exactly one message");
    let m = String::from_utf8_lossy(&inbox[0]);
    assert!(m.contains("body\n.\nMAIL FROM:<x@y.example>\r\nbare\r.\r\nlf\r\n.\nRCPT TO:<bob@example.test>\r\nend\r\n"), "{m:?}");
    assert!(t.inbox("bob@example.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_discards_pipelined_plaintext_and_resets() {
    let t = start(&[]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO client.example");
    // An attacker appends commands after STARTTLS in the same packet.
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n");
    assert_eq!(code(&c.reply()), "220 2.0.0");
    let mut c = c.starttls(&t.cert());
    // Had the injected MAIL survived, this would be "503 nested MAIL" or a
    // stray 250; the session must be fresh: no EHLO yet.
    assert_eq!(code(&c.cmd("MAIL FROM:<r@remote.example>")), "503 5.5.1");
    let ehlo = c.cmd("EHLO client.example");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(code(&c.cmd("STARTTLS")), "503 5.5.1");
    assert_eq!(code(&c.cmd("MAIL FROM:<r@remote.example>")), "250 2.1.0");
    c.cmd("RCPT TO:<bob@example.test>");
    c.cmd("DATA");
    c.send(b"Subject: tls\r\n\r\nsecret\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    let m = String::from_utf8(t.inbox("bob@example.test").await.remove(0)).unwrap();
    assert!(m.contains("with ESMTPS;"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn submission_requires_tls_then_auth_and_owned_senders() {
    let t = start(&[]);
    let (mut c, _) = Client::connect(t.sub);
    let ehlo = c.cmd("EHLO laptop");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(
        c.login_plain("alice@example.test", PW)
            .starts_with("538 5.7.11 ")
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<alice@example.test>")), "530 5.7.0");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    let mut c = c.starttls(&t.cert());
    let ehlo = c.cmd("EHLO laptop");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(
        code(&c.login_plain("alice@example.test", "wrong password")),
        "535 5.7.8"
    );
    assert_eq!(
        code(&c.login_plain("ghost@example.test", "wrong password")),
        "535 5.7.8",
        "same reply for unknown users"
    );
    assert_eq!(code(&c.login_plain("alice@example.test", PW)), "235 2.7.0");
    assert_eq!(code(&c.cmd("MAIL FROM:<bob@example.test>")), "553 5.7.1");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<team@example.test>")),
        "250 2.1.0",
        "an alias that reaches alice is hers"
    );
    c.cmd("RSET");
    assert_eq!(code(&c.cmd("MAIL FROM:<alice@example.test>")), "250 2.1.0");
    assert_eq!(
        code(&c.cmd("RCPT TO:<friend@elsewhere.example>")),
        "250 2.1.5",
        "authenticated relay is queued"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n");
    assert_eq!(code(&c.cmd(".")), "553 5.7.1", "From: must be hers too");
    c.cmd("MAIL FROM:<alice@example.test>");
    c.cmd("RCPT TO:<friend@elsewhere.example>");
    c.cmd("RCPT TO:<bob@example.test>");
    c.cmd("DATA");
    c.send(b"From: Alice <alice@example.test>\r\nSubject: real\r\n\r\nhello bob\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    let m = String::from_utf8(t.inbox("bob@example.test").await.remove(0)).unwrap();
    assert!(m.contains("with ESMTPSA;"), "{m}");
    assert!(
        m.contains("\r\nMessage-ID: <") && m.contains("\r\nDate: "),
        "added headers: {m}"
    );
    assert_eq!(t.queue_len().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn smtps_with_auth_login() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let t = start(&[]);
    let (mut c, greet) = Client::connect_tls(t.smtps, &t.cert());
    assert!(greet.starts_with("220 "));
    let ehlo = c.cmd("EHLO laptop");
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd(&b64("bob@example.test")), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(code(&c.cmd(&b64(PW))), "235 2.7.0");
    c.cmd("MAIL FROM:<bob@example.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("DATA");
    c.send(b"From: bob@example.test\r\nSubject: via 465\r\n\r\nhi\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    assert_eq!(t.inbox("alice@example.test").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_answer_with_their_codes() {
    let t = start(&[
        ("TERN_SMTP__MAX_CONNECTIONS_PER_IP", "3"),
        ("TERN_SMTP__MAX_RECIPIENTS", "2"),
        ("TERN_SMTP__MAX_MESSAGE_SIZE", "1000"),
        ("TERN_SMTP__MAX_ERRORS", "5"),
    ]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    let long = format!("NOOP {}", "x".repeat(20_000));
    assert_eq!(code(&c.cmd(&long)), "500 5.5.2");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<a@b.example> SIZE=5000")),
        "552 5.3.4"
    );
    c.cmd("MAIL FROM:<a@b.example>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("RCPT TO:<bob@example.test>");
    assert_eq!(code(&c.cmd("RCPT TO:<team@example.test>")), "452 4.5.3");
    c.cmd("DATA");
    c.send(format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(2000)).as_bytes());
    assert_eq!(code(&c.cmd(".")), "552 5.3.4");
    assert!(
        t.inbox("alice@example.test").await.is_empty(),
        "nothing stored"
    );

    // Connections per IP: three are admitted (this one included), the
    // fourth is told why.
    let (_c2, _) = Client::connect(t.mx);
    let (_c3, _) = Client::connect(t.mx);
    let (_, refused) = Client::connect(t.mx);
    assert_eq!(
        refused,
        "421 4.7.0 Too many connections from your address (limit 3), try again later\r\n"
    );

    // Errors: one so far (the 500; a 552 or 452 is an answer, not a
    // protocol error); after the fifth the server says goodbye.
    for _ in 0..3 {
        assert_eq!(code(&c.cmd("BOGUS")), "500 5.5.1");
    }
    let last = c.cmd("BOGUS");
    assert_eq!(last, "500 5.5.1 Command not recognized\r\n");
    assert_eq!(
        c.reply(),
        "421 4.7.0 Too many errors (limit 5), closing\r\n"
    );
}

/// The error limit counts protocol errors only, and a delivered message
/// resets it: one good recipient among many stale ones still gets the
/// mail. RCPT parameters nobody offered get 555 (RFC 5321 §4.1.1.11).
#[tokio::test(flavor = "multi_thread")]
async fn recipient_refusals_do_not_count_as_errors() {
    let t = start(&[("TERN_SMTP__MAX_ERRORS", "3")]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@b.example>")), "250 2.1.0");
    for i in 0..20 {
        assert_eq!(
            code(&c.cmd(&format!("RCPT TO:<gone{i}@example.test>"))),
            "550 5.1.1"
        );
    }
    assert_eq!(
        code(&c.cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")),
        "555 5.5.4",
        "no DSN extension is offered"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: one good recipient\r\n\r\nx\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    // Two protocol errors, then the delivered message above reset the
    // count: two more are still allowed before the limit of three.
    assert_eq!(code(&c.cmd("BOGUS")), "500 5.5.1");
    assert_eq!(code(&c.cmd("BOGUS")), "500 5.5.1");
    assert_eq!(code(&c.cmd("MAIL FROM:<a@b.example>")), "250 2.1.0");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: second\r\n\r\nx\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    assert_eq!(code(&c.cmd("BOGUS")), "500 5.5.1");
    assert_eq!(code(&c.cmd("BOGUS")), "500 5.5.1");
    assert_eq!(
        code(&c.cmd("NOOP")),
        "250 2.0.0",
        "still open after the reset"
    );
    let _ = c.cmd("BOGUS");
    assert_eq!(
        c.reply(),
        "421 4.7.0 Too many errors (limit 3), closing\r\n"
    );
    let inbox = t.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 2);
    assert!(t.inbox("bob@example.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_smtplib_as_a_client() {
    let t = start(&[]);
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
with smtplib.SMTP("127.0.0.1", {mx}) as s:
    s.starttls(context=ctx)
    s.sendmail("r@remote.example", ["alice@example.test"], "Subject: py mx\r\n\r\nvia 25\r\n")
with smtplib.SMTP("127.0.0.1", {sub}) as s:
    s.starttls(context=ctx)
    s.login("alice@example.test", {pw:?})
    s.sendmail("alice@example.test", ["bob@example.test"], "From: alice@example.test\r\nSubject: py sub\r\n\r\nvia 587\r\n")
with smtplib.SMTP_SSL("127.0.0.1", {smtps}, context=ctx) as s:
    s.login("bob@example.test", {pw:?})
    s.sendmail("bob@example.test", ["alice@example.test"], "From: bob@example.test\r\nSubject: py smtps\r\n\r\nvia 465\r\n")
    try:
        s.sendmail("bob@example.test", ["alice@example.test"], "From: alice@example.test\r\nSubject: forged\r\n\r\nx\r\n")
        raise SystemExit("forged From was accepted")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 553, e
print("ok")
"#,
        cert = t.cert().display().to_string(),
        mx = t.mx,
        sub = t.sub,
        smtps = t.smtps,
        pw = PW,
    );
    run_python(&script);
    let alice: Vec<String> = t
        .inbox("alice@example.test")
        .await
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect();
    assert_eq!(alice.len(), 2);
    assert!(alice[0].contains("Subject: py mx") && alice[1].contains("Subject: py smtps"));
    assert!(t.inbox("bob@example.test").await[0].ends_with(b"Subject: py sub\r\n\r\nvia 587\r\n"));
}

/// DESIGN.md rule 2: with the database gone, mail keeps arriving. RCPT is
/// answered from the node's routing copy (a known address: `250`; one the
/// copy does not know: `451 4.3.0`, never a `550` from a copy that may be
/// stale), the message goes into the spool with a `250`, and once the
/// database is back it reaches the INBOX with no restart. IMAP meanwhile
/// answers `NO [UNAVAILABLE]`.
#[tokio::test(flavor = "multi_thread")]
async fn database_loss_spools_and_drains() {
    let Some(pg) = PgDb::create("smtp") else {
        return;
    };
    let url = pg.url.clone();
    let mut t = start(&[
        ("TERN_DATABASE__URL", &url),
        ("TERN_SPOOL__MAX_BYTES", "3000"),
    ]);
    // The routing copy is written once the node has read the directory.
    let copy = t.dir.path().join("spool/directory.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !copy.exists() {
        assert!(std::time::Instant::now() < deadline, "no routing copy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    assert_eq!(code(&c.cmd("MAIL FROM:<r@remote.example>")), "250 2.1.0");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: during outage\r\n\r\nx\r\n");

    pg.cut_off();
    assert_eq!(
        code(&c.cmd(".")),
        "250 2.0.0",
        "spooled while the store is down"
    );
    c.cmd("MAIL FROM:<r@remote.example>");
    assert_eq!(
        code(&c.cmd("RCPT TO:<nobody@example.test>")),
        "451 4.3.0",
        "unknown to the copy: try later, not 550"
    );
    assert_eq!(
        code(&c.cmd("RCPT TO:<team@example.test>")),
        "250 2.1.5",
        "an alias the copy knows"
    );
    c.cmd("DATA");
    c.send(b"Subject: to the team during outage\r\n\r\nx\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    // Past spool.max_bytes: 452 4.3.1, and nothing of it is kept.
    c.cmd("MAIL FROM:<r@remote.example>");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(format!("Subject: too much\r\n\r\n{}\r\n", "y".repeat(3000)).as_bytes());
    assert_eq!(code(&c.cmd(".")), "452 4.3.1");
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0", "the session stays sane");
    let out = std::process::Command::new(common::BIN)
        .args(["spool", "stats"])
        .env("TERN_DATA_DIR", t.dir.path())
        .env("TERN_DATABASE__URL", &url)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("records: 2"), "{out}");
    assert!(out.contains("store: unreachable"), "{out}");

    // A node restarted during the outage comes up (its routing copy is on
    // disk) and still takes mail.
    drop(c);
    t.restart();
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    assert_eq!(code(&c.cmd("MAIL FROM:<r@remote.example>")), "250 2.1.0");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: restarted during outage\r\n\r\nx\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");

    pg.restore();
    t.settle();
    c.cmd("RSET");
    c.cmd("MAIL FROM:<r@remote.example>");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
    c.cmd("DATA");
    c.send(b"Subject: after outage\r\n\r\ny\r\n");
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    drop(c);
    t.settle();
    drop(t);
    let core = Core::open(CoreOptions::new(url)).await.unwrap();
    let subjects = |who: &'static str| {
        let core = core.clone();
        async move {
            let a = core.account(who).await.unwrap().unwrap();
            let ib = core.mail(a.id).open("INBOX").await.unwrap();
            let (msgs, _) = ib.list(0, 10, mailcore::SortOrder::UidAsc).await.unwrap();
            msgs.into_iter().map(|m| m.subject).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        subjects("alice@example.test").await,
        [
            "during outage",
            "to the team during outage",
            "restarted during outage",
            "after outage"
        ]
    );
    assert_eq!(
        subjects("bob@example.test").await,
        ["to the team during outage"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_close_idle_and_half_open_connections() {
    let t = start(&[
        ("TERN_SMTP__COMMAND_TIMEOUT_SECS", "1"),
        ("TERN_SMTP__TLS_HANDSHAKE_TIMEOUT_SECS", "1"),
    ]);
    // An idle client is told why it is dropped (RFC 5321 §4.5.3.2).
    let (mut c, _) = Client::connect(t.mx);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.reply(),
        "421 4.4.2 Timeout waiting for a command, closing\r\n"
    );
    // Slow drip: a line that never ends is cut off at the same limit.
    let (mut c, _) = Client::connect(t.mx);
    c.send(b"EHL");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.reply().starts_with("421 4.4.2"));
    // A TLS client that never finishes its handshake is disconnected.
    let mut s = TcpStream::connect(("127.0.0.1", t.smtps)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let started = Instant::now();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without a byte");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_are_throttled_and_accounts_limited() {
    let t = start(&[("TERN_SMTP__MAX_CONNECTIONS_PER_ACCOUNT", "1")]);
    let (mut a, _) = Client::connect_tls(t.smtps, &t.cert());
    a.cmd("EHLO one");
    assert_eq!(code(&a.login_plain("alice@example.test", PW)), "235 2.7.0");
    // A second session of the same account is over its limit.
    let (mut b, _) = Client::connect_tls(t.smtps, &t.cert());
    b.cmd("EHLO two");
    let refused = b.login_plain("alice@example.test", PW);
    assert_eq!(
        refused,
        "421 4.7.0 Too many connections for this account (limit 1), try again later\r\n"
    );
    // Bob guesses wrong five times: the sixth try is refused even with the
    // right password, with a delay named.
    let (mut c, _) = Client::connect_tls(t.smtps, &t.cert());
    c.cmd("EHLO three");
    for _ in 0..5 {
        assert_eq!(
            code(&c.login_plain("bob@example.test", "bad guess!")),
            "535 5.7.8"
        );
    }
    let throttled = c.login_plain("bob@example.test", PW);
    assert!(
        throttled.starts_with("454 4.7.0 Too many failed logins, try again in "),
        "{throttled}"
    );
}

/// lettre, the client Tern's own relay will use, through all three
/// listeners: MX in plain and with STARTTLS, submission with STARTTLS and
/// AUTH, SMTPS with implicit TLS.
#[tokio::test(flavor = "multi_thread")]
async fn lettre_through_every_listener() {
    use lettre::message::Message;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let t = start(&[]);
    let pem = std::fs::read(t.cert()).unwrap();
    let tls = || {
        TlsParameters::builder("localhost".into())
            .add_root_certificate(Certificate::from_pem(&pem).unwrap())
            .build_rustls()
            .unwrap()
    };
    let mail = |from: &str, to: &str, subject: &str| {
        Message::builder()
            .from(from.parse().unwrap())
            .to(to.parse().unwrap())
            .subject(subject)
            .body(format!("sent by lettre: {subject}\r\n.leading dot\r\n"))
            .unwrap()
    };
    let send = |port: u16, mode: Tls, creds: Option<(&str, &str)>| {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(mode);
        if let Some((u, p)) = creds {
            b = b.credentials(Credentials::new(u.into(), p.into()));
        }
        b.build()
    };
    send(t.mx, Tls::None, None)
        .send(mail("r@remote.example", "alice@example.test", "mx plain"))
        .await
        .unwrap();
    send(t.mx, Tls::Required(tls()), None)
        .send(mail(
            "r@remote.example",
            "alice@example.test",
            "mx starttls",
        ))
        .await
        .unwrap();
    send(t.sub, Tls::Required(tls()), Some(("bob@example.test", PW)))
        .send(mail("bob@example.test", "alice@example.test", "submission"))
        .await
        .unwrap();
    send(t.smtps, Tls::Wrapper(tls()), Some(("bob@example.test", PW)))
        .send(mail("bob@example.test", "alice@example.test", "smtps"))
        .await
        .unwrap();
    // Relay without AUTH is refused with a permanent error.
    let err = send(t.mx, Tls::None, None)
        .send(mail(
            "r@remote.example",
            "victim@elsewhere.example",
            "relay",
        ))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("Relay access denied"), "{err}");

    let inbox: Vec<String> = t
        .inbox("alice@example.test")
        .await
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect();
    let subjects: Vec<bool> = ["mx plain", "mx starttls", "submission", "smtps"]
        .iter()
        .zip(&inbox)
        .map(|(s, m)| {
            m.contains(&format!("Subject: {s}\r\n")) && m.contains("\r\n.leading dot\r\n")
        })
        .collect();
    assert_eq!(subjects, [true; 4], "{inbox:#?}");
    assert!(inbox[1].contains("with ESMTPS;") && inbox[3].contains("with ESMTPSA;"));
}

/// RFC 3030 CHUNKING: binary chunks of exact length, no dot handling.
#[tokio::test(flavor = "multi_thread")]
async fn bdat_chunks_arrive_byte_for_byte() {
    let t = start(&[("TERN_SMTP__MAX_MESSAGE_SIZE", "200")]);
    let (mut c, _) = Client::connect(t.mx);
    assert!(c.cmd("EHLO x.example").contains("CHUNKING"));
    // Without a transaction the chunk is still consumed, not run as commands.
    c.send(b"BDAT 6\r\nNOOP\r\n");
    assert_eq!(code(&c.reply()), "503 5.5.1");
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0");
    c.cmd("MAIL FROM:<r@remote.example>");
    c.cmd("RCPT TO:<alice@example.test>");
    let part1 = b"Subject: chunks\r\n\r\n.leading dot\r\n";
    let part2 = b"\r\n.\r\nnot the end\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes());
    c.send(part1);
    assert_eq!(code(&c.reply()), "250 2.0.0");
    assert_eq!(code(&c.cmd("DATA")), "503 5.5.1", "no DATA after BDAT");
    c.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    c.send(part2);
    assert_eq!(code(&c.reply()), "250 2.0.0");
    let m = t.inbox("alice@example.test").await.remove(0);
    let mut want = part1.to_vec();
    want.extend_from_slice(part2);
    assert!(m.ends_with(&want), "{}", String::from_utf8_lossy(&m));
    // Over the size limit across chunks: 552 at LAST, nothing stored.
    c.cmd("MAIL FROM:<r@remote.example>");
    c.cmd("RCPT TO:<bob@example.test>");
    c.send(b"BDAT 150\r\n");
    c.send(&[b'a'; 150]);
    assert_eq!(code(&c.reply()), "250 2.0.0");
    c.send(b"BDAT 100 LAST\r\n");
    c.send(&[b'b'; 100]);
    assert_eq!(code(&c.reply()), "552 5.3.4");
    assert_eq!(code(&c.cmd("NOOP")), "250 2.0.0");
    assert!(t.inbox("bob@example.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn total_connection_limit_is_explained() {
    let t = start(&[
        ("TERN_SMTP__MAX_CONNECTIONS", "2"),
        ("TERN_SMTP__MAX_SUBMISSION_CONNECTIONS", "2"),
    ]);
    let (_a, _) = Client::connect(t.mx);
    let (_b, _) = Client::connect(t.mx);
    let (_, refused) = Client::connect(t.mx);
    assert_eq!(
        refused,
        "421 4.7.0 Server busy: too many connections in total (limit 2), try again later\r\n"
    );
    // Submission has its own pool: a flood on 25 does not lock users out.
    let (mut s, greet) = Client::connect(t.sub);
    assert!(greet.starts_with("220 "), "{greet}");
    s.cmd("EHLO laptop");
    assert!(s.cmd("STARTTLS").starts_with("220"));
    let mut s = s.starttls(&t.cert());
    s.cmd("EHLO laptop");
    assert_eq!(code(&s.login_plain("alice@example.test", PW)), "235 2.7.0");
    s.cmd("MAIL FROM:<alice@example.test>");
    s.cmd("RCPT TO:<bob@example.test>");
    s.cmd("DATA");
    s.send(b"From: alice@example.test\r\nSubject: during a flood\r\n\r\nhi\r\n");
    assert_eq!(code(&s.cmd(".")), "250 2.0.0");
    let (_s2, greet) = Client::connect_tls(t.smtps, &t.cert());
    assert!(greet.starts_with("220 "), "{greet}");
    let (_, refused) = Client::connect_tls(t.smtps, &t.cert());
    assert_eq!(
        refused,
        "421 4.7.0 Server busy: too many connections in total (limit 2), try again later\r\n",
        "465 refuses in SMTP words, inside TLS"
    );
}

/// On the implicit-TLS ports a refusal is spoken after the handshake, so a
/// client reads the protocol's reason instead of a TLS error.
#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_ports_refuse_inside_tls() {
    let t = start(&[
        ("TERN_SMTP__MAX_SUBMISSION_CONNECTIONS_PER_IP", "1"),
        ("TERN_IMAP__MAX_CONNECTIONS_PER_IP", "1"),
        ("TERN_POP3__MAX_CONNECTIONS_PER_IP", "1"),
    ]);
    for (port, greeting, refusal) in [
        (
            t.smtps,
            "220 ",
            "421 4.7.0 Too many connections from your address (limit 1)",
        ),
        (
            t.imaps,
            "* OK ",
            "* BYE [UNAVAILABLE] Too many connections from your address (limit 1)",
        ),
        (
            t.pop3s,
            "+OK ",
            "-ERR [SYS/TEMP] Too many connections from your address (limit 1)",
        ),
    ] {
        let (_held, greet) = tls_first_line(port, &t.cert());
        assert!(greet.starts_with(greeting), "{greet}");
        let (mut c, refused) = tls_first_line(port, &t.cert());
        assert!(refused.starts_with(refusal), "port {port}: {refused:?}");
        // Then close_notify: a clean end of stream (rustls reports a
        // missing close_notify as an error).
        let mut rest = String::new();
        assert_eq!(c.read_to_string(&mut rest).unwrap(), 0);
    }
}

fn tls_first_line(
    port: u16,
    cert: &std::path::Path,
) -> (std::io::BufReader<Box<dyn Stream>>, String) {
    use std::io::BufRead;
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = std::io::BufReader::new(wrap_tls(s, cert));
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    (r, line)
}

/// RFC 5321 §4.5.3.2.7's five minutes are for a client inside a
/// transaction; one that holds a slot with none open gets less.
#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_time_out_sooner_than_transactions() {
    let t = start(&[("TERN_SMTP__IDLE_TIMEOUT_SECS", "1")]);
    let (mut idle, _) = Client::connect(t.mx);
    idle.cmd("EHLO x.example");
    let (mut busy, _) = Client::connect(t.mx);
    busy.cmd("EHLO x.example");
    assert_eq!(code(&busy.cmd("MAIL FROM:<r@remote.example>")), "250 2.1.0");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        idle.reply(),
        "421 4.4.2 Timeout waiting for a command, closing\r\n"
    );
    assert_eq!(code(&busy.cmd("RCPT TO:<alice@example.test>")), "250 2.1.5");
}

/// A BDAT size near 2^64 once overflowed `have + size`: a panic in debug
/// builds, an unbounded buffer in release.
#[tokio::test(flavor = "multi_thread")]
async fn bdat_sizes_cannot_overflow() {
    let t = start(&[]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    c.cmd("MAIL FROM:<r@remote.example>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.send(b"BDAT 10\r\n0123456789");
    assert_eq!(code(&c.reply()), "250 2.0.0");
    c.send(b"BDAT 18446744073709551610\r\n");
    assert_eq!(code(&c.reply()), "552 5.3.4");
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the session closes after a chunk it cannot take"
    );
    // The server is alive and the next client is served.
    let (mut d, greet) = Client::connect(t.mx);
    assert!(greet.starts_with("220 "));
    assert_eq!(code(&d.cmd("NOOP")), "250 2.0.0");
    assert!(t.inbox("alice@example.test").await.is_empty());
}

/// RFC 5321 §4.1.2 allows a quoted local part; `"alice"` is alice.
#[tokio::test(flavor = "multi_thread")]
async fn quoted_local_part_is_delivered() {
    let t = start(&[]);
    let (mut c, _) = Client::connect(t.mx);
    c.cmd("EHLO x.example");
    c.cmd("MAIL FROM:<\"r\"@remote.example>");
    assert_eq!(
        code(&c.cmd("RCPT TO:<\"alice\"@example.test>")),
        "250 2.1.5"
    );
    assert_eq!(
        code(&c.cmd("RCPT TO:<\"bob@elsewhere.example\"@example.test>")),
        "554 5.7.1",
        "a quoted @ is still relay syntax"
    );
    assert_eq!(
        code(&c.cmd("RCPT TO:<\"no such\"@example.test>")),
        "550 5.1.1"
    );
    c.cmd("DATA");
    c.send(MSG.as_bytes());
    assert_eq!(code(&c.cmd(".")), "250 2.0.0");
    assert_eq!(t.inbox("alice@example.test").await.len(), 1);
}

/// RFC 5322 §3.6: one From: and one Sender: at most; every author header
/// a reader may show is checked for ownership.
#[tokio::test(flavor = "multi_thread")]
async fn submission_refuses_a_second_from_and_foreign_authors() {
    let t = start(&[]);
    let (mut c, _) = Client::connect_tls(t.smtps, &t.cert());
    c.cmd("EHLO laptop");
    assert_eq!(code(&c.login_plain("alice@example.test", PW)), "235 2.7.0");
    let mut send = |headers: &str| {
        c.cmd("MAIL FROM:<alice@example.test>");
        c.cmd("RCPT TO:<bob@example.test>");
        c.cmd("DATA");
        c.send(format!("{headers}Subject: s\r\n\r\nbody\r\n").as_bytes());
        c.cmd(".")
    };
    let r = send("From: Bob <bob@example.test>\r\nFrom: alice@example.test\r\n");
    assert_eq!(
        r,
        "550 5.6.0 The message has more than one From: header\r\n"
    );
    let r = send("From: alice@example.test\r\nFrom: alice@example.test\r\n");
    assert_eq!(code(&r), "550 5.6.0");
    let r =
        send("From: alice@example.test\r\nSender: a@example.test\r\nSender: b@example.test\r\n");
    assert_eq!(
        r,
        "550 5.6.0 The message has more than one Sender: header\r\n"
    );
    let r = send("From: alice@example.test\r\nSender: bob@example.test\r\n");
    assert_eq!(r, "553 5.7.1 From: <bob@example.test> is not yours\r\n");
    let r = send("From: alice@example.test\r\nResent-From: bob@example.test\r\n");
    assert_eq!(code(&r), "553 5.7.1");
    assert!(
        t.inbox("bob@example.test").await.is_empty(),
        "nothing was delivered"
    );
    let r = send("From: Alice <alice@example.test>\r\nSender: team@example.test\r\n");
    assert_eq!(code(&r), "250 2.0.0", "{r}");
    assert_eq!(t.inbox("bob@example.test").await.len(), 1);
}

/// An Ed25519 DKIM key for `sel._domainkey.<domain>`, published in `dns`.
fn dkim_key(
    dns: &common::fakedns::FakeDns,
    domain: &str,
) -> mail_auth::dkim::generate::DkimKeyPair {
    use base64::Engine;
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_ed25519().unwrap();
    let p = base64::engine::general_purpose::STANDARD.encode(pair.public_key());
    dns.txt(
        &format!("sel._domainkey.{domain}"),
        &format!("v=DKIM1; k=ed25519; p={p}"),
    );
    pair
}

/// `headers` plus `body`, with the DKIM-Signature of `domain`'s key on top.
fn dkim_signed(
    pair: &mail_auth::dkim::generate::DkimKeyPair,
    domain: &str,
    message: &str,
) -> String {
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    let sig = mail_auth::dkim::DkimSigner::from_key(
        Ed25519Key::from_pkcs8_der(pair.private_key()).unwrap(),
    )
    .domain(domain)
    .selector("sel")
    .headers(["From", "To", "Subject"])
    .sign(message.as_bytes())
    .unwrap()
    .to_header();
    format!("{sig}{message}")
}

/// One message to bob on port 25, as another server sends it: the reply
/// to the final dot.
fn send_to_bob(t: &common::Tern, helo: &str, mail_from: &str, data: &str) -> String {
    let (mut c, _) = Client::connect(t.mx);
    c.cmd(&format!("EHLO {helo}"));
    assert!(
        c.cmd(&format!("MAIL FROM:<{mail_from}>"))
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.cmd(&format!("{}\r\n.", data.trim_end()))
}

/// bob's INBOX as text, and the message with `subject` in it.
async fn bob_inbox(t: &common::Tern) -> Vec<String> {
    t.inbox("bob@example.test")
        .await
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .collect()
}

fn with_subject(inbox: &[String], subject: &str) -> String {
    inbox
        .iter()
        .find(|m| m.contains(&format!("Subject: {subject}")))
        .unwrap_or_else(|| panic!("{subject} not delivered: {inbox:?}"))
        .clone()
}

/// Mail from other servers is checked (SPF, DKIM, DMARC) against a DNS
/// server on 127.0.0.1 and gets one `Authentication-Results:` header
/// naming this host; a forged one claiming to be this host is removed; a
/// spoofed local `From:` and a DMARC `p=reject` failure are refused with
/// `550 5.7.1`; a `p=quarantine` failure goes to Junk with the result; a
/// bounce checked by its HELO flows; the message page shows the verdict.
#[tokio::test(flavor = "multi_thread")]
async fn inbound_mail_is_checked_and_stamped_with_authentication_results() {
    use common::fakedns::FakeDns;

    let dns = FakeDns::start();
    // good.test: SPF allows 127.0.0.1; signed.test: a DKIM key, no SPF;
    // strict.test: SPF fails, DMARC p=reject; soft.test: p=quarantine.
    dns.txt("good.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("strict.test", "v=spf1 -all");
    dns.txt("_dmarc.strict.test", "v=DMARC1; p=reject");
    dns.txt("soft.test", "v=spf1 -all");
    dns.txt("_dmarc.soft.test", "v=DMARC1; p=quarantine");
    let pair = dkim_key(&dns, "signed.test");
    let t = start(&[
        ("TERN_SMTP__SENDER_CHECKS", "true"),
        ("TERN_SMTP__NAMESERVER", &dns.addr()),
    ]);
    let send = |mail_from: &str, helo: &str, data: &str| send_to_bob(&t, helo, mail_from, data);

    // SPF pass, with a forged result in our name that must go.
    let r = send(
        "news@good.test",
        "mta.good.test",
        "Authentication-Results: mx.example.test; dkim=pass header.d=example.test\r\nFrom: news@good.test\r\nSubject: spf pass\r\n\r\nhi",
    );
    assert!(r.starts_with("250"), "{r}");
    // A spoofed local From: from outside.
    let r = send(
        "x@evil.test",
        "evil.test",
        "From: Alice <alice@example.test>\r\nSubject: spoof\r\n\r\npay now",
    );
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(r.contains("example.test is a domain of this server"), "{r}");
    // DMARC p=reject fails.
    let r = send(
        "a@strict.test",
        "strict.test",
        "From: a@strict.test\r\nSubject: strict\r\n\r\nx",
    );
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert!(r.contains("p=reject"), "{r}");
    // DMARC p=quarantine fails: delivered, the header says so.
    let r = send(
        "a@soft.test",
        "soft.test",
        "From: a@soft.test\r\nSubject: soft\r\n\r\nx",
    );
    assert!(r.starts_with("250"), "{r}");
    // DKIM signed by signed.test (no SPF record): dkim=pass, dmarc none.
    let body =
        "From: s@signed.test\r\nTo: bob@example.test\r\nSubject: signed\r\n\r\nsigned body\r\n";
    let r = send(
        "s@signed.test",
        "signed.test",
        &dkim_signed(&pair, "signed.test", body),
    );
    assert!(r.starts_with("250"), "{r}");
    // A bounce: no MAIL FROM, SPF by the HELO name.
    let r = send(
        "",
        "good.test",
        "From: MAILER-DAEMON@good.test\r\nSubject: bounce\r\n\r\nx",
    );
    assert!(r.starts_with("250"), "{r}");

    t.settle();
    let inbox = bob_inbox(&t).await;
    let find = |subject: &str| with_subject(&inbox, subject);
    let ours = |m: &str| m.matches("Authentication-Results: mx.example.test").count();
    let m = find("spf pass");
    assert_eq!(
        ours(&m),
        1,
        "one header in our name, the forged one gone: {m}"
    );
    assert!(m.contains("spf=pass"), "{m}");
    assert!(!m.contains("header.d=example.test"), "{m}");
    assert!(!inbox.iter().any(|m| m.contains("Subject: soft")));
    let junk = t.folder("bob@example.test", "Junk").await;
    assert_eq!(junk.len(), 1, "quarantined to Junk");
    let m = String::from_utf8_lossy(&junk[0]).into_owned();
    assert!(m.contains("Subject: soft"), "{m}");
    assert!(m.contains("dmarc=fail"), "{m}");
    assert!(m.contains("policy.dmarc=quarantine"), "{m}");
    let m = find("signed");
    assert!(m.contains("dkim=pass"), "{m}");
    assert!(m.contains("header.d=signed.test"), "{m}");
    let m = find("bounce");
    assert!(m.contains("spf=pass"), "{m}");
    assert!(
        !inbox
            .iter()
            .any(|m| m.contains("Subject: spoof") || m.contains("Subject: strict"))
    );

    // The webmail's message page shows the verdict as a badge: the UIDs
    // follow the order of delivery (the refused ones got none).
    let cookie = web_login(t.web, "bob@example.test", PW).expect("signed in");
    let badge = |folder: &str, uid: u32| {
        let (st, page) = http_get(t.web, &format!("/read?f={folder}&uid={uid}"), Some(&cookie));
        assert_eq!(st, 200, "{page}");
        let badge = page
            .split(r#"data-testid="sender-badge""#)
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .map(|(_, text)| text.split('<').next().unwrap_or("").to_owned())
            .unwrap_or_default();
        if badge == "verified sender" {
            "verified"
        } else if badge == "could not verify" {
            "unverified"
        } else {
            "none"
        }
    };
    assert_eq!(badge("INBOX", 1), "verified", "spf pass");
    assert_eq!(
        badge("INBOX", 2),
        "verified",
        "dkim pass for the From domain"
    );
    assert_eq!(badge("Junk", 1), "unverified", "dmarc quarantine failure");
}

/// ARC (RFC 8617): a mailing list rewrites a message (breaking the
/// author's DKIM), sends it from its own address (SPF aligns with the
/// list, not the author) and seals it. The chain is verified and written
/// as `arc=`; only a sealer the operator trusts
/// (`smtp.arc_trusted_sealers`) turns the author's DMARC `p=reject`, or a
/// local `From:`, into a delivery; an untrusted sealer or a chain broken
/// after sealing changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn arc_chains_are_verified_and_a_trusted_sealer_vouches() {
    use common::fakedns::FakeDns;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::generate::DkimKeyPair;
    use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};

    let dns = FakeDns::start();
    dns.txt("strict.test", "v=spf1 -all");
    dns.txt("_dmarc.strict.test", "v=DMARC1; p=reject");
    dns.txt("list.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("other.test", "v=spf1 ip4:127.0.0.1 -all");
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let list_key = DkimKeyPair::generate_ed25519().unwrap();
    let other_key = DkimKeyPair::generate_ed25519().unwrap();
    for (d, k) in [("list.test", &list_key), ("other.test", &other_key)] {
        dns.txt(
            &format!("arc._domainkey.{d}"),
            &format!("v=DKIM1; k=ed25519; p={}", b64(k.public_key())),
        );
    }
    let t = start(&[
        ("TERN_SMTP__SENDER_CHECKS", "true"),
        ("TERN_SMTP__NAMESERVER", &dns.addr()),
        ("TERN_SMTP__ARC_TRUSTED_SEALERS", "list.test"),
    ]);
    // What the list sends: its ARC set on top of the rewritten message.
    let seal = |sealer: &str, key: &DkimKeyPair, message: &str| -> String {
        let m = AuthenticatedMessage::parse(message.as_bytes()).unwrap();
        let results = AuthenticationResults::new(sealer);
        let set = mail_auth::arc::ArcSealer::from_key(
            Ed25519Key::from_pkcs8_der(key.private_key()).unwrap(),
        )
        .domain(sealer)
        .selector("arc")
        .headers(["From", "To", "Subject"])
        .seal(&m, &results, &ArcOutput::default())
        .unwrap();
        format!("{}{message}", set.to_header())
    };
    let send = |mail_from: &str, data: &str| send_to_bob(&t, "lists.example", mail_from, data);
    let post = |from: &str, subject: &str| {
        format!(
            "From: {from}\r\nTo: team@list.test\r\nSubject: [team] {subject}\r\n\r\nposted through the list\r\n"
        )
    };

    // Without ARC, the author's p=reject wins.
    let r = send("bounces@list.test", &post("ann@strict.test", "bare"));
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // Sealed by the trusted list: delivered.
    let r = send(
        "bounces@list.test",
        &seal("list.test", &list_key, &post("ann@strict.test", "trusted")),
    );
    assert!(r.starts_with("250"), "{r}");
    // Our own user's post, back through the trusted list: delivered.
    let r = send(
        "bounces@list.test",
        &seal("list.test", &list_key, &post("alice@example.test", "own")),
    );
    assert!(r.starts_with("250"), "{r}");
    // A valid chain from a sealer nobody trusts: refused.
    let r = send(
        "bounces@other.test",
        &seal(
            "other.test",
            &other_key,
            &post("ann@strict.test", "untrusted"),
        ),
    );
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // The trusted list's seal over a body changed afterwards: refused.
    let tampered = seal("list.test", &list_key, &post("ann@strict.test", "tampered")).replace(
        "posted through the list",
        "posted through the list, and changed",
    );
    let r = send("bounces@list.test", &tampered);
    assert!(r.starts_with("550 5.7.1"), "{r}");

    t.settle();
    let inbox = bob_inbox(&t).await;
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    for m in &inbox {
        assert!(m.contains("Authentication-Results: mx.example.test"), "{m}");
        assert!(m.contains("arc=pass"), "{m}");
    }
    let trusted = inbox.iter().find(|m| m.contains("[team] trusted")).unwrap();
    assert!(trusted.contains("dmarc=fail"), "{trusted}");
    assert!(inbox.iter().any(|m| m.contains("[team] own")));
}

/// REQUIRETLS (RFC 8689 §4.1) on the way in: offered and taken only in a
/// TLS session; a message sent with it is queued with the requirement,
/// one sent without is not.
#[tokio::test(flavor = "multi_thread")]
async fn requiretls_is_offered_over_tls_and_kept_with_the_queued_mail() {
    let t = start(&[]);
    // Port 25 in clear: not offered, and refused.
    let (mut c, _) = Client::connect(t.mx);
    let ehlo = c.cmd("EHLO mta.far.example");
    assert!(!ehlo.contains("REQUIRETLS"), "{ehlo}");
    let r = c.cmd("MAIL FROM:<x@far.example> REQUIRETLS");
    assert!(r.starts_with("530 5.7.10 "), "{r}");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    let mut c = c.starttls(&t.cert());
    let ehlo = c.cmd("EHLO mta.far.example");
    assert!(
        ehlo.contains("250-REQUIRETLS") || ehlo.contains("250 REQUIRETLS"),
        "{ehlo}"
    );
    assert_eq!(
        code(&c.cmd("MAIL FROM:<x@far.example> REQUIRETLS")),
        "250 2.1.0"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.test>")), "250 2.1.5");
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: in\r\n\r\nsecret\r\n.").starts_with("250"));

    // Submission: the requirement goes with the queued mail.
    let (mut c, _) = Client::connect(t.sub);
    c.cmd("EHLO laptop");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    let mut c = c.starttls(&t.cert());
    assert!(c.cmd("EHLO laptop").contains("REQUIRETLS"));
    assert_eq!(code(&c.login_plain("alice@example.test", PW)), "235 2.7.0");
    for (subject, param) in [("strict", " REQUIRETLS"), ("plain", "")] {
        assert_eq!(
            code(&c.cmd(&format!("MAIL FROM:<alice@example.test>{param}"))),
            "250 2.1.0"
        );
        assert_eq!(
            code(&c.cmd("RCPT TO:<friend@elsewhere.example>")),
            "250 2.1.5"
        );
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd(&format!(
            "From: alice@example.test\r\nMessage-ID: <{subject}@example.test>\r\nSubject: {subject}\r\n\r\nbody\r\n."
        ));
        assert!(r.starts_with("250"), "{r}");
    }
    t.settle();
    let core = t.core().await;
    let entries = core
        .queue()
        .list(&mailcore::queue::QueueFilter::default())
        .await
        .unwrap();
    let flag = |id: &str| {
        entries
            .iter()
            .find(|e| e.message_id == id)
            .unwrap_or_else(|| panic!("{id} not queued: {entries:?}"))
            .require_tls
    };
    assert!(flag("strict@example.test"));
    assert!(!flag("plain@example.test"));
    assert_eq!(t.inbox("bob@example.test").await.len(), 1);
}

/// The rest of the sender checks' verdicts, each with the header it
/// writes: SPF softfail (delivered), a DNS failure (451, the sender
/// retries), a DKIM signature over a body changed afterwards (no pass),
/// and a DMARC failure under `p=none` (delivered, to the inbox).
#[tokio::test(flavor = "multi_thread")]
async fn sender_checks_softfail_temperror_tampered_body_and_p_none() {
    use common::fakedns::FakeDns;
    let dns = FakeDns::start();
    dns.txt("soft.test", "v=spf1 ~all");
    dns.txt("lax.test", "v=spf1 -all");
    dns.txt("_dmarc.lax.test", "v=DMARC1; p=none");
    dns.fail("broken.test");
    dns.fail("_dmarc.broken.test");
    let pair = dkim_key(&dns, "signed.test");
    let t = start(&[
        ("TERN_SMTP__SENDER_CHECKS", "true"),
        ("TERN_SMTP__NAMESERVER", &dns.addr()),
    ]);
    let send = |mail_from: &str, data: &str| send_to_bob(&t, "mta.far.example", mail_from, data);
    let r = send(
        "a@soft.test",
        "From: a@soft.test\r\nSubject: softfail\r\n\r\nx",
    );
    assert!(r.starts_with("250"), "{r}");
    let r = send(
        "a@broken.test",
        "From: a@broken.test\r\nSubject: broken\r\n\r\nx",
    );
    assert!(r.starts_with("451 4.7.0"), "{r}");
    let r = send("a@lax.test", "From: a@lax.test\r\nSubject: lax\r\n\r\nx");
    assert!(r.starts_with("250"), "{r}");
    let body = "From: s@signed.test\r\nTo: bob@example.test\r\nSubject: tampered\r\n\r\nthe original words\r\n";
    let changed = dkim_signed(&pair, "signed.test", body).replace("original", "changed");
    let r = send("s@signed.test", &changed);
    assert!(r.starts_with("250"), "{r}");

    t.settle();
    let inbox = bob_inbox(&t).await;
    let find = |subject: &str| with_subject(&inbox, subject);
    let m = find("softfail");
    assert!(m.contains("spf=softfail"), "{m}");
    let m = find("lax");
    assert!(m.contains("spf=fail"), "{m}");
    assert!(m.contains("dmarc=fail"), "{m}");
    assert!(m.contains("policy.dmarc=none"), "{m}");
    let m = find("tampered");
    // mail-auth's word for a body hash that does not match (RFC 6376 §3.7).
    assert!(m.contains("dkim=neutral (body hash did not verify)"), "{m}");
    assert!(!inbox.iter().any(|m| m.contains("Subject: broken")));
    assert!(t.folder("bob@example.test", "Junk").await.is_empty());
}

/// FUTURERELEASE (RFC 4865) on submission: offered with its limits,
/// authenticated users only, HOLDFOR and HOLDUNTIL within the limit; a held
/// message is committed before the 250, waits (across a restart of
/// `tern serve`), shows in the webmail's Scheduled list, and is delivered
/// when its time comes.
#[tokio::test(flavor = "multi_thread")]
async fn futurerelease_holds_submitted_mail_until_its_time() {
    let mut t = start(&[("TERN_SMTP__MAX_FUTURE_RELEASE_SECS", "3600")]);
    let (mut c, _) = Client::connect(t.sub);
    c.cmd("EHLO laptop");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    let mut c = c.starttls(&t.cert());
    let ehlo = c.cmd("EHLO laptop");
    assert!(ehlo.contains("FUTURERELEASE 3600 "), "{ehlo}");
    let r = c.cmd("MAIL FROM:<alice@example.test> HOLDFOR=5");
    assert!(r.starts_with("530 5.7.0"), "{r}");
    assert_eq!(code(&c.login_plain("alice@example.test", PW)), "235 2.7.0");
    let r = c.cmd("MAIL FROM:<alice@example.test> HOLDFOR=3601");
    assert!(r.starts_with("501 5.5.4"), "{r}");
    let r = c.cmd("MAIL FROM:<alice@example.test> HOLDFOR=5 HOLDUNTIL=2026-12-06T00:00:00Z");
    assert!(r.starts_with("501 5.5.4"), "{r}");
    let send = |c: &mut Client, param: &str, subject: &str| {
        let r = c.cmd(&format!("MAIL FROM:<alice@example.test> {param}"));
        assert!(r.starts_with("250"), "{r}");
        assert!(c.cmd("RCPT TO:<bob@example.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.cmd(&format!(
            "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nlater\r\n."
        ))
    };
    let r = send(&mut c, "HOLDFOR=4", "held four");
    assert!(r.starts_with("250 2.0.0 OK: held until "), "{r}");
    let until = mail_parser::DateTime::from_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 2,
    )
    .to_rfc3339();
    let r = send(&mut c, &format!("HOLDUNTIL={until}"), "held until");
    assert!(r.starts_with("250 2.0.0 OK: held until "), "{r}");
    let r = send(&mut c, "HOLDFOR=3000", "held long");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT");
    assert!(bob_subjects(&t).await.is_empty(), "nothing delivered yet");
    // Held across a restart.
    t.restart();
    let core = t.core().await;
    let alice = core
        .account("alice@example.test")
        .await
        .unwrap()
        .unwrap()
        .id;
    let listed: Vec<String> = core
        .scheduled(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.subject)
        .collect();
    assert!(listed.contains(&"held long".to_owned()), "{listed:?}");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = bob_subjects(&t).await;
        if got.contains(&"held four".to_owned()) && got.contains(&"held until".to_owned()) {
            break;
        }
        assert!(Instant::now() < end, "not delivered: {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!bob_subjects(&t).await.contains(&"held long".to_owned()));
    let m = t.inbox("bob@example.test").await;
    let m = String::from_utf8_lossy(&m[0]).into_owned();
    assert!(
        m.contains("with ESMTPSA"),
        "the trace of the submission: {m}"
    );
}

/// The subjects in bob's INBOX.
async fn bob_subjects(t: &common::Tern) -> Vec<String> {
    t.inbox("bob@example.test")
        .await
        .into_iter()
        .map(|m| {
            let m = String::from_utf8_lossy(&m).into_owned();
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// Form-encodes one value for a test's POST body.
fn form(v: &str) -> String {
    let mut o = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => o.push(b as char),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Posts a signed-in form of the rules page; the reply must send the
/// browser back to the page with no error.
fn post_rules(t: &common::Tern, cookie: &str, endpoint: &str, fields: &[(&str, &str)]) {
    let (_, page) = http_get(t.web, "/rules", Some(cookie));
    let csrf = csrf_of(&page);
    let mut body = format!("csrf={csrf}");
    for (k, v) in fields {
        body.push_str(&format!("&{k}={}", form(v)));
    }
    let (st, resp) = http_post_form(
        t.web,
        &format!("/api/{endpoint}"),
        &body,
        &format!("Cookie: {cookie}\r\n"),
    );
    assert!(st == 302 || st == 303, "{endpoint}: {st} {resp}");
    assert!(resp.contains("/rules?saved=1"), "{endpoint}: {resp}");
}

/// Rules written with the webmail's form run at delivery over SMTP:
/// fileinto with flags, discard, reject (a DSN to the sender), a vacation
/// reply that goes once per sender, and forwarding to an outside MX with
/// an SRS reverse path that routes a bounce back to the original sender
/// (and a forged one that does not). The independent client is Python's
/// smtplib; the outside world is a fake MX.
#[tokio::test(flavor = "multi_thread")]
async fn rules_file_discard_reject_reply_once_and_forward_with_srs() {
    use fakemx::{Behaviour, FakeMx};
    let mx = FakeMx::start(Behaviour::default()).await;
    let route = format!(
        "remote.test=127.0.0.1:{p}, out.test=127.0.0.1:{p}",
        p = mx.addr.port()
    );
    let t = start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
    ]);
    let core = t.core().await;
    let bob = core.account("bob@example.test").await.unwrap().unwrap();
    core.mail(bob.id)
        .create_mailbox("Bills", mailcore::NewMailbox::Subscribed)
        .await
        .unwrap();
    core.close().await;
    let cookie = web_login(t.web, "bob@example.test", PW).unwrap();
    post_rules(
        &t,
        &cookie,
        "add_rule",
        &[
            ("field", "subject"),
            ("op", "contains"),
            ("value", "invoice"),
            ("action", "move"),
            ("arg", "Bills"),
            ("stop", "1"),
        ],
    );
    post_rules(
        &t,
        &cookie,
        "add_rule",
        &[
            ("field", "subject"),
            ("op", "contains"),
            ("value", "invoice"),
            ("action", "mark_read"),
            ("arg", ""),
        ],
    );
    post_rules(
        &t,
        &cookie,
        "add_rule",
        &[
            ("field", "header"),
            ("header", "X-Offer"),
            ("op", "is"),
            ("value", "yes"),
            ("action", "discard"),
            ("arg", ""),
        ],
    );
    post_rules(
        &t,
        &cookie,
        "add_rule",
        &[
            ("field", "from"),
            ("op", "is"),
            ("value", "pest@out.test"),
            ("action", "reject"),
            ("arg", "I do not take mail from you."),
        ],
    );
    post_rules(
        &t,
        &cookie,
        "save_vacation",
        &[
            ("on", "1"),
            ("subject", "Away until Monday"),
            ("body", "I am away; back Monday."),
            ("days", "7"),
        ],
    );
    post_rules(
        &t,
        &cookie,
        "save_forward",
        &[("to", "far@remote.test"), ("keep", "1")],
    );
    let (_, page) = http_get(t.web, "/rules", Some(&cookie));
    assert!(
        page.contains(
            "If the subject contains \u{201c}invoice\u{201d}, move it to Bills, and stop"
        ),
        "{page}"
    );
    assert!(page.contains("Your rules are on."), "{page}");
    // A rule the form refuses says why and changes nothing.
    let (_, page0) = http_get(t.web, "/rules", Some(&cookie));
    let (st, resp) = http_post_form(
        t.web,
        "/api/save_forward",
        &format!("csrf={}&to=not-an-address&keep=1", csrf_of(&page0)),
        &format!("Cookie: {cookie}\r\n"),
    );
    assert!(st == 302 || st == 303, "{resp}");
    assert!(resp.contains("error="), "{resp}");

    let script = format!(
        r#"
import smtplib
def send(frm, subject, extra=""):
    with smtplib.SMTP("127.0.0.1", {mx}) as s:
        s.sendmail(frm, ["bob@example.test"],
            "From: <%s>\r\nTo: bob@example.test\r\nSubject: %s\r\nMessage-ID: <%s@out.test>\r\n%s\r\nHello.\r\n"
            % (frm, subject, subject.replace(" ", "."), extra))
send("ann@out.test", "Lunch on Friday")
send("ann@out.test", "Invoice 7")
send("ann@out.test", "Lunch again")
send("ann@out.test", "Cheap pills", "X-Offer: yes\r\n")
send("pest@out.test", "Hello again")
print("ok")
"#,
        mx = t.mx
    );
    run_python(&script);
    t.settle();
    let inbox = bob_inbox(&t).await;
    let subjects: Vec<&str> = ["Lunch on Friday", "Lunch again"]
        .into_iter()
        .filter(|s| inbox.iter().any(|m| m.contains(&format!("Subject: {s}"))))
        .collect();
    assert_eq!(subjects.len(), 2, "{inbox:?}");
    assert_eq!(
        inbox.len(),
        2,
        "invoice filed, offer discarded, pest rejected: {inbox:?}"
    );
    let bills = t.folder("bob@example.test", "Bills").await;
    assert_eq!(bills.len(), 1);
    assert!(String::from_utf8_lossy(&bills[0]).contains("Subject: Invoice 7"));

    // What left: a forward of each kept message (not the discarded or
    // rejected ones), one vacation reply, one DSN for the rejected one.
    for _ in 0..300 {
        if mx.accepted().len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for anything that should not come (a second reply) to come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outside = mx.accepted();
    let text = |r: &fakemx::Received| String::from_utf8_lossy(&r.data).into_owned();
    let forwards: Vec<_> = outside
        .iter()
        .filter(|r| r.rcpts == ["far@remote.test"])
        .collect();
    assert_eq!(
        forwards.len(),
        3,
        "{:?}",
        outside
            .iter()
            .map(|r| (&r.mail_from, &r.rcpts))
            .collect::<Vec<_>>()
    );
    for f in &forwards {
        assert!(f.mail_from.starts_with("SRS0="), "{}", f.mail_from);
        assert!(
            f.mail_from.ends_with("=out.test=ann@example.test"),
            "{}",
            f.mail_from
        );
        assert!(
            text(f).starts_with("Delivered-To: bob@example.test\r\n"),
            "{}",
            text(f)
        );
    }
    let replies: Vec<_> = outside
        .iter()
        .filter(|r| r.rcpts == ["ann@out.test"])
        .collect();
    assert_eq!(replies.len(), 1, "one vacation reply for three messages");
    assert_eq!(replies[0].mail_from, "");
    let reply = text(replies[0]);
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("Subject: Away until Monday"), "{reply}");
    assert!(reply.contains("I am away; back Monday."), "{reply}");
    let dsn: Vec<_> = outside
        .iter()
        .filter(|r| r.rcpts == ["pest@out.test"])
        .collect();
    assert_eq!(dsn.len(), 1);
    assert_eq!(dsn[0].mail_from, "");
    assert!(
        text(dsn[0]).contains("I do not take mail from you."),
        "{}",
        text(dsn[0])
    );
    assert!(outside.iter().all(|r| !text(r).contains("Cheap pills")));

    // A bounce to the SRS address goes back to ann; a forged one is
    // refused.
    let srs = forwards[0].mail_from.clone();
    let forged = srs.replacen("out.test", "evil.test", 1);
    let script = format!(
        r#"
import smtplib
with smtplib.SMTP("127.0.0.1", {mx}) as s:
    s.sendmail("", [{srs:?}], "From: MAILER-DAEMON@remote.test\r\nSubject: Undelivered\r\n\r\nfar is gone\r\n")
    try:
        s.sendmail("", [{forged:?}], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("a forged SRS address was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code = list(e.recipients.values())[0][0]
        assert code == 550, e
print("ok")
"#,
        mx = t.mx
    );
    run_python(&script);
    let mut back = Vec::new();
    for _ in 0..300 {
        back = mx
            .accepted()
            .into_iter()
            .filter(|r| r.rcpts == ["ann@out.test"] && text(r).contains("far is gone"))
            .collect();
        if !back.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back.len(), 1, "the bounce went back to the original sender");
    assert_eq!(back[0].mail_from, "");
}

/// "Mail held for you": mail accepted (`250`) while the store refuses
/// writes waits in the spool, and the webmail says how much and since
/// when; once the store takes it, the note goes and the mail is there.
#[tokio::test(flavor = "multi_thread")]
async fn the_webmail_says_how_much_mail_is_held_and_since_when() {
    let t = start(&[]);
    let cookie = web_login(t.web, "bob@example.test", PW).unwrap();
    let db = t.dir.path().join("tern.db");
    // The store refuses to keep new message bytes: every ingest attempt
    // fails and is retried, as in a store outage, while reads still work.
    let trigger = |sql: &str| {
        run_python(&format!(
            "import sqlite3\nc = sqlite3.connect({db:?}, timeout=30)\nc.execute({sql:?})\nc.commit()\n",
            db = db.display().to_string()
        ))
    };
    trigger(
        "CREATE TRIGGER hold BEFORE INSERT ON blobs BEGIN SELECT RAISE(ABORT, 'held for the test'); END",
    );
    run_python(&format!(
        r#"
import smtplib
with smtplib.SMTP("127.0.0.1", {mx}) as s:
    for i in range(2):
        s.sendmail("ann@out.example", ["bob@example.test"], "Subject: held %d\r\n\r\nwaits\r\n" % i)
"#,
        mx = t.mx
    ));
    let (_, page) = http_get(t.web, "/mail?f=INBOX", Some(&cookie));
    assert!(
        page.contains("2 messages for you arrived since ") && page.contains("Nothing is lost."),
        "{page}"
    );
    assert!(!page.contains("held 0"), "not in the list yet: {page}");
    trigger("DROP TRIGGER hold");
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.inbox("bob@example.test").await.len() < 2 {
        assert!(Instant::now() < deadline, "the held mail was not stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = http_get(t.web, "/mail?f=INBOX", Some(&cookie));
    assert!(!page.contains("for you arrived since"), "{page}");
    assert!(page.contains("held 1"), "{page}");
}

/// `TERN_LOG_FORMAT=json`: the server's log is one JSON object per line,
/// and the SMTP transaction and the delivery of one message can be
/// followed by its Message-ID.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_follow_one_message_by_its_id() {
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("tern.log");
    let t = start(&[
        ("TERN_LOG_FORMAT", "json"),
        ("TERN_TEST_STDERR_FILE", &file.display().to_string()),
    ]);
    let reply = send_to_bob(
        &t,
        "client.example",
        "ann@out.example",
        "Subject: logged\r\nMessage-ID: <json-log-1@out.example>\r\n\r\nhello\r\n",
    );
    assert!(reply.starts_with("250"), "{reply}");
    t.settle();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut transaction = false;
    let mut delivered = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("timestamp").is_some() && v.get("level").is_some(),
            "{line}"
        );
        if v["message"] == "smtp transaction" && v["result"] == "250" {
            transaction = true;
        }
        if v["message"] == "delivered" && v["message_id"] == "json-log-1@out.example" {
            delivered = true;
        }
    }
    assert!(transaction, "{text}");
    assert!(delivered, "{text}");
}
