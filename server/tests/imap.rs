//! IMAP over real sockets against `tern serve`: transcripts (C:/S:) on 143
//! with STARTTLS and on 993, limits, IDLE woken by SMTP delivery, and
//! Python's imaplib as an independent client.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{PW, Stream, Tern, run_python, start, wrap_tls};

/// A line-oriented IMAP client for transcripts.
struct Imap {
    r: BufReader<Box<dyn Stream>>,
    plain: Option<TcpStream>,
    n: u32,
}

impl Imap {
    fn plain(port: u16) -> (Imap, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let plain = s.try_clone().ok();
        let mut c = Imap {
            r: BufReader::new(Box::new(s)),
            plain,
            n: 0,
        };
        let g = c.line();
        (c, g)
    }

    fn tls(t: &Tern) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", t.imaps)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Imap {
            r: BufReader::new(wrap_tls(s, &t.cert())),
            plain: None,
            n: 0,
        };
        let g = c.line();
        assert!(
            g.starts_with("* OK [CAPABILITY IMAP4rev2 IMAP4rev1 "),
            "{g}"
        );
        c
    }

    fn starttls(mut self, t: &Tern) -> Imap {
        let r = self.run("STARTTLS");
        assert!(r.last().unwrap().contains("OK Begin TLS"), "{r:?}");
        let sock = self.plain.take().unwrap();
        Imap {
            r: BufReader::new(wrap_tls(sock, &t.cert())),
            plain: None,
            n: self.n,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    fn send(&mut self, raw: &[u8]) {
        let w = self.r.get_mut();
        w.write_all(raw).unwrap();
        w.flush().unwrap();
    }

    /// Sends `tag command` and returns every line up to the tagged one,
    /// with literals inlined.
    fn run(&mut self, cmd: &str) -> Vec<String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.send(format!("{tag} {cmd}\r\n").as_bytes());
        self.until(&tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut l = self.line();
            assert!(!l.is_empty(), "connection closed; got {out:?}");
            // Inline a literal that ends the line.
            while let Some(n) = l
                .trim_end()
                .strip_suffix('}')
                .and_then(|x| x.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut buf = vec![0; n];
                self.r.read_exact(&mut buf).unwrap();
                l.push_str(&String::from_utf8_lossy(&buf));
                l.push_str(&self.line());
            }
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }

    fn ok(&mut self, cmd: &str) -> Vec<String> {
        let r = self.run(cmd);
        assert!(
            r.last().unwrap().starts_with(&format!("t{} OK", self.n)),
            "C: {cmd}\nS: {r:#?}"
        );
        r
    }

    /// APPENDs through the server (so what it keeps at arrival is made),
    /// with a non-synchronizing literal.
    fn append_inbox(&mut self, m: &[u8]) {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", m.len()).as_bytes());
        self.send(m);
        self.send(b"\r\n");
        let r = self.until(&tag);
        assert!(r.last().unwrap().starts_with(&format!("{tag} OK")), "{r:?}");
    }

    fn login(t: &Tern, user: &str) -> Imap {
        let mut c = Imap::tls(t);
        c.ok(&format!("LOGIN {user} \"{PW}\""));
        c
    }
}

/// The MODSEQ of the first reply line, `... MODSEQ (n) ...`.
fn first_modseq(r: &[String]) -> u64 {
    r[0].split("MODSEQ (")
        .nth(1)
        .and_then(|x| x.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{r:?}"))
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@remote.test>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_is_required_before_login_on_143() {
    let t = start(&[]);
    // S: * OK [CAPABILITY ... STARTTLS LOGINDISABLED] ...
    let (mut c, greet) = Imap::plain(t.imap);
    assert!(greet.contains("STARTTLS LOGINDISABLED"), "{greet}");
    assert!(!greet.contains("AUTH=PLAIN"));
    // C: t1 LOGIN alice pw  S: t1 NO [PRIVACYREQUIRED]  (RFC 9051 §6.2.3)
    let r = c.run(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(r[0].starts_with("t1 NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.run("AUTHENTICATE PLAIN AGFsaWNlAHB3");
    assert!(r[0].starts_with("t2 NO [PRIVACYREQUIRED]"), "{r:?}");
    // Commands pipelined after STARTTLS are thrown away with the plain
    // buffer: the injected NOOP must never be answered.
    c.n += 1;
    c.send(b"t3 STARTTLS\r\nt99 NOOP\r\n");
    let r = c.until("t3");
    assert!(r[0].starts_with("t3 OK"), "{r:?}");
    let sock = c.plain.take().unwrap();
    let mut c = Imap {
        r: BufReader::new(wrap_tls(sock, &t.cert())),
        plain: None,
        n: 3,
    };
    let caps = c.ok("CAPABILITY");
    assert!(
        caps[0].contains("AUTH=PLAIN") && !caps[0].contains("LOGINDISABLED"),
        "{caps:?}"
    );
    let r = c.ok(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(
        !has(&r, "t99"),
        "a pipelined plaintext command was run: {r:?}"
    );
    let r = c.run("STARTTLS");
    assert!(r[0].starts_with("t6 BAD"), "{r:?}");
    // SASL-IR: AUTHENTICATE PLAIN with the initial response on the line.
    let (c2, _) = Imap::plain(t.imap);
    let mut c2 = c2.starttls(&t);
    use base64::Engine;
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0bob@example.test\0{PW}"));
    let r = c2.ok(&format!("AUTHENTICATE PLAIN {ir}"));
    assert!(r[0].contains("[CAPABILITY"), "{r:?}");
    let r = c2.ok("LOGOUT");
    assert!(r[0].starts_with("* BYE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_transcript_on_993() {
    let t = start(&[]);
    t.deliver("alice@example.test", &msg("first", "one\r\n"))
        .await;
    t.deliver("alice@example.test", &msg("second", "two two\r\n"))
        .await;
    t.deliver("alice@example.test", &msg("third", "three\r\n"))
        .await;
    let mut c = Imap::login(&t, "alice@example.test");

    // State table: FETCH needs a selected mailbox.
    let r = c.run("FETCH 1 FLAGS");
    assert!(r[0].contains("BAD FETCH not allowed now"), "{r:?}");

    let r = c.ok("LIST \"\" \"*\"");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
        "{r:#?}"
    );
    assert!(has(&r, "\\Sent) \"/\" \"Sent\""), "{r:#?}");
    assert!(has(&r, "\\Trash) \"/\" \"Trash\""));
    let r = c.ok("LIST \"\" \"\"");
    assert!(has(&r, "* LIST (\\Noselect) \"/\" \"\""));
    let r = c.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE)");
    assert!(
        has(
            &r,
            "* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 3 UIDNEXT 4 SIZE "
        ),
        "{r:?}"
    );
    let r = c.ok("NAMESPACE");
    assert!(has(&r, "* NAMESPACE ((\"\" \"/\")) NIL NIL"));

    let r = c.ok("SELECT INBOX");
    assert!(
        !has(&r, "* LIST "),
        "a rev1 client gets no LIST from SELECT (RFC 9051 §6.3.2 is rev2 only): {r:?}"
    );
    assert!(has(&r, "* 3 EXISTS"));
    assert!(has(&r, "* OK [UIDVALIDITY "));
    assert!(has(&r, "* OK [UIDNEXT 4]"));
    assert!(has(&r, "* OK [UNSEEN 1]"));
    assert!(r.last().unwrap().contains("[READ-WRITE]"));

    let r = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)");
    assert_eq!(r.len(), 4);
    assert!(
        // The first session to select the mailbox has its mail as \Recent.
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "),
        "{r:?}"
    );
    // BODY.PEEK leaves \Seen alone; BODY[] sets it and says so.
    let r = c.ok("FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject)])");
    assert!(
        r[0].contains("BODY[HEADER.FIELDS (Subject)] {19}\r\nSubject: second\r\n\r\n"),
        "{r:?}"
    );
    let r = c.ok("FETCH 2 BODY[TEXT]");
    assert!(r[0].contains("BODY[TEXT] {9}\r\ntwo two\r\n"), "{r:?}");
    assert!(has(&r, "FLAGS (\\Seen \\Recent)"), "{r:?}");
    let r = c.ok("FETCH 2 (BODY[]<0.6>)");
    assert!(r[0].contains("BODY[]<0> {6}\r\nFrom: "), "{r:?}");
    let r = c.ok("FETCH 3 (ENVELOPE INTERNALDATE)");
    assert!(r[0].contains("ENVELOPE (\"Sun, 29 Nov 2026 10:00:00 +0000\" \"third\" ((\"Carol\" NIL \"carol\" \"remote.test\"))"), "{r:?}");
    let r = c.ok("FETCH 3 BODYSTRUCTURE");
    assert!(r[0].contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL)"), "{r:?}");

    let r = c.ok("SEARCH UNSEEN");
    assert_eq!(r[0], "* SEARCH 1 3\r\n");
    let r = c.ok("UID SEARCH SUBJECT second");
    assert_eq!(r[0], "* SEARCH 2\r\n");
    let r = c.ok("SEARCH RETURN (MIN MAX COUNT) ALL");
    assert!(r[0].starts_with("* ESEARCH (TAG \"t"), "{r:?}");
    assert!(r[0].contains("MIN 1 MAX 3 COUNT 3"), "{r:?}");
    let r = c.ok("SEARCH BODY three");
    assert_eq!(r[0], "* SEARCH 3\r\n");

    let r = c.ok("STORE 1 +FLAGS (\\Deleted \\Flagged)");
    assert!(
        r[0].starts_with("* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))"),
        "{r:?}"
    );
    let r = c.ok("UID STORE 3 +FLAGS.SILENT (\\Answered)");
    assert_eq!(r.len(), 1, "silent: {r:?}");
    let r = c.run("FETCH 9 FLAGS");
    assert!(
        r[0].contains("BAD Invalid message sequence number 9"),
        "{r:?}"
    );

    let r = c.ok("COPY 2:3 Archive");
    assert!(r.last().unwrap().contains("[COPYUID "), "{r:?}");
    assert!(r.last().unwrap().contains(" 2:3 1:2]"), "{r:?}");
    let r = c.ok("EXPUNGE");
    assert_eq!(r[0], "* 1 EXPUNGE\r\n");
    let r = c.ok("UID MOVE 3 Trash");
    assert!(has(&r, "* OK [COPYUID "), "{r:?}");
    assert!(has(&r, "* 2 EXPUNGE"), "{r:?}");
    let r = c.ok("FETCH 1:* UID");
    assert_eq!(r[0], "* 1 FETCH (UID 2)\r\n");

    // APPEND with a synchronizing literal, then with LITERAL+.
    c.n += 1;
    c.send(b"t90 APPEND Drafts (\\Draft) {14}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send(b"Subject: d\r\n\r\n\r\n");
    let r = c.until("t90");
    assert!(r[0].contains("OK [APPENDUID "), "{r:?}");
    c.send(b"t91 APPEND INBOX {14+}\r\nSubject: e\r\n\r\n\r\n");
    let r = c.until("t91");
    assert!(
        has(&r, "* 2 EXISTS"),
        "the new message shows at once: {r:?}"
    );
    let r = c.run("APPEND Nowhere {1+}\r\nx");
    assert!(r[0].contains("NO [TRYCREATE]"), "{r:?}");

    c.ok("CREATE Projects/2026");
    let r = c.ok("LIST \"\" \"Projects/%\"");
    assert!(has(&r, "\"Projects/2026\""), "{r:?}");
    c.ok("RENAME Projects/2026 Projects/2027");
    c.ok("DELETE Projects/2027");
    let r = c.run("DELETE INBOX");
    assert!(r[0].contains("NO"), "{r:?}");
    c.ok("UNSELECT");
    let r = c.ok("EXAMINE INBOX");
    assert!(r.last().unwrap().contains("[READ-ONLY]"));
    let r = c.run("STORE 1 +FLAGS (\\Seen)");
    assert!(r[0].contains("NO [READ-ONLY]"), "{r:?}");
    c.ok("LOGOUT");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_before_allocating() {
    let t = start(&[]);
    // An announced 4 GiB literal: refused at once, then disconnected.
    let (mut c, _) = Imap::plain(t.imap);
    c.send(b"a LOGIN {4294967295}\r\n");
    assert_eq!(c.line(), "a NO [TOOBIG] Literal too large\r\n");
    assert!(c.line().starts_with("* BYE"));
    assert_eq!(c.line(), "", "the server hung up");
    // A line over the limit.
    let (mut c, _) = Imap::plain(t.imap);
    let long = format!("a NOOP {}\r\n", "x".repeat(70_000));
    c.send(long.as_bytes());
    assert!(c.line().starts_with("* BAD [TOOBIG]"));
    let r = c.run("NOOP");
    assert!(r[0].starts_with("t1 OK"), "still usable: {r:?}");
    // Garbage and unknown commands get BAD, not a crash.
    let r = c.run("FROB");
    assert!(r[0].starts_with("t2 BAD"));
    c.send(b"\r\n");
    assert!(c.line().starts_with("* BAD"));
    let deep = format!("SEARCH {}ALL{}", "(".repeat(40), ")".repeat(40));
    let r = c.run(&deep);
    assert!(r[0].contains("BAD"), "{r:?}");
    // Wrong password: NO [AUTHENTICATIONFAILED].
    let mut c = Imap::tls(&t);
    let r = c.run("LOGIN alice@example.test wrong");
    assert!(r[0].starts_with("t1 NO [AUTHENTICATIONFAILED]"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_wakes_when_smtp_delivers() {
    let t = start(&[]);
    let mut c = Imap::login(&t, "bob@example.test");
    c.ok("SELECT INBOX");
    c.n += 1;
    c.send(b"t9 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    // Deliver through the MX listener, as another server would.
    let (mut smtp, _) = common::Client::connect(t.mx);
    smtp.cmd("EHLO other.test");
    smtp.cmd("MAIL FROM:<carol@remote.test>");
    smtp.cmd("RCPT TO:<bob@example.test>");
    smtp.cmd("DATA");
    let sent = Instant::now();
    let r = smtp.cmd("Subject: wake up\r\n\r\nhello\r\n.");
    assert!(r.starts_with("250"), "{r}");
    let l = c.line();
    assert_eq!(l, "* 1 EXISTS\r\n");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "IDLE took {:?}",
        sent.elapsed()
    );
    c.send(b"DONE\r\n");
    let r = c.until("t9");
    assert!(r.last().unwrap().starts_with("t9 OK"));

    // Flags changed by another session show up in IDLE too.
    let mut other = Imap::login(&t, "bob@example.test");
    other.ok("SELECT INBOX");
    c.n += 1;
    c.send(b"t10 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    other.ok("STORE 1 +FLAGS (\\Flagged)");
    let l = c.line();
    assert!(l.starts_with("* 1 FETCH (UID 1 FLAGS (\\Flagged"), "{l}");
    // And an expunge elsewhere.
    other.ok("STORE 1 +FLAGS (\\Deleted)");
    other.ok("EXPUNGE");
    let mut saw_expunge = false;
    for _ in 0..3 {
        let l = c.line();
        if l == "* 1 EXPUNGE\r\n" {
            saw_expunge = true;
            break;
        }
    }
    assert!(saw_expunge);
    c.send(b"DONE\r\n");
    c.until("t10");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_imaplib_reads_moves_and_appends() {
    let t = start(&[]);
    t.deliver("alice@example.test", &msg("py1", "from python\r\n"))
        .await;
    let cert = t.cert();
    run_python(&format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
for M in (imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx),):
    M.login("alice@example.test", {pw:?})
    typ, data = M.select("INBOX")
    assert typ == "OK" and data == [b"1"], data
    typ, data = M.search(None, "ALL")
    assert data == [b"1"], data
    typ, data = M.fetch("1", "(RFC822)")
    assert b"from python" in data[0][1], data
    typ, data = M.uid("FETCH", "1", "(FLAGS)")
    assert b"\\Seen" in data[0], data
    typ, data = M.append("Archive", "(\\Flagged)", None, b"Subject: appended\r\n\r\nbody\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0], data
    typ, data = M.uid("MOVE", "1", "Archive")
    assert typ == "OK", data
    typ, data = M.status("Archive", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0], data
    M.logout()

M = imaplib.IMAP4("127.0.0.1", {imap})
M.starttls(ssl_context=ctx)
M.login("alice@example.test", {pw:?})
typ, data = M.select("INBOX")
assert data == [b"0"], data
typ, data = M.list()
names = [l.decode() for l in data]
assert any('"Archive"' in n for n in names), names
M.logout()
"#,
        cert = cert.display().to_string(),
        imaps = t.imaps,
        imap = t.imap,
        pw = PW,
    ));
}

/// async-imap, the client Tern uses for outside mailboxes, against Tern:
/// login over TLS, select/fetch/search, append then move, and IDLE woken
/// by a message arriving over SMTP.
#[tokio::test(flavor = "multi_thread")]
async fn async_imap_as_a_real_client() {
    use async_imap::extensions::idle::IdleResponse;
    use futures_util::TryStreamExt;

    let t = start(&[]);
    let first = msg("alpha", "first body\r\n");
    t.deliver("alice@example.test", &first).await;
    t.deliver("alice@example.test", &msg("beta", "second body\r\n"))
        .await;

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", t.imaps))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(common::tls_config(&t.cert()));
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tls);
    client.read_response().await.unwrap().expect("a greeting");
    let mut s = client
        .login("alice@example.test", PW)
        .await
        .map_err(|e| e.0)
        .unwrap();

    let inbox = s.select("INBOX").await.unwrap();
    assert_eq!(inbox.exists, 2);
    assert!(inbox.uid_validity.is_some());
    let fetched: Vec<_> = s
        .fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0].uid, Some(1));
    assert_eq!(
        fetched[0].body(),
        Some(&first[..]),
        "the bytes that arrived"
    );
    let hits = s.search("SUBJECT beta").await.unwrap();
    assert_eq!(hits.into_iter().collect::<Vec<_>>(), vec![2]);

    s.append(
        "INBOX",
        Some("(\\Seen)"),
        None,
        b"Subject: appended\r\n\r\nhi\r\n",
    )
    .await
    .unwrap();
    let uids = s.uid_search("SUBJECT appended").await.unwrap();
    assert_eq!(uids.iter().copied().collect::<Vec<_>>(), vec![3]);
    s.uid_mv("3", "Archive").await.unwrap();
    let archive = s.examine("Archive").await.unwrap();
    assert_eq!(archive.exists, 1);

    s.select("INBOX").await.unwrap();
    let mut idle = s.idle();
    idle.init().await.unwrap();
    let mx = t.mx;
    let sent = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        let (mut smtp, _) = common::Client::connect(mx);
        smtp.cmd("EHLO other.test");
        smtp.cmd("MAIL FROM:<carol@remote.test>");
        smtp.cmd("RCPT TO:<alice@example.test>");
        smtp.cmd("DATA");
        let r = smtp.cmd("Subject: ping\r\n\r\nping\r\n.");
        assert!(r.starts_with("250"), "{r}");
        Instant::now()
    });
    let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
    let got = wait.await.unwrap();
    let woke = Instant::now();
    let sent = sent.await.unwrap();
    match got {
        IdleResponse::NewData(d) => {
            let text = format!("{:?}", d.parsed());
            assert!(text.contains("Exists(3)"), "{text}");
        }
        other => panic!("IDLE did not wake: {other:?}"),
    }
    assert!(woke.duration_since(sent) < Duration::from_secs(1));
    let mut s = idle.done().await.unwrap();
    s.logout().await.unwrap();
}

/// ENVELOPE and BODYSTRUCTURE against a small corpus of real-world shapes
/// (tests/corpus): multipart/alternative with encoded words and a group,
/// nested multipart/mixed with an attachment and a forwarded message, raw
/// UTF-8 headers, and MIME with no closing boundary. The expected strings
/// were worked out by hand from RFC 9051 §7.5.2.
#[tokio::test(flavor = "multi_thread")]
async fn envelope_and_bodystructure_over_a_corpus() {
    let t = start(&[]);
    let corpus = |name: &str| {
        std::fs::read(format!(
            "{}/tests/corpus/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    for name in [
        "alternative.eml",
        "nested.eml",
        "utf8-headers.eml",
        "malformed.eml",
    ] {
        t.deliver("alice@example.test", &corpus(name)).await;
    }
    let mut c = Imap::login(&t, "alice@example.test");
    c.ok("SELECT INBOX");
    let fetch = |c: &mut Imap, n: u32, item: &str| -> String {
        let r = c.ok(&format!("FETCH {n} {item}"));
        let l = r[0].trim_end().to_owned();
        let prefix = format!("* {n} FETCH ({item} ");
        assert!(l.starts_with(&prefix), "{l}");
        l[prefix.len()..l.len() - 1].to_owned()
    };

    let jorg = r#"(("=?utf-8?b?SsO2cmc=?=" NIL "jorg" "example.org"))"#;
    assert_eq!(
        fetch(&mut c, 1, "ENVELOPE"),
        format!(
            r#"("Mon, 30 Nov 2026 08:15:00 +0100" "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin" {jorg} {jorg} {jorg} ((NIL NIL "alice" "example.test")("Bob B." NIL "bob" "example.test")) ((NIL NIL "team" NIL)(NIL NIL "carol" "example.org")(NIL NIL "dave" "example.org")(NIL NIL NIL NIL)) NIL "<prev@example.test>" "<alt-1@example.org>")"#
        )
    );
    assert_eq!(
        fetch(&mut c, 1, "BODYSTRUCTURE"),
        r#"(("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 16 1 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "7BIT" 24 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)"#
    );
    assert_eq!(
        fetch(&mut c, 1, "BODY"),
        r#"(("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 16 1)("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "7BIT" 24 1) "ALTERNATIVE")"#
    );

    let carol = r#"((NIL NIL "carol" "example.org"))"#;
    assert_eq!(
        fetch(&mut c, 2, "BODYSTRUCTURE"),
        format!(
            r#"((("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 19 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 12 NIL ("ATTACHMENT" ("FILENAME" "report.pdf")) NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 95 ("Tue, 1 Dec 2026 08:00:00 +0000" "forwarded" {carol} {carol} {carol} NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)"#
        )
    );
    // Sections of the nested message, cut from the bytes that arrived.
    let r = c.ok("FETCH 2 (BODY.PEEK[1.2] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[3.HEADER.FIELDS (Subject)])");
    let all = r[0].clone();
    assert!(
        all.contains("BODY[1.2] {19}\r\n<b>see attached</b>"),
        "{all}"
    );
    assert!(all.contains("BODY[2] {12}\r\nJVBERi0xLjQK"), "{all}");
    assert!(all.contains("BODY[2.MIME] {"), "{all}");
    assert!(
        all.contains("Content-Disposition: attachment; filename=\"report.pdf\"\r\n"),
        "{all}"
    );
    assert!(
        all.contains("BODY[3.HEADER.FIELDS (Subject)] {22}\r\nSubject: forwarded\r\n\r\n"),
        "{all}"
    );

    // Raw UTF-8 header values go out as literals; a non-ASCII display name
    // as an encoded word.
    let r = c.ok("FETCH 3 ENVELOPE");
    assert!(
        r[0].contains("\"Wed, 2 Dec 2026 12:00:00 +0000\" {18}\r\nGrüße, raw UTF-8 "),
        "{:?}",
        r[0]
    );
    assert!(
        r[0].contains(r#"(("=?utf-8?b?Wm/DqyDDnG5hbA==?=" NIL "zoe" "example.org"))"#),
        "{:?}",
        r[0]
    );
    assert_eq!(
        fetch(&mut c, 3, "BODYSTRUCTURE"),
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 19 1 NIL NIL NIL NIL)"#
    );

    // Malformed MIME still gets a well-formed answer.
    let s = fetch(&mut c, 4, "BODYSTRUCTURE");
    assert!(
        s.starts_with(r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" "#),
        "{s}"
    );
    assert!(
        s.ends_with(r#" "MIXED" ("BOUNDARY" "never") NIL NIL NIL)"#),
        "{s}"
    );
    let e = fetch(&mut c, 4, "ENVELOPE");
    assert!(e.starts_with(r#"(NIL "no closing boundary" "#), "{e}");
    c.ok("LOGOUT");
}

/// The acceptance path as a user would walk it: mail delivered over SMTP,
/// read with imaplib over STARTTLS (flag, move, expunge) and with curl
/// over imaps.
#[tokio::test(flavor = "multi_thread")]
async fn acceptance_imaplib_over_starttls_and_curl_over_imaps() {
    let t = start(&[]);
    for subject in ["over smtp", "second"] {
        let (mut smtp, _) = common::Client::connect(t.mx);
        smtp.cmd("EHLO other.test");
        smtp.cmd("MAIL FROM:<carol@remote.test>");
        smtp.cmd("RCPT TO:<alice@example.test>");
        smtp.cmd("DATA");
        let r = smtp.cmd(&format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n."));
        assert!(r.starts_with("250"), "{r}");
    }
    let cert = t.cert().display().to_string();
    // curl first, read-only.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &cert,
            "--resolve",
            &format!("localhost:{}:127.0.0.1", t.imaps),
            "-u",
            &format!("alice@example.test:{PW}"),
            &format!("imaps://localhost:{}/INBOX;UID=1", t.imaps),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("Subject: over smtp") && body.contains("body of over smtp"),
        "{body}"
    );
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--insecure",
            "-u",
            &format!("alice@example.test:{PW}"),
            "--url",
            &format!("imaps://127.0.0.1:{}/INBOX", t.imaps),
            "-X",
            "SEARCH ALL",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("* SEARCH 1 2"),
        "{out:?}"
    );

    run_python(&format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4("127.0.0.1", {imap})
M.starttls(ssl_context=ctx)
M.login("alice@example.test", {pw:?})
typ, boxes = M.list()
assert typ == "OK" and any(b'"INBOX"' in b for b in boxes), boxes
typ, data = M.select("INBOX")
assert data == [b"2"], data
typ, data = M.fetch("1", "(BODY[])")
assert b"body of over smtp" in data[0][1], data
typ, data = M.store("1", "+FLAGS", "(\\Flagged)")
assert b"\\Flagged" in data[0], data
typ, data = M.uid("MOVE", "2", "Archive")
assert typ == "OK", data
typ, data = M.store("1", "+FLAGS", "(\\Deleted)")
typ, data = M.expunge()
# imaplib also hands back the EXPUNGE that MOVE reported (RFC 6851).
assert data == [b"2", b"1"], data
typ, data = M.select("INBOX")
assert data == [b"0"], data
typ, data = M.select("Archive")
assert data == [b"1"], data
M.logout()
"#,
        imap = t.imap,
        pw = PW,
    ));
}

/// DESIGN.md rule 2: with the database gone, commands answer
/// `NO [UNAVAILABLE]` and the session carries on once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn database_loss_is_no_unavailable() {
    let Some(pg) = common::PgDb::create("imap") else {
        return;
    };
    let url = pg.url.clone();
    let t = start(&[("TERN_DATABASE__URL", &url)]);
    let mut c = Imap::login(&t, "alice@example.test");
    c.ok("SELECT INBOX");
    let mut fresh = Imap::tls(&t);
    pg.cut_off();
    for cmd in [
        "NOOP",
        "FETCH 1:* FLAGS",
        "LIST \"\" \"*\"",
        "STATUS INBOX (MESSAGES)",
    ] {
        let r = c.run(cmd);
        assert!(
            r.last().unwrap().contains("NO [UNAVAILABLE]"),
            "{cmd}: {r:?}"
        );
    }
    let r = fresh.run(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(r.last().unwrap().contains("NO [UNAVAILABLE]"), "{r:?}");
    pg.restore();
    let mut ok = false;
    for _ in 0..50 {
        let r = c.run("NOOP");
        if r.last().unwrap().contains(" OK ") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "the session recovers without reconnecting");
    c.ok("STATUS INBOX (MESSAGES)");
    // RFC 9051 §6.4.5: "*" in an empty mailbox is a bad sequence number.
    let r = c.run("FETCH 1:* FLAGS");
    assert!(
        r[0].contains("BAD Invalid message sequence number"),
        "{r:?}"
    );
    fresh.ok(&format!("LOGIN alice@example.test \"{PW}\""));
}

/// Hostile input leaves memory bounded: a megabyte line, a literal bomb
/// after login, deep nesting and many literals, while we watch the
/// server's resident memory.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_keeps_memory_bounded() {
    let t = start(&[]);
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", t.child.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    let mut c = Imap::login(&t, "alice@example.test");
    c.ok("SELECT INBOX");
    let before = rss();
    for _ in 0..20 {
        // A megabyte line: read and thrown away in bounded chunks.
        let (mut h, _) = Imap::plain(t.imap);
        let mut big = vec![b'x'; 1 << 20];
        big.extend_from_slice(b"\r\n");
        h.send(b"a NOOP ");
        h.send(&big);
        assert!(h.line().starts_with("* BAD [TOOBIG]"));
        // Deep nesting and a literal bomb before login.
        let r = h.run(&format!("SEARCH {}", "(".repeat(10_000)));
        assert!(r[0].contains("BAD"), "{r:?}");
        h.send(b"b LOGIN {99999999}\r\n");
        assert!(h.line().starts_with("b NO [TOOBIG]"));
    }
    // After login the limit is the message size limit (25 MiB by default).
    c.n += 1;
    c.send(b"t50 APPEND INBOX {999999999999}\r\n");
    assert!(c.line().starts_with("t50 NO [TOOBIG]"));
    let after = rss();
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

/// Connections are limited per account and in total, with a reason.
#[tokio::test(flavor = "multi_thread")]
async fn connection_limits() {
    let t = start(&[
        ("TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT", "2"),
        ("TERN_IMAP__MAX_CONNECTIONS_PER_IP", "4"),
    ]);
    let _a = Imap::login(&t, "alice@example.test");
    let _b = Imap::login(&t, "alice@example.test");
    let mut c = Imap::tls(&t);
    let r = c.run(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(r[0].contains("NO [LIMIT]"), "{r:?}");
    let _d = Imap::tls(&t);
    // The fifth connection from this address is turned away at once.
    let s = TcpStream::connect(("127.0.0.1", t.imap)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut l = String::new();
    BufReader::new(s).read_line(&mut l).unwrap();
    assert!(l.starts_with("* BYE [UNAVAILABLE]"), "{l}");
}

/// mbsync (isync) syncs an account both ways: down to a Maildir, then a
/// local flag and a local new message back up.
#[tokio::test(flavor = "multi_thread")]
async fn mbsync_syncs_both_ways() {
    assert!(
        std::process::Command::new("mbsync")
            .arg("--version")
            .output()
            .is_ok(),
        "mbsync is not installed: ./scripts/test.sh installs it (Debian package isync)"
    );
    let t = start(&[]);
    t.deliver("alice@example.test", &msg("down1", "first\r\n"))
        .await;
    t.deliver("alice@example.test", &msg("down2", "second\r\n"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let cfg = dir.path().join("mbsyncrc");
    std::fs::write(
        &cfg,
        format!(
            "IMAPAccount tern\nHost localhost\nPort {port}\nUser alice@example.test\nPass \"{PW}\"\n\
             SSLType IMAPS\nCertificateFile {cert}\n\n\
             IMAPStore remote\nAccount tern\n\n\
             MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n\
             Channel all\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            port = t.imaps,
            cert = t.cert().display(),
            mail = mail.display(),
        ),
    )
    .unwrap();
    let sync = || {
        let out = std::process::Command::new("mbsync")
            .args(["-c", cfg.to_str().unwrap(), "-a"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mbsync: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sync();
    let files = |sub: &str| -> Vec<std::path::PathBuf> {
        let mut v = Vec::new();
        for d in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(mail.join(sub).join(d)) {
                v.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        v
    };
    let inbox = files("INBOX");
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    let texts: Vec<String> = inbox
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert!(texts.iter().any(|t| t.contains("Subject: down1")));
    assert!(
        mail.join("Archive").is_dir() && mail.join("Sent").is_dir(),
        "folders came down"
    );

    // Up: flag one message locally (Maildir info ":2,F") and add one.
    let one = inbox
        .iter()
        .find(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).contains("Subject: down1"));
    let one = one.unwrap();
    let cur = mail.join("INBOX/cur");
    std::fs::create_dir_all(&cur).unwrap();
    let base = one
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split(":2,")
        .next()
        .unwrap()
        .to_owned();
    std::fs::rename(one, cur.join(format!("{base}:2,FS"))).unwrap();
    std::fs::write(
        mail.join("INBOX/new/1700000000.local1.host"),
        b"From: alice@example.test\r\nSubject: written offline\r\n\r\nup\r\n",
    )
    .unwrap();
    sync();

    let mut c = Imap::login(&t, "alice@example.test");
    let r = c.ok("SELECT INBOX");
    assert!(has(&r, "* 3 EXISTS"), "{r:?}");
    let r = c.ok("SEARCH FLAGGED");
    assert_eq!(r[0], "* SEARCH 1\r\n", "the local flag went up");
    let r = c.ok("SEARCH SUBJECT offline");
    assert_eq!(r[0], "* SEARCH 3\r\n", "the local message went up");
}

/// The commands the other transcripts leave out: ENABLE, ID, CHECK,
/// SUBSCRIBE/UNSUBSCRIBE/LSUB, LIST-STATUS, CONDSTORE, UID EXPUNGE, CLOSE;
/// modified UTF-7 names for IMAP4rev1 and UTF-8 after ENABLE IMAP4rev2.
#[tokio::test(flavor = "multi_thread")]
async fn remaining_commands_transcript() {
    let t = start(&[]);
    for s in ["a", "b", "c"] {
        t.deliver("bob@example.test", &msg(s, "x\r\n")).await;
    }
    let mut c = Imap::login(&t, "bob@example.test");
    let r = c.ok("ID (\"name\" \"transcript\" \"version\" NIL)");
    assert!(r[0].starts_with("* ID (\"name\" \"Tern\")"), "{r:?}");
    let r = c.ok("ENABLE CONDSTORE");
    assert_eq!(r[0], "* ENABLED CONDSTORE\r\n");

    // rev1 names: modified UTF-7 in, UTF-8 stored, modified UTF-7 out.
    c.ok("CREATE \"Entw&APw-rfe\"");
    let r = c.ok("LIST \"\" \"Entw*\"");
    assert!(has(&r, "\"Entw&APw-rfe\""), "{r:?}");
    c.ok("SUBSCRIBE \"Entw&APw-rfe\"");
    let r = c.ok("LSUB \"\" \"*\"");
    assert!(has(&r, "* LSUB () \"/\" \"Entw&APw-rfe\""), "{r:?}");
    let r = c.ok("LIST (SUBSCRIBED) \"\" \"*\" RETURN (STATUS (MESSAGES UIDNEXT))");
    assert!(
        has(
            &r,
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Entw&APw-rfe\""
        ),
        "{r:?}"
    );
    assert!(
        has(&r, "* STATUS \"Entw&APw-rfe\" (MESSAGES 0 UIDNEXT 1)"),
        "{r:?}"
    );
    c.ok("UNSUBSCRIBE \"Entw&APw-rfe\"");
    let r = c.ok("LSUB \"\" \"Entw*\"");
    assert_eq!(r.len(), 1, "{r:?}");

    let r = c.ok("SELECT INBOX (CONDSTORE)");
    let hms: i64 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|l| l.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    c.ok("CHECK");
    let r = c.ok("STORE 1 +FLAGS (\\Seen)");
    assert!(r[0].contains("MODSEQ ("), "{r:?}");
    let r = c.ok(&format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})"));
    assert_eq!(r.len(), 2, "only the changed message: {r:?}");
    assert!(
        r[0].starts_with("* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ ("),
        "{r:?}"
    );
    let r = c.ok(&format!(
        "STORE 1,2 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)"
    ));
    assert!(r.last().unwrap().contains("[MODIFIED 1]"), "{r:?}");

    // UID EXPUNGE removes only the named deleted messages.
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok("UID EXPUNGE 2");
    assert_eq!(r[0], "* 2 EXPUNGE\r\n");
    assert_eq!(r.len(), 2, "{r:?}");
    // CLOSE expunges the rest silently and leaves the selected state.
    let r = c.ok("CLOSE");
    assert_eq!(r.len(), 1, "CLOSE sends no EXPUNGE: {r:?}");
    let r = c.run("FETCH 1 FLAGS");
    assert!(r[0].contains("BAD"), "{r:?}");
    let r = c.ok("STATUS INBOX (MESSAGES)");
    assert!(has(&r, "(MESSAGES 0)"), "{r:?}");

    // After ENABLE IMAP4rev2 names are plain UTF-8.
    let mut d = Imap::login(&t, "bob@example.test");
    d.ok("ENABLE IMAP4rev2");
    let r = d.ok("LIST \"\" \"Entw*\"");
    // Sent as a literal, which IMAP4rev1 and rev2 clients both read.
    assert!(has(&r, "{9}\r\nEntwürfe"), "{r:?}");
    let r = d.ok("SELECT INBOX");
    assert!(
        has(&r, "* LIST () \"/\" \"INBOX\""),
        "rev2 SELECT names the mailbox: {r:?}"
    );
}

/// Failed logins go through the core's shared throttle, and a silent
/// connection is dropped before login sooner than after.
#[tokio::test(flavor = "multi_thread")]
async fn login_throttle_and_autologout() {
    let t = start(&[("TERN_IMAP__AUTOLOGOUT_PRE_AUTH_SECS", "1")]);
    let mut c = Imap::tls(&t);
    let mut throttled = false;
    for _ in 0..20 {
        let r = c.run("LOGIN alice@example.test wrong");
        // RFC 5530: a lockout is an authentication failure, not an
        // outage; [UNAVAILABLE] would make clients report the server down.
        if r[0].contains("NO [AUTHENTICATIONFAILED] Too many failed logins") {
            throttled = true;
            break;
        }
        assert!(r[0].contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    }
    assert!(throttled, "the throttle never engaged");
    // Even the right password is refused while throttled.
    let r = c.run(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(
        r[0].contains("NO [AUTHENTICATIONFAILED] Too many failed logins"),
        "{r:?}"
    );
    assert!(!r[0].contains("UNAVAILABLE"), "{r:?}");

    let (mut idle, _) = Imap::plain(t.imap);
    let started = Instant::now();
    let l = idle.line();
    assert!(l.starts_with("* BYE Autologout"), "{l}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// RFC 3501 §2.3.2 `\Recent`: the first read-write session to see a
/// message has it; EXAMINE looks without taking it; later sessions do not.
#[tokio::test(flavor = "multi_thread")]
async fn recent_belongs_to_the_first_session() {
    let t = start(&[]);
    t.deliver("bob@example.test", &msg("r1", "x\r\n")).await;
    let mut peek = Imap::login(&t, "bob@example.test");
    let r = peek.ok("EXAMINE INBOX");
    assert!(has(&r, "* 1 RECENT"), "{r:?}");
    let r = peek.ok("STATUS Archive (RECENT)");
    assert!(has(&r, "(RECENT 0)"), "{r:?}");
    let mut first = Imap::login(&t, "bob@example.test");
    let r = first.ok("SELECT INBOX");
    assert!(has(&r, "* 1 RECENT"), "{r:?}");
    let r = first.ok("FETCH 1 FLAGS");
    assert!(r[0].contains("\\Recent"), "{r:?}");
    // New mail while selected: recent here, and nowhere else.
    t.deliver("bob@example.test", &msg("r2", "y\r\n")).await;
    let r = first.ok("NOOP");
    assert!(has(&r, "* 2 EXISTS") && has(&r, "* 2 RECENT"), "{r:?}");
    let r = first.ok("SEARCH RECENT");
    assert_eq!(r[0], "* SEARCH 1 2\r\n");
    let mut second = Imap::login(&t, "bob@example.test");
    let r = second.ok("SELECT INBOX");
    assert!(has(&r, "* 0 RECENT"), "{r:?}");
    let r = second.ok("SEARCH RECENT");
    assert_eq!(r[0], "* SEARCH\r\n");
    let r = second.ok("STATUS INBOX (RECENT)");
    assert!(has(&r, "(RECENT 0)"), "{r:?}");
}

/// Two nodes on one PostgreSQL: mail accepted over SMTP on one wakes an
/// IDLE client on the other within milliseconds (LISTEN/NOTIFY), also after
/// the other node's listening connection was cut; and what one session
/// stores the other sees.
#[tokio::test(flavor = "multi_thread")]
async fn idle_across_two_nodes() {
    let Some(pg) = common::PgDb::create("imap_nodes") else {
        return;
    };
    let env = [("TERN_DATABASE__URL", pg.url.as_str())];
    let a = start(&env);
    let b = common::start_node(&env);
    let mut c = Imap::login(&b, "bob@example.test");
    c.ok("SELECT INBOX");
    c.n += 1;
    c.send(b"t9 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    let send = |subject: &str| {
        let (mut smtp, _) = common::Client::connect(a.mx);
        smtp.cmd("EHLO other.test");
        smtp.cmd("MAIL FROM:<carol@remote.test>");
        smtp.cmd("RCPT TO:<bob@example.test>");
        smtp.cmd("DATA");
        let r = smtp.cmd(&format!("Subject: {subject}\r\n\r\nhi\r\n."));
        assert!(r.starts_with("250"), "{r}");
        Instant::now()
    };
    // Heard in milliseconds, not at a poll: three in a row each within
    // 300 ms (a 1 s poll would make that a 3% chance).
    for n in 1..=3 {
        let sent = send("across");
        assert_eq!(c.line(), format!("* {n} EXISTS\r\n"));
        assert_eq!(c.line(), format!("* {n} RECENT\r\n"));
        assert!(
            sent.elapsed() < Duration::from_millis(300),
            "took {:?}",
            sent.elapsed()
        );
    }

    // Cut every node's listening connection, and at once send more: a
    // NOTIFY said while B was not listening is lost, and B, back, looks
    // at the store instead.
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
        mailcore::cluster::LISTEN_APPLICATION_NAME
    ));
    let sent = send("while cut");
    assert_eq!(c.line(), "* 4 EXISTS\r\n");
    assert_eq!(c.line(), "* 4 RECENT\r\n");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
    c.send(b"DONE\r\n");
    c.until("t9");
    let mut other = Imap::login(&a, "bob@example.test");
    other.ok("SELECT INBOX");
    other.ok("STORE 1 +FLAGS (\\Flagged)");
    let r = c.ok("FETCH 1 FLAGS");
    assert!(r[0].contains("\\Flagged"), "{r:?}");
}

/// A new password (from the CLI: another process) and "sign out
/// everywhere" (from the web) end the account's IMAP, POP3 and web
/// sessions; another account's sessions go on.
#[tokio::test(flavor = "multi_thread")]
async fn password_change_and_sign_out_everywhere_end_sessions() {
    use common::{Client, cli_db, http_get, http_post_form, web_login};
    let t = start(&[]);
    let mut selected = Imap::login(&t, "alice@example.test");
    selected.ok("SELECT INBOX");
    let mut idling = Imap::login(&t, "alice@example.test");
    idling.ok("SELECT INBOX");
    idling.send(b"i1 IDLE\r\n");
    assert!(idling.line().starts_with("+ "));
    let mut bob = Imap::login(&t, "bob@example.test");
    let (mut pop, _) = Client::connect_tls(t.pop3s, &t.cert());
    assert!(pop.pop("USER alice@example.test").starts_with("+OK"));
    assert!(pop.pop(&format!("PASS {PW}")).starts_with("+OK"));
    let cookie = web_login(t.web, "alice@example.test", PW).expect("signed in");
    let (_, home) = http_get(t.web, "/", Some(&cookie));
    assert!(home.contains("Signed in as alice@example.test"));

    // An operator resets the password from the shell.
    let new_pw = "a brand new password";
    cli_db(
        t.dir.path(),
        None,
        &["user", "passwd", "alice@example.test"],
        &format!("{new_pw}\n"),
    );
    // The idling client is told within a few seconds, unprompted.
    let started = Instant::now();
    let bye = idling.line();
    assert!(bye.starts_with("* BYE [ALERT] Signed out"), "{bye}");
    assert!(started.elapsed() < Duration::from_secs(8));
    // The others at their next command.
    selected.send(b"n1 NOOP\r\n");
    let r = selected.line();
    assert!(r.starts_with("* BYE [ALERT] Signed out"), "{r}");
    let r = pop.pop("STAT");
    assert!(r.starts_with("-ERR [AUTH] Signed out"), "{r}");
    let (st, home) = http_get(t.web, "/", Some(&cookie));
    assert!(st == 303 && home.contains("location: /login"), "{home}");
    bob.ok("NOOP");
    // The new password works; the old one does not.
    let mut again = Imap::tls(&t);
    let r = again.run(&format!("LOGIN alice@example.test \"{PW}\""));
    assert!(r[0].contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    again.ok(&format!("LOGIN alice@example.test \"{new_pw}\""));

    // "Sign out everywhere" in the webmail: the button posts the CSRF token.
    let mut here = Imap::login(&t, "bob@example.test");
    let phone = web_login(t.web, "bob@example.test", PW).expect("signed in");
    let laptop = web_login(t.web, "bob@example.test", PW).expect("signed in");
    let (_, page) = http_get(t.web, "/", Some(&laptop));
    assert!(page.contains("Sign out everywhere"), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token on the page")
        .to_owned();
    let (status, _) = http_post_form(
        t.web,
        "/api/logout_everywhere",
        "csrf=wrong",
        &format!("Cookie: {laptop}\r\n"),
    );
    assert_eq!(status, 403, "a wrong CSRF token is refused");
    let (_, still) = http_get(t.web, "/", Some(&phone));
    assert!(still.contains("Signed in as bob@example.test"));
    let (status, resp) = http_post_form(
        t.web,
        "/api/logout_everywhere",
        &format!("csrf={csrf}"),
        &format!("Cookie: {laptop}\r\n"),
    );
    assert_eq!(status, 302, "{resp}");
    assert!(resp.contains("/login?signed_out=everywhere"), "{resp}");
    for c in [&phone, &laptop] {
        let (st, p) = http_get(t.web, "/", Some(c));
        assert!(st == 303 && p.contains("location: /login"), "{p}");
    }
    here.send(b"n1 NOOP\r\n");
    let r = here.line();
    assert!(r.starts_with("* BYE [ALERT] Signed out"), "{r}");
    let (_, login) = http_get(t.web, "/login?signed_out=everywhere", None);
    assert!(login.contains("You are signed out everywhere"));
}

/// Disabling an account ends its sessions too.
#[tokio::test(flavor = "multi_thread")]
async fn disabling_an_account_ends_its_sessions() {
    use common::cli_db;
    let t = start(&[]);
    let mut c = Imap::login(&t, "alice@example.test");
    c.ok("SELECT INBOX");
    cli_db(
        t.dir.path(),
        None,
        &["user", "disable", "alice@example.test"],
        "",
    );
    std::thread::sleep(mailcore::LOGIN_EPOCH_CACHE + Duration::from_millis(500));
    c.send(b"n1 NOOP\r\n");
    let r = c.line();
    assert!(r.starts_with("* BYE [ALERT] Signed out"), "{r}");
}

/// Keywords (RFC 9051 §2.3.2): STORE and APPEND keep them, FETCH, SEARCH
/// and a new SELECT show them, FLAGS and PERMANENTFLAGS list them with
/// `\*`, and another session watching the mailbox is told of a new one.
#[tokio::test(flavor = "multi_thread")]
async fn keywords_are_stored_listed_and_searchable() {
    let t = start(&[]);
    for s in ["k1", "k2"] {
        t.deliver("bob@example.test", &msg(s, "x\r\n")).await;
    }
    let mut c = Imap::login(&t, "bob@example.test");
    let r = c.ok("SELECT INBOX");
    assert!(
        has(
            &r,
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
        ),
        "{r:?}"
    );
    let mut watcher = Imap::login(&t, "bob@example.test");
    watcher.ok("SELECT INBOX");

    let r = c.ok("STORE 1 +FLAGS ($Junk \\Seen $label1)");
    assert_eq!(
        r[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk $label1)\r\n",
        "{r:?}"
    );
    assert!(
        has(
            &r,
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk $label1 \\*)]"
        ),
        "{r:?}"
    );
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Seen \\Recent $Junk $label1))"),
        "{r:?}"
    );
    // Case-insensitive: adding $JUNK again changes nothing.
    let r = c.ok("STORE 1 +FLAGS ($JUNK)");
    assert!(has(&r, "FLAGS (\\Seen \\Recent $Junk $label1))"), "{r:?}");
    let r = c.ok("STORE 1 -FLAGS ($label1)");
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Seen \\Recent $Junk))"),
        "{r:?}"
    );

    // The other session hears of the new keywords before the FETCH.
    let r = watcher.ok("NOOP");
    let flags_at = r.iter().position(|l| l.starts_with("* FLAGS (")).unwrap();
    let fetch_at = r.iter().position(|l| l.contains("FETCH")).unwrap();
    assert!(flags_at < fetch_at, "{r:?}");
    assert!(r[flags_at].contains("$Junk"), "{r:?}");
    assert!(has(&r, "FLAGS (\\Seen $Junk))"), "{r:?}");

    let r = c.ok("SEARCH KEYWORD $junk");
    assert_eq!(r[0], "* SEARCH 1\r\n");
    let r = c.ok("SEARCH UNKEYWORD $Junk");
    assert_eq!(r[0], "* SEARCH 2\r\n");

    // APPEND with keywords; COPY keeps them.
    let m = msg("k3", "appended\r\n");
    c.send(
        format!(
            "a1 APPEND INBOX ($Forwarded \\Flagged) {{{}+}}\r\n",
            m.len()
        )
        .as_bytes(),
    );
    c.send(&m);
    c.send(b"\r\n");
    let r = c.until("a1");
    assert!(r.last().unwrap().starts_with("a1 OK [APPENDUID"), "{r:?}");
    c.ok("CREATE Kept");
    c.ok("COPY 1:* Kept");

    // Bad flags are BAD, not silently dropped.
    let r = c.run("STORE 1 +FLAGS (\\Recent)");
    assert!(r[0].contains("BAD"), "{r:?}");
    let r = c.run("STORE 1 +FLAGS (\\Bogus)");
    assert!(r[0].contains("BAD"), "{r:?}");
    // Too many keywords on one message: NO [LIMIT], nothing changed.
    let many: Vec<String> = (0..65).map(|i| format!("kw{i}")).collect();
    let r = c.run(&format!("STORE 2 +FLAGS ({})", many.join(" ")));
    assert!(r.last().unwrap().contains("NO [LIMIT]"), "{r:?}");
    c.ok("LOGOUT");

    // A new connection: stored, listed and shown after a restart of the view.
    let mut d = Imap::login(&t, "bob@example.test");
    let r = d.ok("SELECT INBOX");
    assert!(
        has(
            &r,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk $Forwarded)"
        ),
        "{r:?}"
    );
    let r = d.ok("FETCH 1:* (UID FLAGS)");
    assert!(has(&r, "* 1 FETCH (UID 1 FLAGS (\\Seen $Junk))"), "{r:?}");
    assert!(has(&r, "* 2 FETCH (UID 2 FLAGS ())"), "{r:?}");
    assert!(
        has(&r, "* 3 FETCH (UID 3 FLAGS (\\Flagged $Forwarded))"),
        "{r:?}"
    );
    d.ok("SELECT Kept");
    let r = d.ok("FETCH 1:* FLAGS");
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Seen \\Recent $Junk))"),
        "{r:?}"
    );
    assert!(has(&r, "$Forwarded"), "{r:?}");
}

/// Every implicit-TLS port, and IMAP after STARTTLS, ends with a TLS
/// `close_notify` after LOGOUT/QUIT (RFC 8446 §6.1): rustls reports a
/// close without one as an `UnexpectedEof` error rather than end of file.
#[tokio::test(flavor = "multi_thread")]
async fn tls_sessions_end_with_close_notify() {
    let t = start(&[]);
    let read_rest = |mut s: Box<dyn common::Stream>, what: &str| {
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => String::from_utf8_lossy(&rest).into_owned(),
            Err(e) => panic!("{what}: no close_notify: {e}"),
        }
    };
    // Connects and reads the greeting line, so no command is sent early.
    let tls = |port: u16| {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut s = wrap_tls(s, &t.cert());
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {}
        s
    };

    let mut s = tls(t.imaps);
    s.write_all(b"a LOGOUT\r\n").unwrap();
    let rest = read_rest(s, "IMAPS 993");
    assert!(rest.contains("* BYE") && rest.contains("a OK"), "{rest}");

    let mut s = tls(t.pop3s);
    s.write_all(b"QUIT\r\n").unwrap();
    let rest = read_rest(s, "POP3S 995");
    assert!(rest.contains("+OK"), "{rest}");

    let mut s = tls(t.smtps);
    s.write_all(b"QUIT\r\n").unwrap();
    let rest = read_rest(s, "SMTPS 465");
    assert!(rest.contains("221 "), "{rest}");

    let (c, _) = Imap::plain(t.imap);
    let mut c = c.starttls(&t);
    c.send(b"b LOGOUT\r\n");
    let rest = read_rest(c.r.into_inner(), "IMAP STARTTLS 143");
    assert!(rest.contains("b OK"), "{rest}");
}

/// CREATE with a trailing separator and with missing superiors, LIST and
/// LSUB patterns at several levels, superiors that are not mailboxes,
/// and the LIST-EXTENDED selection options (RFC 3501 §6.3.3, §6.3.8-9,
/// RFC 9051 §6.3.4, RFC 5258, RFC 6154).
#[tokio::test(flavor = "multi_thread")]
async fn create_and_list_across_levels() {
    let t = start(&[]);
    let mut c = Imap::login(&t, "bob@example.test");
    let names = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with("* LIST") || l.starts_with("* LSUB"))
            .map(|l| l.trim_end().to_owned())
            .collect()
    };
    // The trailing separator is a declaration, not part of the name.
    c.ok("CREATE Projects/");
    let r = c.ok("LIST \"\" Projects");
    assert_eq!(names(&r), ["* LIST (\\HasNoChildren) \"/\" \"Projects\""]);
    let r = c.run("CREATE Projects");
    assert!(r[0].contains("NO [ALREADYEXISTS]"), "{r:?}");
    // Superiors are created too.
    c.ok("CREATE Projects/2026/Q4");
    let r = c.ok("LIST \"\" Projects/%");
    assert_eq!(
        names(&r),
        ["* LIST (\\HasChildren) \"/\" \"Projects/2026\""]
    );
    let r = c.ok("LIST Projects/ %/%");
    assert_eq!(
        names(&r),
        ["* LIST (\\HasNoChildren) \"/\" \"Projects/2026/Q4\""]
    );
    let r = c.ok("LIST \"\" Projects*");
    assert_eq!(names(&r).len(), 3, "{r:?}");
    let r = c.ok("LIST \"\" inbox");
    assert_eq!(names(&r), ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]);

    // A deleted parent stays in the hierarchy as \Noselect.
    c.ok("DELETE Projects/2026");
    let r = c.ok("LIST \"\" Projects/%");
    assert_eq!(
        names(&r),
        ["* LIST (\\Noselect \\HasChildren) \"/\" \"Projects/2026\""]
    );
    let r = c.run("SELECT Projects/2026");
    assert!(r[0].contains("NO"), "{r:?}");

    // SUBSCRIBE takes the declared form too; LSUB % shows an unsubscribed
    // parent of a subscribed child as \Noselect.
    // (CREATE subscribed none of them: the client subscribes.)
    c.ok("SUBSCRIBE Projects/2026/Q4/");
    let r = c.ok("LSUB \"\" Projects/%");
    assert_eq!(names(&r), ["* LSUB (\\Noselect) \"/\" \"Projects/2026\""]);
    let r = c.ok("LSUB \"\" Projects/*");
    assert_eq!(names(&r), ["* LSUB () \"/\" \"Projects/2026/Q4\""]);

    // LIST-EXTENDED: RECURSIVEMATCH reports the parents of subscribed
    // mailboxes with CHILDINFO; alone it is an error.
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %");
    assert!(
        names(&r).contains(
            &"* LIST (\\HasChildren) \"/\" \"Projects\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"
                .to_owned()
        ),
        "{r:?}"
    );
    let r = c.run("LIST (RECURSIVEMATCH) \"\" *");
    assert!(r[0].contains("BAD"), "{r:?}");
    // SPECIAL-USE selects only special-use mailboxes.
    let r = c.ok("LIST (SPECIAL-USE) \"\" *");
    let got = names(&r);
    assert!(
        !got.is_empty()
            && got.iter().all(|l| l.contains("\\Sent")
                || l.contains("\\Drafts")
                || l.contains("\\Trash")
                || l.contains("\\Junk")
                || l.contains("\\Archive")),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|l| l.contains("INBOX") || l.contains("Projects")),
        "{got:?}"
    );

    // UIDVALIDITY after RENAME and re-CREATE of the old name is new.
    let uv = |r: &[String]| -> u64 {
        r.iter()
            .find_map(|l| l.split("[UIDVALIDITY ").nth(1))
            .and_then(|x| x.split(']').next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    c.ok("CREATE Old");
    let first = uv(&c.ok("SELECT Old"));
    c.ok("UNSELECT");
    c.ok("RENAME Old New");
    c.ok("CREATE Old");
    let again = uv(&c.ok("SELECT Old"));
    let renamed = uv(&c.ok("SELECT New"));
    assert_eq!(renamed, first, "a renamed mailbox keeps its UIDVALIDITY");
    assert!(again > first, "{again} {first}");
}

/// SEARCH as RFC 9051 §6.4.4 and RFC 7162 §3.1.5 define it: SENT* by the
/// Date: header's own day, address keys on display names, local parts,
/// domains, groups and encoded words, HEADER with an empty value, and
/// ESEARCH with a MODSEQ criterion.
#[tokio::test(flavor = "multi_thread")]
async fn search_dates_addresses_headers_and_modseq() {
    let t = start(&[]);
    let m1 = "From: =?utf-8?q?Zo=C3=AB_Quinn?= <zoe@north.example>\r\n\
              To: Team: ann@team.example, bo@team.example;\r\n\
              Cc: \"Carl Cc\" <carl@cc.example>\r\n\
              Subject: late evening\r\nX-Empty:\r\n\
              Date: Mon, 30 Nov 2026 23:30:00 -0500\r\n\r\nbody one\r\n";
    let m2 = "From: plain@south.example\r\nTo: bob@example.test\r\n\
              Bcc: hidden@bcc.example\r\nSubject: early morning\r\n\
              Date: Tue, 1 Dec 2026 00:30:00 +0100\r\n\r\nbody two\r\n";
    t.deliver("bob@example.test", m1.as_bytes()).await;
    t.deliver("bob@example.test", m2.as_bytes()).await;
    let mut c = Imap::login(&t, "bob@example.test");
    c.ok("SELECT INBOX");
    let search = |c: &mut Imap, q: &str| -> String {
        let r = c.ok(&format!("SEARCH {q}"));
        r[0].trim_end().to_owned()
    };
    // 23:30 -0500 on the 30th is Dec 1 in UTC, but SENTON means the 30th;
    // 00:30 +0100 on Dec 1 is Nov 30 in UTC, but it was sent on the 1st.
    assert_eq!(search(&mut c, "SENTON 30-Nov-2026"), "* SEARCH 1");
    assert_eq!(search(&mut c, "SENTON 1-Dec-2026"), "* SEARCH 2");
    assert_eq!(search(&mut c, "SENTBEFORE 1-Dec-2026"), "* SEARCH 1");
    assert_eq!(search(&mut c, "SENTSINCE 1-Dec-2026"), "* SEARCH 2");
    // Display name (encoded word decoded), local part, domain.
    assert_eq!(search(&mut c, "FROM \"Zoë\""), "* SEARCH 1");
    assert_eq!(search(&mut c, "FROM zoe"), "* SEARCH 1");
    assert_eq!(search(&mut c, "FROM south.example"), "* SEARCH 2");
    // Group members and the group's name.
    assert_eq!(search(&mut c, "TO bo@team"), "* SEARCH 1");
    assert_eq!(search(&mut c, "TO Team"), "* SEARCH 1");
    assert_eq!(search(&mut c, "CC \"Carl Cc\""), "* SEARCH 1");
    assert_eq!(search(&mut c, "BCC hidden"), "* SEARCH 2");
    // HEADER with an empty string: every message that has the field.
    assert_eq!(search(&mut c, "HEADER X-Empty \"\""), "* SEARCH 1");
    assert_eq!(search(&mut c, "HEADER Bcc \"\""), "* SEARCH 2");
    assert_eq!(search(&mut c, "OR FROM zoe FROM plain"), "* SEARCH 1 2");

    // CONDSTORE ESEARCH with an entry name and type (RFC 7162 §3.1.5).
    c.ok("ENABLE CONDSTORE");
    let r = c.ok("STORE 2 +FLAGS.SILENT (\\Seen)");
    let m2_modseq = first_modseq(&r);
    let r = c.ok(&format!(
        "SEARCH RETURN (MIN MAX ALL COUNT) MODSEQ \"/flags/\\\\seen\" all {m2_modseq}"
    ));
    assert_eq!(
        r[0].trim_end(),
        format!(
            "* ESEARCH (TAG \"t{}\") MIN 2 MAX 2 ALL 2 COUNT 1 MODSEQ {m2_modseq}",
            c.n
        )
    );
    let r = c.ok("UID SEARCH MODSEQ 1");
    assert!(r[0].starts_with("* SEARCH 1 2 (MODSEQ "), "{r:?}");
    let r = c.run("SEARCH MODSEQ \"/flags/\\\\seen\" sometimes 1");
    assert!(r[0].contains("BAD"), "{r:?}");
}

/// QRESYNC (RFC 7162 §3.2): after ENABLE, a SELECT with the client's
/// UIDVALIDITY and MODSEQ reports what vanished and what changed, expunges
/// are VANISHED by UID, and UID FETCH takes the VANISHED modifier.
#[tokio::test(flavor = "multi_thread")]
async fn qresync_resynchronises_a_mailbox() {
    let t = start(&[]);
    for s in ["q1", "q2", "q3", "q4", "q5"] {
        t.deliver("bob@example.test", &msg(s, "x\r\n")).await;
    }
    let mut c = Imap::login(&t, "bob@example.test");
    let r = c.run("SELECT INBOX (QRESYNC (1 1))");
    assert!(r[0].contains("BAD"), "needs ENABLE first: {r:?}");
    let r = c.ok("ENABLE QRESYNC");
    assert_eq!(r[0], "* ENABLED QRESYNC\r\n");
    let r = c.ok("SELECT INBOX");
    let field = |r: &[String], key: &str| -> u64 {
        r.iter()
            .find_map(|l| l.split(&format!("[{key} ")).nth(1))
            .and_then(|x| x.split(']').next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    let (uv, hms) = (field(&r, "UIDVALIDITY"), field(&r, "HIGHESTMODSEQ"));
    c.ok("LOGOUT");

    // Another client changes things while this one is away.
    let mut o = Imap::login(&t, "bob@example.test");
    o.ok("SELECT INBOX");
    o.ok("STORE 2 +FLAGS (\\Flagged)");
    o.ok("STORE 3,4 +FLAGS.SILENT (\\Deleted)");
    o.ok("EXPUNGE");

    let mut c = Imap::login(&t, "bob@example.test");
    c.ok("ENABLE QRESYNC");
    let r = c.ok(&format!("SELECT INBOX (QRESYNC ({uv} {hms} 1:5))"));
    assert!(has(&r, "* VANISHED (EARLIER) 3:4\r\n"), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (")),
        "{r:?}"
    );
    assert!(
        !has(&r, "UID 1 FLAGS"),
        "unchanged messages are not sent: {r:?}"
    );
    // A stale UIDVALIDITY gets a plain SELECT.
    let r = c.ok("SELECT INBOX (QRESYNC (1 1))");
    assert!(!has(&r, "VANISHED"), "{r:?}");

    // Expunges in this session are VANISHED, not EXPUNGE.
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok("EXPUNGE");
    assert_eq!(r[0], "* VANISHED 1\r\n", "{r:?}");
    assert!(!has(&r, " EXPUNGE\r\n"), "{r:?}");
    let r = c.ok(&format!(
        "UID FETCH 1:5 (FLAGS) (CHANGEDSINCE {hms} VANISHED)"
    ));
    assert_eq!(r[0], "* VANISHED (EARLIER) 1,3:4\r\n", "{r:?}");
    assert!(has(&r, "UID 2 FLAGS (\\Flagged)"), "{r:?}");
    let r = c.run("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)");
    assert!(r[0].contains("BAD"), "{r:?}");
}

/// RFC 9051 §6.3.7: a subscription outlives its mailbox, a name may be
/// subscribed before it exists, and LSUB / LIST (SUBSCRIBED) show both.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_outlive_deleted_mailboxes() {
    let t = start(&[]);
    let mut c = Imap::login(&t, "bob@example.test");
    let names = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with("* LIST") || l.starts_with("* LSUB"))
            .map(|l| l.trim_end().to_owned())
            .collect()
    };
    c.ok("CREATE Lists");
    c.ok("SUBSCRIBE Lists");
    c.ok("DELETE Lists");
    let r = c.ok("LSUB \"\" Lists");
    assert_eq!(names(&r), ["* LSUB () \"/\" \"Lists\""]);
    let r = c.ok("LIST (SUBSCRIBED) \"\" Lists");
    assert_eq!(
        names(&r),
        ["* LIST (\\NonExistent \\Subscribed) \"/\" \"Lists\""]
    );
    // A plain LIST does not show what does not exist.
    let r = c.ok("LIST \"\" Lists");
    assert!(names(&r).is_empty(), "{r:?}");
    // Subscribing before creating.
    c.ok("SUBSCRIBE Later");
    let r = c.ok("LSUB \"\" *");
    assert!(
        names(&r).contains(&"* LSUB () \"/\" \"Later\"".to_owned()),
        "{r:?}"
    );
    c.ok("CREATE Later");
    let r = c.ok("LIST (SUBSCRIBED) \"\" Later");
    assert_eq!(
        names(&r),
        ["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Later\""]
    );
    // Unsubscribing the lone name removes it; a second time is NO.
    c.ok("UNSUBSCRIBE Lists");
    let r = c.ok("LSUB \"\" Lists");
    assert!(names(&r).is_empty(), "{r:?}");
    let r = c.run("UNSUBSCRIBE Lists");
    assert!(r.last().unwrap().contains("NO"), "{r:?}");
}

/// RFC 9051 §7.5.1: expunges made by other sessions are reported at the
/// next command that may report them. This node's expunges are known to
/// it by UID (the core's expunge log) and need no read of every UID; one
/// made elsewhere (another node, here a second core on the same
/// database) is noticed by the message count, and both at once are too.
#[tokio::test(flavor = "multi_thread")]
async fn expunges_made_here_and_elsewhere_are_reported() {
    let t = start(&[]);
    for n in 1..=5 {
        t.deliver("bob@example.test", &msg(&format!("m{n}"), "x"))
            .await;
    }
    let mut a = Imap::login(&t, "bob@example.test");
    let r = a.ok("SELECT INBOX");
    assert!(has(&r, "* 5 EXISTS"), "{r:?}");
    let mut b = Imap::login(&t, "bob@example.test");
    b.ok("SELECT INBOX");

    // Here: UIDs 2 and 4 expunged, and one new message.
    b.ok("UID STORE 2,4 +FLAGS.SILENT (\\Deleted)");
    b.ok("EXPUNGE");
    b.ok("APPEND INBOX {14+}\r\nSubject: f\r\n\r\n");
    let r = a.ok("NOOP");
    assert_eq!(
        r[..r.len() - 1]
            .iter()
            .filter(|l| l.contains("EXPUNGE") || l.contains("EXISTS"))
            .cloned()
            .collect::<Vec<_>>(),
        ["* 4 EXPUNGE\r\n", "* 2 EXPUNGE\r\n", "* 4 EXISTS\r\n"],
        "{r:?}"
    );
    let r = a.ok("FETCH 1:* UID");
    assert_eq!(
        r[..r.len() - 1],
        [
            "* 1 FETCH (UID 1)\r\n",
            "* 2 FETCH (UID 3)\r\n",
            "* 3 FETCH (UID 5)\r\n",
            "* 4 FETCH (UID 6)\r\n"
        ]
    );

    // Elsewhere: UID 3 goes through another core.
    let other = t.core().await;
    let bob = other.account("bob@example.test").await.unwrap().unwrap();
    let ib = other.mail(bob.id).open("INBOX").await.unwrap();
    ib.destroy(&[mailcore::Uid(3)]).await.unwrap();
    let r = a.ok("NOOP");
    assert!(has(&r, "* 2 EXPUNGE"), "{r:?}");
    let r = a.ok("FETCH 1:* UID");
    assert_eq!(r.len(), 4, "{r:?}");

    // Both at once: UID 5 here, UID 1 elsewhere. The log explains one of
    // the two, the count says two went: the UIDs are read.
    b.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)");
    b.ok("UID EXPUNGE 5");
    ib.destroy(&[mailcore::Uid(1)]).await.unwrap();
    let r = a.ok("NOOP");
    assert!(has(&r, "* 2 EXPUNGE") && has(&r, "* 1 EXPUNGE"), "{r:?}");
    let r = a.ok("FETCH 1:* UID");
    assert_eq!(r[..r.len() - 1], ["* 1 FETCH (UID 6)\r\n"], "{r:?}");
    // A session that selects now reads the kept index forward.
    let mut c = Imap::login(&t, "bob@example.test");
    let r = c.ok("SELECT INBOX");
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
    other.close().await;
}

/// COMPRESS=DEFLATE (RFC 4978): after the OK both directions are raw
/// DEFLATE, with a sync flush after each reply (§4), here read and written
/// by Python's zlib, an independent implementation. A literal body comes
/// through whole, a second COMPRESS is COMPRESSIONACTIVE, and LOGOUT ends
/// the deflate stream and then TLS with close_notify.
#[tokio::test(flavor = "multi_thread")]
async fn compress_deflate_both_ways() {
    let t = start(&[]);
    let body = "x".repeat(5000);
    t.deliver("alice@example.test", &msg("squeezed", &body))
        .await;
    let cert = t.cert();
    run_python(&format!(
        r#"
import socket, ssl, zlib
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {imaps})), server_hostname="localhost")
f = s.makefile("rb")
assert b"COMPRESS=DEFLATE" in f.readline()
s.sendall(b'a LOGIN alice@example.test "{pw}"\r\n')
while not f.readline().startswith(b"a OK"): pass
s.sendall(b"b COMPRESS DEFLATE\r\n")
line = f.readline()
assert line == b"b OK DEFLATE active\r\n", line
comp = zlib.compressobj(wbits=-15)
dec = zlib.decompressobj(wbits=-15)
buf = b""
def send(cmd):
    s.sendall(comp.compress(cmd) + comp.flush(zlib.Z_SYNC_FLUSH))
def until(tag):
    global buf
    while tag + b" " not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += dec.decompress(chunk)
    i = buf.index(tag + b" ")
    j = buf.index(b"\r\n", i) + 2
    out, buf = buf[:j], buf[j:]
    return out
send(b"c SELECT INBOX\r\n")
r = until(b"c")
assert b"* 1 EXISTS" in r and b"c OK [READ-WRITE]" in r, r
send(b"d FETCH 1 BODY.PEEK[TEXT]\r\n")
r = until(b"d")
assert b"{{5000}}\r\n" + b"x" * 5000 + b")\r\n" in r, r[:200]
send(b"e COMPRESS DEFLATE\r\n")
r = until(b"e")
assert r.endswith(b"e NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n"), r
send(b"f LOGOUT\r\n")
r = until(b"f")
assert b"* BYE" in r and b"f OK" in r, r
# The server ends the deflate stream, then TLS with close_notify: recv
# returns b"" (an abrupt close would raise SSLEOFError here).
rest = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    rest += chunk
dec.decompress(rest)
assert dec.eof, "the deflate stream was not ended"
"#,
        imaps = t.imaps,
        pw = PW,
    ));
}

/// What a run of Dovecot's imaptest against Tern found (scripts/imaptest.sh
/// runs it when its source is at hand), each checked as a client sees it.
#[tokio::test(flavor = "multi_thread")]
async fn corners_an_imaptest_run_found() {
    let t = start(&[]);
    t.deliver("bob@example.test", &msg("with-subject", "one\r\n"))
        .await;
    let no_subject = "From: a@x.example\r\nTo: team: (nobody yet) ;\r\n\
                      Cc: <@relay.example:route@h.example>\r\n\
                      Date: Sun, 29 Nov 2026 11:00:00 +0000\r\n\r\ntwo\r\n";
    t.deliver("bob@example.test", no_subject.as_bytes()).await;
    let forwarded = "From: f@x.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n\
                     Content-Type: message/rfc822\r\n\r\n\
                     From: g@y.example\r\nSubject: digest\r\n\
                     Content-Type: multipart/digest; boundary=\"d\"\r\n\r\n\
                     preamble\r\n--d\r\n\r\nSubject: in\r\n\r\ninner\r\n--d--\r\n\r\nepilogue\r\n";
    t.deliver("bob@example.test", forwarded.as_bytes()).await;
    let mut c = Imap::login(&t, "bob@example.test");
    let lists = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.contains("\"Lists"))
            .map(|l| l.trim_end().to_owned())
            .collect()
    };

    // CREATE does not subscribe (RFC 9051 §6.3.4 leaves it to the client,
    // as Dovecot does); LSUB % shows the unsubscribed parent of a
    // subscribed child as \Noselect.
    c.ok("CREATE Lists/");
    c.ok("CREATE Lists/rust");
    c.ok("CREATE Lists/go");
    c.ok("SUBSCRIBE Lists/rust");
    let r = c.ok("LSUB \"\" Lists*");
    assert_eq!(lists(&r), ["* LSUB () \"/\" \"Lists/rust\""]);
    let r = c.ok("LSUB \"\" %");
    assert_eq!(lists(&r), ["* LSUB (\\Noselect) \"/\" \"Lists\""]);
    // RFC 5258 §3.5: CHILDINFO tells of a subscribed child the reply does
    // not list; when another pattern lists the child, the parent goes.
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" Lists");
    assert_eq!(
        lists(&r),
        ["* LIST (\\HasChildren) \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]
    );
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (Lists Lists/rust)");
    assert_eq!(
        lists(&r),
        ["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Lists/rust\""]
    );

    // A mailbox made again under a deleted one's name gets a greater
    // UIDVALIDITY, also within the same second (RFC 9051 §2.3.1.1).
    let uidvalidity = |c: &mut Imap| -> u64 {
        let r = c.ok("STATUS Lists/go (UIDVALIDITY)");
        r[0].split("UIDVALIDITY ")
            .nth(1)
            .and_then(|x| x.trim_end().strip_suffix(')'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{r:?}"))
    };
    let before = uidvalidity(&mut c);
    c.ok("DELETE Lists/go");
    c.ok("CREATE Lists/go");
    let after = uidvalidity(&mut c);
    assert!(after > before, "{after} after {before}");

    c.ok("SELECT INBOX");
    // HEADER SUBJECT "" finds the messages that have a Subject field.
    let r = c.ok("SEARCH HEADER SUBJECT \"\"");
    assert_eq!(r[0], "* SEARCH 1 3\r\n");
    let r = c.ok("SEARCH NOT HEADER SUBJECT \"\"");
    assert_eq!(r[0], "* SEARCH 2\r\n");
    // ENVELOPE: a group holding only a comment has no member, and a
    // source route is the address's at-domain-list.
    let r = c.ok("FETCH 2 ENVELOPE");
    assert!(
        r[0].contains(" ((NIL NIL \"team\" NIL)(NIL NIL NIL NIL)) ((NIL \"@relay.example\" \"route\" \"h.example\")) "),
        "{r:?}"
    );
    // The text of a forwarded multipart message keeps its epilogue.
    let r = c.ok("FETCH 3 BODY.PEEK[1.TEXT]");
    assert!(
        r[0].ends_with("inner\r\n--d--\r\n\r\nepilogue\r\n)\r\n"),
        "{r:?}"
    );

    // RFC 7162 §3.1: FETCH MODSEQ turns CONDSTORE on; the first such
    // command reports HIGHESTMODSEQ, and STORE's FETCH replies carry
    // MODSEQ from then on.
    let r = c.ok("FETCH 1 (MODSEQ)");
    assert!(r[0].starts_with("* OK [HIGHESTMODSEQ "), "{r:?}");
    let m1 = first_modseq(&c.ok("STORE 1 +FLAGS (\\Seen)"));
    let m3 = first_modseq(&c.ok("STORE 3 +FLAGS (\\Seen)"));
    assert!(m3 > m1);
    // ESEARCH MIN alone reports the MODSEQ of the message it names.
    let r = c.ok("SEARCH RETURN (MIN) MODSEQ 1");
    assert_eq!(
        r[0],
        format!("* ESEARCH (TAG \"t{}\") MIN 1 MODSEQ {m1}\r\n", c.n)
    );
    let r = c.ok("SEARCH RETURN (MAX) MODSEQ 1");
    assert_eq!(
        r[0],
        format!("* ESEARCH (TAG \"t{}\") MAX 3 MODSEQ {m3}\r\n", c.n)
    );

    // MOVE within one mailbox: a new UID at the end, the old one expunged.
    let r = c.ok("MOVE 1 INBOX");
    assert!(
        r[0].starts_with("* OK [COPYUID ") && r[0].contains(" 1 4]"),
        "{r:?}"
    );
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    assert!(has(&r, "* 3 EXISTS"), "{r:?}");
    let r = c.ok("UID SEARCH ALL");
    assert_eq!(r[0], "* SEARCH 2 3 4\r\n");
}

/// ENVELOPE and BODYSTRUCTURE come from what Tern kept when the message
/// arrived, not from parsing it again: with the stored bytes changed
/// behind Tern's back, ENVELOPE still names the subject it arrived with,
/// while BODY[] and the header read show the bytes as they are now.
#[tokio::test(flavor = "multi_thread")]
async fn envelopes_come_from_what_was_kept_at_arrival() {
    let t = start(&[]);
    let mut c = Imap::login(&t, "bob@example.test");
    c.append_inbox(&msg("Original", "plain body\r\n"));
    let db = t.dir.path().join("tern.db");
    run_python(&format!(
        "import sqlite3\nc = sqlite3.connect({db:?})\n\
         (i, b) = c.execute('select id, bytes from blobs').fetchone()\n\
         assert b.count(b'Original') == 2, b\n\
         c.execute('update blobs set bytes = ? where id = ?', (b.replace(b'Subject: Original', b'Subject: Modified'), i))\n\
         c.commit()\n"
    ));
    c.ok("SELECT INBOX");
    let r = c.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE)");
    assert!(r[0].contains(" \"Original\" "), "{r:?}");
    assert!(
        r[0].contains(
            "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 1 "
        ),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[])");
    assert!(has(&r, "Subject: Modified\r\n\r\n BODY[] "), "{r:?}");
}

/// SEARCH BODY asks the full-text index first: a message it does not find
/// is not read (shown here by changing the stored bytes behind Tern's
/// back), while RFC 9051's substring rule still holds for the rest: a
/// string inside a word, and a word too long for the index, are found.
#[tokio::test(flavor = "multi_thread")]
async fn search_body_goes_through_the_index_and_keeps_substrings() {
    let t = start(&[]);
    let mut c = Imap::login(&t, "bob@example.test");
    let long = "z".repeat(60);
    for body in [
        "the quarterly invoice is attached\r\n".to_owned(),
        format!("a word too long to index: {long}q\r\n"),
    ] {
        c.append_inbox(&msg("indexed", &body));
    }
    let db = t.dir.path().join("tern.db");
    run_python(&format!(
        "import sqlite3\nc = sqlite3.connect({db:?})\n\
         for (i, b) in c.execute('select id, bytes from blobs').fetchall():\n\
         \x20   c.execute('update blobs set bytes = ? where id = ?', (b.replace(b'quarterly invoice', b'quarterly receipt'), i))\n\
         c.commit()\n"
    ));
    c.ok("SELECT INBOX");
    let search = |c: &mut Imap, q: &str| c.ok(&format!("SEARCH {q}"))[0].trim_end().to_owned();
    // The index knows "invoice", not "receipt": the bytes say otherwise,
    // and only the message the index found was read.
    assert_eq!(search(&mut c, "BODY \"quarterly receipt\""), "* SEARCH");
    assert_eq!(search(&mut c, "BODY \"quarterly invoice\""), "* SEARCH");
    // Substrings inside words: no word start to look up, every message read.
    assert_eq!(search(&mut c, "BODY uarterl"), "* SEARCH 1");
    assert_eq!(search(&mut c, "BODY eceip"), "* SEARCH 1");
    // A word over the index's length limit: that message is always read.
    assert_eq!(
        search(&mut c, &format!("BODY \"index: {}\"", &long[..20])),
        "* SEARCH 2"
    );
    assert_eq!(
        search(&mut c, "NOT BODY \"quarterly receipt\""),
        "* SEARCH 1 2"
    );
    assert_eq!(
        search(&mut c, "OR BODY \" zzzz\" SUBJECT indexed"),
        "* SEARCH 1 2"
    );
}

/// Snooze as every client sees it: the webmail snoozes a read message; it
/// waits in a Snoozed folder IMAP lists (the webmail's Snoozed list says
/// until when), survives a kill -9 of `tern serve`, and comes back to
/// INBOX on its own, unread and newest, as IMAP shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_snoozed_message_waits_in_snoozed_and_comes_back_unread_on_top() {
    let mut t = start(&[]);
    t.deliver("alice@example.test", &msg("snz", "snooze me\r\n"))
        .await;
    t.deliver("alice@example.test", &msg("later", "arrived after\r\n"))
        .await;
    let cookie = common::web_login(t.web, "alice@example.test", PW).expect("signed in");
    let (st, page) = common::http_get(t.web, "/read?f=INBOX&uid=1", Some(&cookie));
    assert_eq!(st, 200, "{page}");
    let csrf = common::csrf_of(&page);
    let (st, resp) = common::http_post_form(
        t.web,
        "/api/snooze_message",
        &format!("csrf={csrf}&f=INBOX&uid=1&when=3h&at="),
        &format!("Cookie: {cookie}\r\n"),
    );
    assert!(st == 303 || st == 302, "{st} {resp}");
    assert!(resp.contains("/mail?f=INBOX&snoozed="), "{resp}");
    let (_, list) = common::http_get(t.web, "/mail?f=Snoozed", Some(&cookie));
    assert!(list.contains("data-testid=\"snoozed-until\""), "{list}");
    let cert = t.cert();
    let imaps = t.imaps;
    let imap_state = |want_inbox: usize, want_snoozed: usize| {
        run_python(&format!(
            r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
M.login("alice@example.test", {pw:?})
typ, data = M.list()
assert any(b'"Snoozed"' in l for l in data), data
typ, data = M.status("Snoozed", "(MESSAGES)")
assert b"MESSAGES {want_snoozed}" in data[0], data
typ, data = M.select("INBOX")
assert data == [b"{want_inbox}"], data
if {want_inbox} == 2:
    typ, data = M.uid("SEARCH", None, "UNSEEN")
    unseen = data[0].split()
    typ, all_ = M.uid("SEARCH", None, "ALL")
    newest = all_[0].split()[-1]
    assert newest in unseen, (unseen, all_)
    typ, data = M.uid("FETCH", newest, "(BODY.PEEK[TEXT])")
    assert b"snooze me" in data[0][1], data
M.logout()
"#,
            cert = cert.display().to_string(),
            pw = PW,
        ))
    };
    imap_state(1, 1);
    t.restart();
    // Bring the time forward rather than wait three hours.
    let core = t.core().await;
    let mail = core.mail(
        core.account("alice@example.test")
            .await
            .unwrap()
            .unwrap()
            .id,
    );
    let snoozed = mail.open("Snoozed").await.unwrap();
    let uid = snoozed
        .list(0, 10, mailcore::SortOrder::UidAsc)
        .await
        .unwrap()
        .0[0]
        .uid;
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 1;
    mail.snooze(&snoozed, uid, soon).await.unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while mail
        .open("INBOX")
        .await
        .unwrap()
        .list(0, 10, mailcore::SortOrder::UidAsc)
        .await
        .unwrap()
        .1
        < 2
    {
        assert!(std::time::Instant::now() < end, "not back");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    imap_state(2, 0);
}
