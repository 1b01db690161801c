//! Outside accounts (the mail2web feature), end to end: a second,
//! independent `tern serve` plays the outside provider, a DNS server on
//! 127.0.0.1 answers for its made-up domains (A, SRV, MX), and the home
//! Tern is driven over HTTP as a browser without JavaScript would: find
//! the settings from the address, sign in, trust the self-signed
//! certificate, read the folder and the message. Also: a wrong password,
//! a private address with the default config, and hostile servers.

mod common;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fakedns::FakeDns;
use common::*;
use hickory_resolver::proto::rr::rdata::{MX, SRV};
use hickory_resolver::proto::rr::{Name, RData};

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

/// The outside provider: its own Tern with `jo@far.test` and one message.
async fn outside_provider() -> Tern {
    let t = start(&[("TERN_HOSTNAME", "mail.far.test")]);
    cli_db(t.dir.path(), None, &["domain", "add", "far.test"], "");
    cli_db(
        t.dir.path(),
        None,
        &["user", "add", "jo@far.test"],
        "far away pass\n",
    );
    t.deliver(
        "jo@far.test",
        b"From: Ann Example <ann@elsewhere.test>\r\nTo: jo@far.test\r\nSubject: =?UTF-8?Q?Caf=C3=A9_<b>news</b>?=\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <news-1@elsewhere.test>\r\n\r\nHello from far away.\r\n",
    )
    .await;
    t
}

fn location(resp: &str) -> String {
    resp.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or_else(|| panic!("no redirect in {resp}"))
        .trim()
        .to_owned()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs in at home as alice and returns (cookie, csrf).
fn home_session(home: &Tern) -> (String, String) {
    let cookie = web_login(home.web, "alice@example.test", PW).expect("signed in");
    let (st, page) = http_get(home.web, "/outside", Some(&cookie));
    assert_eq!(st, 200, "{page}");
    (cookie.clone(), csrf_of(&page))
}

fn home_for(dns: &FakeDns, outside_web: u16, allow_private: bool) -> Tern {
    home_with(dns, outside_web, allow_private, &[])
}

fn home_with(dns: &FakeDns, outside_web: u16, allow_private: bool, extra: &[(&str, &str)]) -> Tern {
    let web = outside_web.to_string();
    let ns = dns.addr();
    let mut env: Vec<(&str, &str)> = vec![
        (
            "TERN_OUTSIDE__ALLOW_PRIVATE",
            if allow_private { "true" } else { "false" },
        ),
        ("TERN_OUTSIDE__NAMESERVER", &ns),
        ("TERN_OUTSIDE__AUTOCONFIG_HTTP_PORT", &web),
        ("TERN_OUTSIDE__AUTOCONFIG_HTTPS_PORT", "1"),
        ("TERN_OUTSIDE__COMMAND_TIMEOUT_SECS", "3"),
        ("TERN_OUTSIDE__CONNECT_TIMEOUT_SECS", "3"),
    ];
    env.extend_from_slice(extra);
    start(&env)
}

#[tokio::test(flavor = "multi_thread")]
async fn add_by_address_trust_the_certificate_and_read() {
    let far = outside_provider().await;
    let dns = FakeDns::start();
    dns.a("autoconfig.far.test");
    dns.a("mail.far.test");
    let home = home_for(&dns, far.web, true);
    let (cookie, csrf) = home_session(&home);

    // Step 1: the address alone; discovery reads the provider's
    // autoconfig file (served by the outside Tern) and shows it.
    let (st, page) = http_get(
        home.web,
        "/outside/add?address=jo%40far.test&discover=1",
        Some(&cookie),
    );
    assert_eq!(st, 200, "{page}");
    assert!(
        page.contains("Found with the provider&#x27;s autoconfig file (http://autoconfig.far.test/mail/config-v1.1.xml")
            || page.contains("Found with the provider's autoconfig file (http://autoconfig.far.test/mail/config-v1.1.xml"),
        "{page}"
    );
    assert!(page.contains("value=\"mail.far.test\""), "{page}");
    assert!(page.contains(&format!("value=\"{}\"", far.imaps)), "{page}");

    let fields = |pw: &str, trust: &str| {
        form(&[
            ("csrf", &csrf),
            ("address", "jo@far.test"),
            ("password", pw),
            ("username", "jo@far.test"),
            ("protocol", "imap"),
            ("in_host", "mail.far.test"),
            ("in_port", &far.imaps.to_string()),
            ("in_security", "tls"),
            ("out_host", "mail.far.test"),
            ("out_port", &far.smtps.to_string()),
            ("out_security", "tls"),
            ("remember", "1"),
            ("trust", trust),
        ])
    };
    let cookie_h = format!("Cookie: {cookie}\r\n");

    // Step 2: the self-signed certificate is refused and shown.
    let (st, resp) = http_post_form(
        home.web,
        "/api/outside_add",
        &fields("far away pass", ""),
        &cookie_h,
    );
    assert!((300..400).contains(&st), "{resp}");
    let back = location(&resp);
    assert!(back.contains("cert="), "{back}");
    let (_, page) = http_get(home.web, &back, Some(&cookie));
    assert!(page.contains("data-testid=\"cert-problem\""), "{page}");
    assert!(
        page.contains("self-signed or from an unknown issuer"),
        "{page}"
    );
    let fp_at = back.find("cert=").unwrap() + 5;
    let fp: String = back[fp_at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(fp.len(), 64, "{back}");
    assert!(page.contains(&fp), "the page shows the fingerprint");
    let (_, listing) = http_get(home.web, "/outside", Some(&cookie));
    assert!(
        !listing.contains("jo@far.test</a>"),
        "nothing is saved before the login worked"
    );

    // A wrong password, with the certificate trusted: a clear refusal.
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_add",
        &fields("wrong", &fp),
        &cookie_h,
    );
    let back = location(&resp);
    let (_, page) = http_get(home.web, &back, Some(&cookie));
    assert!(page.contains("the server refused the login"), "{page}");

    // Step 3: trusted and the right password: saved, and the folder shows.
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_add",
        &fields("far away pass", &fp),
        &cookie_h,
    );
    let boxurl = location(&resp);
    assert!(boxurl.starts_with("/outside/box?a="), "{resp}");
    let (st, page) = http_get(home.web, &boxurl, Some(&cookie));
    assert_eq!(st, 200, "{page}");
    assert!(!page.contains("outside-error"), "{page}");
    assert!(page.contains(">1 message<"), "{page}");
    // The subject is decoded and its markup escaped.
    assert!(page.contains("Café &lt;b&gt;news&lt;/b&gt;"), "{page}");
    assert!(page.contains("Ann Example"), "{page}");
    assert!(page.contains("f=INBOX&amp;page=1\">INBOX<"), "{page}");

    let at = page.find("/outside/read?").unwrap();
    let read = page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&");
    let (st, msg) = http_get(home.web, &read, Some(&cookie));
    assert_eq!(st, 200, "{msg}");
    assert!(msg.contains("Hello from far away."), "{msg}");
    assert!(
        msg.contains("<title>Café &lt;b&gt;news&lt;/b&gt; · Tern</title>"),
        "{msg}"
    );

    // The password is sealed at rest: not in the database file.
    let db = std::fs::read(home.dir.path().join("tern.db")).unwrap_or_default();
    assert!(
        !db.windows(13).any(|w| w == b"far away pass"),
        "the outside password is stored in clear"
    );
    assert!(home.dir.path().join("outside.key").exists());

    // Actions act on the outside server: flag, then search finds it.
    let a_id = boxurl.trim_start_matches("/outside/box?a=").to_owned();
    let id_at = read.find("id=").unwrap() + 3;
    let msg_id = read[id_at..].to_owned();
    let act = |op: &str, target: &str, folder: &str| {
        let body = form(&[
            ("csrf", &csrf),
            ("a", &a_id),
            ("f", folder),
            ("id", &msg_id),
            ("op", op),
            ("target", target),
        ]);
        let (st, resp) = http_post_form(home.web, "/api/outside_msg_action", &body, &cookie_h);
        assert!((300..400).contains(&st), "{op}: {resp}");
        location(&resp)
    };
    act("flag", "", "INBOX");
    let (_, page) = http_get(home.web, &boxurl, Some(&cookie));
    assert!(page.contains("<td class=\"flag\">★"), "{page}");
    let (_, found) = http_get(
        home.web,
        &format!("{boxurl}&f=INBOX&q=far+away"),
        Some(&cookie),
    );
    assert!(found.contains(">1 message<"), "{found}");
    let (_, none) = http_get(
        home.web,
        &format!("{boxurl}&f=INBOX&q=nowhere-to-be-found"),
        Some(&cookie),
    );
    assert!(none.contains(">0 messages<"), "{none}");
    {
        // What the provider itself holds: \Flagged and \Seen (read above).
        let jo = far.core().await;
        let acct = jo.account("jo@far.test").await.unwrap().unwrap();
        let ib = jo.mail(acct.id).open("INBOX").await.unwrap();
        let m = ib.message(mailcore::Uid(1)).await.unwrap();
        assert!(m.flags.contains(mailcore::Flags::FLAGGED), "{:?}", m.flags);
        assert!(m.flags.contains(mailcore::Flags::SEEN), "{:?}", m.flags);
        jo.close().await;
    }

    // Reply through the provider's submission server, from jo's address,
    // to jo: the provider delivers it and files a copy in jo's Sent.
    let (st, compose) = http_get(
        home.web,
        &format!("/compose?mode=reply&a={a_id}&f=INBOX&id={msg_id}"),
        Some(&cookie),
    );
    assert_eq!(st, 200, "{compose}");
    assert!(compose.contains("Re: Café"), "{compose}");
    assert!(
        compose.contains(&format!("<option value=\"o:{a_id}\" selected")),
        "{compose}"
    );
    let boundary = "ternboundary42";
    let mut mp = String::new();
    for (k, v) in [
        ("csrf", csrf.as_str()),
        ("action", "send"),
        ("from", &format!("o:{a_id}")),
        ("to", "jo@far.test"),
        ("subject", "Re: news"),
        ("body", "A reply sent through far.test."),
        ("mode", "reply"),
        ("ref_f", "INBOX"),
        ("ref_a", &a_id),
        ("ref_id", &msg_id),
    ] {
        mp.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    mp.push_str(&format!("--{boundary}--\r\n"));
    let (st, resp) = http(
        home.web,
        &format!(
            "POST /compose HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{mp}",
            home.web,
            mp.len()
        ),
    );
    assert!((300..400).contains(&st), "{resp}");
    assert_eq!(
        location(&resp),
        format!("/outside/box?a={a_id}&sent=1"),
        "{resp}"
    );
    let delivered = far.inbox("jo@far.test").await;
    assert_eq!(
        delivered.len(),
        2,
        "the reply reached jo's INBOX at the provider"
    );
    let reply = String::from_utf8_lossy(&delivered[1]).into_owned();
    assert!(reply.contains("From: jo@far.test"), "{reply}");
    assert!(reply.contains("A reply sent through far.test."), "{reply}");
    assert!(reply.contains("In-Reply-To:"), "{reply}");
    {
        let jo = far.core().await;
        let acct = jo.account("jo@far.test").await.unwrap().unwrap();
        let sent = jo
            .mail(acct.id)
            .mailbox_status("Sent")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent.total, 1, "a copy in the provider's Sent");
        let ib = jo.mail(acct.id).open("INBOX").await.unwrap();
        let m = ib.message(mailcore::Uid(1)).await.unwrap();
        assert!(m.flags.contains(mailcore::Flags::ANSWERED), "{:?}", m.flags);
        jo.close().await;
    }

    // Move to Archive, then delete there (to Trash).
    let back = act("move", "Archive", "INBOX");
    assert!(back.contains("ok=move"), "{back}");
    let (_, archive) = http_get(home.web, &format!("{boxurl}&f=Archive"), Some(&cookie));
    assert!(archive.contains(">1 message<"), "{archive}");
    let back = act("delete", "", "Archive");
    assert!(back.contains("ok=delete"), "{back}");
    let (_, archive) = http_get(home.web, &format!("{boxurl}&f=Archive"), Some(&cookie));
    assert!(archive.contains(">0 messages<"), "{archive}");
    let (_, trash) = http_get(home.web, &format!("{boxurl}&f=Trash"), Some(&cookie));
    assert!(trash.contains(">1 message<"), "{trash}");

    // The outside server stopped: the page says so, the rest works.
    drop(far);
    let (st, page) = http_get(home.web, &boxurl, Some(&cookie));
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("data-testid=\"outside-error\""), "{page}");
    assert!(page.contains("cannot reach"), "{page}");
    let (st, inbox) = http_get(home.web, "/mail", Some(&cookie));
    assert_eq!(st, 200, "{inbox}");
}

#[tokio::test(flavor = "multi_thread")]
async fn srv_records_and_private_addresses() {
    let far = outside_provider().await;
    let dns = FakeDns::start();
    // No autoconfig host: discovery goes on to RFC 6186 SRV records.
    dns.a("imap.far.test");
    dns.add(
        "_imaps._tcp.far.test",
        RData::SRV(SRV::new(0, 1, far.imaps, name("imap.far.test"))),
    );
    dns.add(
        "_submissions._tcp.far.test",
        RData::SRV(SRV::new(0, 1, far.smtps, name("imap.far.test"))),
    );
    dns.add("far.test", RData::MX(MX::new(10, name("mx.far.test"))));
    // The default config: no private addresses.
    let home = home_for(&dns, far.web, false);
    let (cookie, csrf) = home_session(&home);
    let (_, page) = http_get(
        home.web,
        "/outside/add?address=jo%40far.test&discover=1",
        Some(&cookie),
    );
    assert!(page.contains("SRV records (RFC 6186)"), "{page}");
    assert!(page.contains("value=\"imap.far.test\""), "{page}");
    assert!(page.contains(&format!("value=\"{}\"", far.imaps)), "{page}");

    let body = form(&[
        ("csrf", &csrf),
        ("address", "jo@far.test"),
        ("password", "far away pass"),
        ("protocol", "imap"),
        ("in_host", "imap.far.test"),
        ("in_port", &far.imaps.to_string()),
        ("in_security", "tls"),
        ("remember", "1"),
    ]);
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_add",
        &body,
        &format!("Cookie: {cookie}\r\n"),
    );
    let back = location(&resp);
    let (_, page) = http_get(home.web, &back, Some(&cookie));
    assert!(
        page.contains("Tern does not connect to private or local addresses"),
        "{page}"
    );
    // An address literal is checked the same way.
    let body = body.replace("imap.far.test", "127.0.0.1");
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_add",
        &body,
        &format!("Cookie: {cookie}\r\n"),
    );
    let (_, page) = http_get(home.web, &location(&resp), Some(&cookie));
    assert!(
        page.contains("127.0.0.1: Tern does not connect to private or local addresses"),
        "{page}"
    );
}

/// A server that says nothing, sends one endless line, or announces a huge
/// literal: the attempt ends with a clear message in bounded time and
/// memory.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_servers_time_out_and_stay_bounded() {
    let dns = FakeDns::start();
    let home = home_for(&dns, 1, true);
    let (cookie, csrf) = home_session(&home);

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s); // accept and never answer
        }
    });
    let endless = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endless_port = endless.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(0usize));
    let sent2 = sent.clone();
    std::thread::spawn(move || {
        for mut s in endless.incoming().flatten() {
            let sent = sent2.clone();
            std::thread::spawn(move || {
                let chunk = [b'A'; 8192];
                let _ = s.write_all(b"* OK ");
                while s.write_all(&chunk).is_ok() {
                    *sent.lock().unwrap() += chunk.len();
                    if *sent.lock().unwrap() > 64 * 1024 * 1024 {
                        break;
                    }
                }
                let mut sink = [0u8; 64];
                let _ = s.read(&mut sink);
            });
        }
    });

    // A literal of 400 MB announced in the answer to STARTTLS, then bytes
    // (async-imap alone would size a buffer for all of it).
    let literal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let literal_port = literal.local_addr().unwrap().port();
    let sent3 = sent.clone();
    std::thread::spawn(move || {
        for mut s in literal.incoming().flatten() {
            let sent = sent3.clone();
            std::thread::spawn(move || {
                let _ = s.write_all(b"* OK ready\r\n");
                let mut cmd = [0u8; 256];
                let _ = s.read(&mut cmd);
                let _ = s.write_all(b"* 1 FETCH (BODY[] {400000000}\r\n");
                let chunk = [b'B'; 8192];
                while s.write_all(&chunk).is_ok() {
                    *sent.lock().unwrap() += chunk.len();
                    if *sent.lock().unwrap() > 128 * 1024 * 1024 {
                        break;
                    }
                }
            });
        }
    });

    for (port, expect) in [
        (silent_port, "the server did not answer in time"),
        (endless_port, "the server sent more than Tern accepts"),
        (literal_port, "the server sent more than Tern accepts"),
    ] {
        let body = form(&[
            ("csrf", &csrf),
            ("address", "jo@far.test"),
            ("password", "x"),
            ("protocol", "imap"),
            ("in_host", "127.0.0.1"),
            ("in_port", &port.to_string()),
            ("in_security", "starttls"),
        ]);
        let t0 = Instant::now();
        let (_, resp) = http_post_form(
            home.web,
            "/api/outside_add",
            &body,
            &format!("Cookie: {cookie}\r\n"),
        );
        assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
        let (_, page) = http_get(home.web, &location(&resp), Some(&cookie));
        assert!(page.contains(expect), "{expect}: {page}");
    }
    // Tern stopped reading after its budget: the server could not push
    // anywhere near its 64 MiB (socket buffers hold a few MiB at most).
    std::thread::sleep(Duration::from_millis(300));
    let pushed = *sent.lock().unwrap();
    assert!(pushed < 32 * 1024 * 1024, "servers pushed {pushed} bytes");
    // And the home server's memory never grew by anything like it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", home.child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 300 * 1024, "peak resident memory {peak_kb} kB");
}

/// A POP3 maildrop: list, read, delete, with the message named by UIDL.
#[tokio::test(flavor = "multi_thread")]
async fn pop3_account_lists_reads_and_deletes() {
    let far = outside_provider().await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_for(&dns, far.web, true);
    let (cookie, csrf) = home_session(&home);
    let cookie_h = format!("Cookie: {cookie}\r\n");
    let add = |trust: &str| {
        form(&[
            ("csrf", &csrf),
            ("address", "jo@far.test"),
            ("password", "far away pass"),
            ("protocol", "pop3"),
            ("in_host", "mail.far.test"),
            ("in_port", &far.pop3.to_string()),
            ("in_security", "starttls"),
            ("trust", trust),
        ])
    };
    let (_, resp) = http_post_form(home.web, "/api/outside_add", &add(""), &cookie_h);
    let back = location(&resp);
    let fp_at = back.find("cert=").expect("the certificate is shown first") + 5;
    let fp: String = back[fp_at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    let (_, resp) = http_post_form(home.web, "/api/outside_add", &add(&fp), &cookie_h);
    let boxurl = location(&resp);
    assert!(boxurl.starts_with("/outside/box?a="), "{resp}");
    let (_, page) = http_get(home.web, &boxurl, Some(&cookie));
    assert!(page.contains(">1 message<"), "{page}");
    assert!(page.contains("Café &lt;b&gt;news&lt;/b&gt;"), "{page}");
    assert!(
        !page.contains("Search this folder"),
        "POP3 has no search: {page}"
    );
    let at = page.find("/outside/read?").unwrap();
    let read = page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&");
    let (_, msg) = http_get(home.web, &read, Some(&cookie));
    assert!(msg.contains("Hello from far away."), "{msg}");
    assert!(!msg.contains("outside-flag"), "POP3 has no flags: {msg}");

    let a_id = boxurl.trim_start_matches("/outside/box?a=").to_owned();
    let msg_id = read[read.find("id=").unwrap() + 3..].to_owned();
    let body = form(&[
        ("csrf", &csrf),
        ("a", &a_id),
        ("f", "INBOX"),
        ("id", &msg_id),
        ("op", "delete"),
    ]);
    let (_, resp) = http_post_form(home.web, "/api/outside_msg_action", &body, &cookie_h);
    assert!(location(&resp).contains("ok=delete"), "{resp}");
    assert!(
        far.inbox("jo@far.test").await.is_empty(),
        "deleted on the provider"
    );
    let (_, page) = http_get(home.web, &boxurl, Some(&cookie));
    assert!(page.contains(">0 messages<"), "{page}");
}

async fn inbox_total(t: &Tern, user: &str) -> i64 {
    let core = t.core().await;
    let a = core.account(user).await.unwrap().unwrap();
    let n = core
        .mail(a.id)
        .mailbox_status("INBOX")
        .await
        .unwrap()
        .unwrap()
        .total;
    core.close().await;
    n
}

async fn deliver_many(t: &Tern, user: &str, n: usize, tag: &str) {
    let core = t.core().await;
    let a = core.account(user).await.unwrap().unwrap();
    for i in 0..n {
        let env = mailcore::delivery::Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![mailcore::delivery::LocalCopy::new(a.id, "")],
            remote: vec![],
        };
        let raw = format!(
            "From: sender@elsewhere.test\r\nTo: {user}\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@elsewhere.test>\r\n\r\nbody {i}\r\n"
        );
        core.deliver(&env, raw.as_bytes()).await.unwrap();
    }
    core.close().await;
}

/// Adds an outside account over HTTP, trusting the provider's
/// self-signed certificate; returns its id.
fn add_trusted(home: &Tern, cookie: &str, csrf: &str, fields: &[(&str, &str)]) -> String {
    let cookie_h = format!("Cookie: {cookie}\r\n");
    let mut f: Vec<(&str, &str)> = vec![("csrf", csrf), ("remember", "1")];
    f.extend_from_slice(fields);
    let (_, resp) = http_post_form(home.web, "/api/outside_add", &form(&f), &cookie_h);
    let back = location(&resp);
    let at = back.find("cert=").expect("the certificate is shown first") + 5;
    let fp: String = back[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    f.push(("trust", &fp));
    let (_, resp) = http_post_form(home.web, "/api/outside_add", &form(&f), &cookie_h);
    let boxurl = location(&resp);
    assert!(boxurl.starts_with("/outside/box?a="), "{resp}");
    boxurl.trim_start_matches("/outside/box?a=").to_owned()
}

/// jo@far.test over IMAPS, its certificate trusted; the account's id.
fn add_jo_imap(home: &Tern, far: &Tern, cookie: &str, csrf: &str) -> String {
    let imaps = far.imaps.to_string();
    add_trusted(
        home,
        cookie,
        csrf,
        &[
            ("address", "jo@far.test"),
            ("password", "far away pass"),
            ("protocol", "imap"),
            ("in_host", "mail.far.test"),
            ("in_port", &imaps),
            ("in_security", "tls"),
        ],
    )
}

/// Fetching in: POP3 with delete-after-fetch under a kill -9 of the home
/// server mid-run (every message arrives once, and leaves the provider),
/// IMAP by UID leaving the mail on the provider, new mail following, and
/// POP3 leaving a copy.
#[tokio::test(flavor = "multi_thread")]
async fn fetching_in_survives_kill_9_without_duplicates() {
    let far = outside_provider().await;
    deliver_many(&far, "jo@far.test", 299, "bulk").await;
    cli_db(
        far.dir.path(),
        None,
        &["user", "add", "kim@far.test"],
        "kim pass\n",
    );
    deliver_many(&far, "kim@far.test", 3, "kim").await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let mut home = home_with(
        &dns,
        far.web,
        true,
        &[("TERN_OUTSIDE__FETCH_INTERVAL_SECS", "1")],
    );
    let (cookie, csrf) = home_session(&home);
    let cookie_h = format!("Cookie: {cookie}\r\n");
    let pop_port = far.pop3s.to_string();
    let jo = add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "jo@far.test"),
            ("password", "far away pass"),
            ("protocol", "pop3"),
            ("in_host", "mail.far.test"),
            ("in_port", &pop_port),
            ("in_security", "tls"),
        ],
    );
    let before = inbox_total(&home, "alice@example.test").await;
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_fetch",
        &form(&[("csrf", &csrf), ("a", &jo), ("mode", "delete")]),
        &cookie_h,
    );
    assert!(location(&resp).contains("ok=fetch"), "{resp}");

    // Kill the home server as soon as the first messages are in.
    let t0 = Instant::now();
    loop {
        if inbox_total(&home, "alice@example.test").await > before {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing was fetched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = inbox_total(&home, "alice@example.test").await - before;
    home.restart();

    let t0 = Instant::now();
    loop {
        let here = inbox_total(&home, "alice@example.test").await - before;
        let there = inbox_total(&far, "jo@far.test").await;
        if here >= 300 && there == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "fetched {here} of 300, {there} left on the provider"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let core = home.core().await;
    let alice = core.account("alice@example.test").await.unwrap().unwrap();
    let ib = core.mail(alice.id).open("INBOX").await.unwrap();
    let (msgs, _) = ib.list(0, 1000, mailcore::SortOrder::UidAsc).await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for m in &msgs {
        let raw = ib.raw(m.uid).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        if text.contains("X-Tern-Fetched-From: jo@far.test") {
            let mid = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap_or_default()
                .to_owned();
            assert!(ids.insert(mid.clone()), "fetched twice: {mid}");
        }
    }
    assert_eq!(ids.len(), 300, "killed after {at_kill}: every message once");
    // An open core's pool keeps a maintenance task that can spin at the
    // runtime's end and hang the test: every core a test opens is closed.
    core.close().await;
    let (_, page) = http_get(
        home.web,
        "/outside",
        Some(&web_login(home.web, "alice@example.test", PW).unwrap()),
    );
    assert!(page.contains("300 messages fetched so far."), "{page}");

    // IMAP, keeping the mail on the provider; new mail follows by UID.
    let (cookie, csrf) = home_session(&home);
    let cookie_h = format!("Cookie: {cookie}\r\n");
    let imaps = far.imaps.to_string();
    let kim = add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "kim@far.test"),
            ("password", "kim pass"),
            ("protocol", "imap"),
            ("in_host", "mail.far.test"),
            ("in_port", &imaps),
            ("in_security", "tls"),
        ],
    );
    let base = inbox_total(&home, "alice@example.test").await;
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_fetch",
        &form(&[("csrf", &csrf), ("a", &kim), ("mode", "keep")]),
        &cookie_h,
    );
    assert!(location(&resp).contains("ok=fetch"), "{resp}");
    let wait_for = |want: i64| {
        let home = &home;
        async move {
            let t0 = Instant::now();
            while inbox_total(home, "alice@example.test").await < want {
                assert!(t0.elapsed() < Duration::from_secs(30), "waiting for {want}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(base + 3).await;
    assert_eq!(
        inbox_total(&far, "kim@far.test").await,
        3,
        "kept on the provider"
    );
    deliver_many(&far, "kim@far.test", 1, "later").await;
    wait_for(base + 4).await;
    // Several more runs bring nothing twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(inbox_total(&home, "alice@example.test").await, base + 4);
    // Delete-after-fetch is refused for IMAP.
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_fetch",
        &form(&[("csrf", &csrf), ("a", &kim), ("mode", "delete")]),
        &cookie_h,
    );
    assert!(location(&resp).contains("error="), "{resp}");

    // POP3, leaving a copy on the server: fetched once, still there.
    cli_db(
        far.dir.path(),
        None,
        &["user", "add", "lee@far.test"],
        "lee pass\n",
    );
    deliver_many(&far, "lee@far.test", 2, "lee").await;
    let lee = add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "lee@far.test"),
            ("password", "lee pass"),
            ("protocol", "pop3"),
            ("in_host", "mail.far.test"),
            ("in_port", &pop_port),
            ("in_security", "tls"),
        ],
    );
    let base = inbox_total(&home, "alice@example.test").await;
    let (_, resp) = http_post_form(
        home.web,
        "/api/outside_fetch",
        &form(&[("csrf", &csrf), ("a", &lee), ("mode", "keep")]),
        &cookie_h,
    );
    assert!(location(&resp).contains("ok=fetch"), "{resp}");
    wait_for(base + 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(inbox_total(&home, "alice@example.test").await, base + 2);
    assert_eq!(
        inbox_total(&far, "lee@far.test").await,
        2,
        "left on the provider"
    );
}

/// The unified inbox: the local INBOX and two outside accounts (IMAP and
/// POP3) in one list, newest first, each row tagged, searchable, and
/// opening the right message; outside flags follow after a refresh.
#[tokio::test(flavor = "multi_thread")]
async fn unified_inbox_merges_local_and_outside() {
    let far = outside_provider().await; // jo: "Café <b>news</b>", 3 Dec 10:00
    cli_db(
        far.dir.path(),
        None,
        &["user", "add", "kim@far.test"],
        "kim pass\n",
    );
    far.deliver(
        "kim@far.test",
        b"From: Kay <kay@elsewhere.test>\r\nSubject: oldest of all\r\nDate: Mon, 30 Nov 2026 08:00:00 +0000\r\nMessage-ID: <old@x.test>\r\n\r\nold\r\n",
    )
    .await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_with(
        &dns,
        far.web,
        true,
        &[("TERN_OUTSIDE__CACHE_INTERVAL_SECS", "1")],
    );
    home.deliver(
        "alice@example.test",
        b"From: Local Friend <friend@example.test>\r\nSubject: newest local\r\nDate: Fri, 04 Dec 2026 09:00:00 +0000\r\nMessage-ID: <loc@x.test>\r\n\r\nhi\r\n",
    )
    .await;
    let (cookie, csrf) = home_session(&home);
    let imaps = far.imaps.to_string();
    let pop3s = far.pop3s.to_string();
    add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "jo@far.test"),
            ("password", "far away pass"),
            ("protocol", "imap"),
            ("in_host", "mail.far.test"),
            ("in_port", &imaps),
            ("in_security", "tls"),
        ],
    );
    add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "kim@far.test"),
            ("password", "kim pass"),
            ("protocol", "pop3"),
            ("in_host", "mail.far.test"),
            ("in_port", &pop3s),
            ("in_security", "tls"),
        ],
    );
    let t0 = Instant::now();
    let page = loop {
        let (st, page) = http_get(home.web, "/unified", Some(&cookie));
        assert_eq!(st, 200, "{page}");
        if page.contains(">3 messages<") {
            break page;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Newest first across the three sources, each tagged with its account.
    let local = page.find("newest local").expect("local row");
    let jo = page.find("Café &lt;b&gt;news&lt;/b&gt;").expect("IMAP row");
    let kim = page.find("oldest of all").expect("POP3 row");
    assert!(local < jo && jo < kim, "{page}");
    assert!(
        page.contains("<span class=\"label\">jo@far.test<"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"label\">kim@far.test<"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"label\">alice@example.test<"),
        "{page}"
    );

    // Search covers all of them.
    let (_, found) = http_get(home.web, "/unified?q=news", Some(&cookie));
    assert!(found.contains(">1 message<"), "{found}");
    assert!(found.contains("Café"), "{found}");
    let (_, found) = http_get(home.web, "/unified?q=oldest", Some(&cookie));
    assert!(
        found.contains(">1 message<") && found.contains("oldest of all"),
        "{found}"
    );

    // A row opens its message on its account.
    let at = page[..kim].rfind("/outside/read?").unwrap();
    let read = page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&");
    let (_, msg) = http_get(home.web, &read, Some(&cookie));
    assert!(msg.contains("old") && msg.contains("kim@far.test"), "{msg}");

    // Flagged at the provider: the cache follows on its next refresh.
    {
        let fc = far.core().await;
        let a = fc.account("jo@far.test").await.unwrap().unwrap();
        let ib = fc.mail(a.id).open("INBOX").await.unwrap();
        ib.set_flags(
            &[mailcore::Uid(1)],
            mailcore::messages::FlagOp::Add,
            mailcore::Flags::FLAGGED,
        )
        .await
        .unwrap();
        fc.close().await;
    }
    let t0 = Instant::now();
    loop {
        let (_, page) = http_get(home.web, "/unified", Some(&cookie));
        let jo = page.find("Café &lt;b&gt;news").unwrap();
        let row_start = page[..jo].rfind("<tr").unwrap();
        if page[row_start..jo].contains("★") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Paging by key through the links a reader follows: 60 more local
    // messages (most in the same second, so ties are broken by UID).
    deliver_many(&home, "alice@example.test", 60, "bulk").await;
    let link = |page: &str, rel: &str| -> String {
        let at = page
            .find(&format!("rel=\"{rel}\""))
            .unwrap_or_else(|| panic!("no {rel} link: {page}"));
        let start = page[..at].rfind("href=\"").unwrap() + 6;
        let end = start + page[start..].find('"').unwrap();
        page[start..end].replace("&amp;", "&")
    };
    let subjects = |page: &str| -> Vec<String> {
        page.split("<td class=\"subject\">")
            .skip(1)
            .map(|r| r[r.find('>').unwrap() + 1..r.find("</a>").unwrap()].replace("<!>", ""))
            .collect()
    };
    let (_, first) = http_get(home.web, "/unified", Some(&cookie));
    assert!(first.contains("Messages 1–50 of 63"), "{first}");
    assert!(!first.contains("rel=\"prev\""), "{first}");
    let (_, second) = http_get(home.web, &link(&first, "next"), Some(&cookie));
    assert!(second.contains("Messages 51–63 of 63"), "{second}");
    assert!(!second.contains("rel=\"next\""), "{second}");
    let (a, b) = (subjects(&first), subjects(&second));
    assert_eq!((a.len(), b.len()), (50, 13));
    let mut all: Vec<&String> = a.iter().chain(b.iter()).collect();
    assert_eq!(all.last().map(|s| s.as_str()), Some("oldest of all"));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 63, "each row once: {a:?} {b:?}");
    let (_, back) = http_get(home.web, &link(&second, "prev"), Some(&cookie));
    assert_eq!(subjects(&back), a, "Newer leads back to the same page");
    assert!(back.contains("Messages 1–50 of 63"), "{back}");
}

/// For bench/unified-inbox.sh (not in the suite): the unified inbox with
/// two outside accounts of 10,000 messages each; prints server time p50
/// and p99 for the first page, a deep page and a search.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn unified_inbox_render_time() {
    let n: usize = std::env::var("TERN_UNIFIED_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let far = outside_provider().await;
    cli_db(
        far.dir.path(),
        None,
        &["user", "add", "kim@far.test"],
        "kim pass\n",
    );
    let t0 = Instant::now();
    deliver_many(&far, "jo@far.test", n - 1, "jo").await;
    deliver_many(&far, "kim@far.test", n, "kim").await;
    println!(
        "filled two outside INBOXes with {n} messages each in {:?}",
        t0.elapsed()
    );
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_with(
        &dns,
        far.web,
        true,
        &[("TERN_OUTSIDE__CACHE_INTERVAL_SECS", "1")],
    );
    let (cookie, csrf) = home_session(&home);
    let imaps = far.imaps.to_string();
    for (addr, pw) in [
        ("jo@far.test", "far away pass"),
        ("kim@far.test", "kim pass"),
    ] {
        add_trusted(
            &home,
            &cookie,
            &csrf,
            &[
                ("address", addr),
                ("password", pw),
                ("protocol", "imap"),
                ("in_host", "mail.far.test"),
                ("in_port", &imaps),
                ("in_security", "tls"),
            ],
        );
    }
    let t0 = Instant::now();
    let want = format!(">{} messages<", 2 * n);
    loop {
        let (_, page) = http_get(home.web, "/unified", Some(&cookie));
        if page.contains(&want) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "cache not filled");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("header cache filled ({} rows) in {:?}", 2 * n, t0.elapsed());
    // The deep page is reached as a reader would: by following "Older"
    // from the first page, halfway down the list.
    let deep = (2 * n / 50 / 2).max(1);
    let mut deep_path = "/unified".to_owned();
    for _ in 1..deep {
        let (_, page) = http_get(home.web, &deep_path, Some(&cookie));
        let at = page.find("rel=\"next\"").expect("an Older link");
        let start = page[..at].rfind("href=\"").unwrap() + 6;
        let end = start + page[start..].find('"').unwrap();
        deep_path = page[start..end].replace("&amp;", "&");
    }
    for (label, path, runs) in [
        ("page 1", "/unified".to_owned(), 200),
        ("deep page", deep_path.clone(), 50),
        ("search", "/unified?q=kim+42".to_owned(), 50),
    ] {
        let mut total = Vec::new();
        let mut listed = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let (st, page) = http_get(home.web, &path, Some(&cookie));
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(st, 200);
            let at = page.find("Listed in ").expect("timing line") + 10;
            let ms: f64 = page[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            listed.push(ms);
        }
        let pct = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        };
        println!(
            "{label:>10} ({path}): whole request p50 {:.1} ms, p99 {:.1} ms; store listing p50 {:.1} ms, p99 {:.1} ms",
            pct(&mut total, 0.5),
            pct(&mut total, 0.99),
            pct(&mut listed, 0.5),
            pct(&mut listed, 0.99)
        );
    }
}

/// Live new mail (JavaScript on uses this stream): IMAP IDLE at the
/// provider becomes an `exists` event on /outside/events.
#[tokio::test(flavor = "multi_thread")]
async fn live_new_mail_over_server_sent_events() {
    use std::io::{BufRead, BufReader};
    let far = outside_provider().await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_for(&dns, far.web, true);
    let (cookie, csrf) = home_session(&home);
    let a = add_jo_imap(&home, &far, &cookie, &csrf);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", home.web)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /outside/events?a={a}&f=INBOX HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut seen = String::new();
    let mut until = |want: &str, seen: &mut String| {
        let t0 = Instant::now();
        while !seen.contains(want) {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("stream ended before {want:?}: {seen}");
            }
            seen.push_str(&line);
            assert!(t0.elapsed() < Duration::from_secs(30), "{seen}");
        }
    };
    until("event: ready", &mut seen);
    assert!(seen.contains("text/event-stream"), "{seen}");
    // Give the server a moment to be in IDLE, then new mail arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Over SMTP, so the provider's own process sees it (its IDLE sessions
    // hear of new mail from its in-process change feed).
    let (mut c, _) = Client::connect(far.mx);
    for (line, want) in [
        ("EHLO tester.example", "250"),
        ("MAIL FROM:<x@elsewhere.test>", "250"),
        ("RCPT TO:<jo@far.test>", "250"),
        ("DATA", "354"),
    ] {
        let r = c.cmd(line);
        assert!(r.starts_with(want), "{line}: {r}");
    }
    let r = c.cmd("Subject: live one\r\n\r\nnow\r\n.");
    assert!(r.starts_with("250"), "{r}");
    until("event: exists", &mut seen);
    until("data: 2", &mut seen);
}

/// An outside message's HTML is cleaned into the same sandboxed frame as
/// local mail (no script, remote images held back), and its attachments
/// download with the bytes the sender attached.
#[tokio::test(flavor = "multi_thread")]
async fn outside_html_is_sandboxed_and_attachments_download() {
    let far = outside_provider().await;
    far.deliver(
        "jo@far.test",
        b"From: Ann <ann@elsewhere.test>\r\nSubject: with html\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p onclick=\"alert(1)\">Hi <b>there</b></p><script>alert(2)</script><img src=\"https://tracker.example/p.gif\">\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"notes.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--XX--\r\n",
    )
    .await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_for(&dns, far.web, true);
    let (cookie, csrf) = home_session(&home);
    let a = add_jo_imap(&home, &far, &cookie, &csrf);
    let (_, page) = http_get(
        home.web,
        &format!("/outside/read?a={a}&f=INBOX&id=2"),
        Some(&cookie),
    );
    assert!(page.contains("data-testid=\"outside-html\""), "{page}");
    assert!(
        page.contains("sandbox=\"allow-popups allow-popups-to-escape-sandbox\""),
        "{page}"
    );
    assert!(page.contains("1 remote image(s) hidden"), "{page}");
    assert!(page.contains("notes.bin"), "{page}");

    let (st, frame) = http_get(
        home.web,
        &format!("/outside/msg/body?a={a}&f=INBOX&id=2"),
        Some(&cookie),
    );
    assert_eq!(st, 200, "{frame}");
    assert!(frame.contains("Hi <b>there</b>"), "{frame}");
    assert!(
        !frame.contains("<script") && !frame.contains("onclick"),
        "{frame}"
    );
    assert!(!frame.contains("tracker.example/p.gif\""), "{frame}");
    let csp = frame
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-security-policy:")
        })
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'none'") || csp.contains("default-src 'none'"),
        "{csp}"
    );

    let (st, att) = http_get(
        home.web,
        &format!("/outside/msg/att?a={a}&f=INBOX&id=2&n=0"),
        Some(&cookie),
    );
    assert_eq!(st, 200, "{att}");
    assert!(
        att.to_ascii_lowercase()
            .contains("content-disposition: attachment; filename=\"notes.bin\""),
        "{att}"
    );
    assert!(
        att.ends_with("\u{0}\u{1}\u{2}\u{3}\u{4}\u{5}"),
        "the attached bytes: {att:?}"
    );
    // Another user's session gets nothing of it.
    let bob = web_login(home.web, "bob@example.test", PW).unwrap();
    let (st, _) = http_get(
        home.web,
        &format!("/outside/msg/att?a={a}&f=INBOX&id=2&n=0"),
        Some(&bob),
    );
    assert_eq!(st, 404);
}

/// IMAP connections to the provider: the webmail keeps logged-in sessions
/// between requests, so clicking around costs a NOOP, not a new TLS
/// connection and LOGIN each time.
#[tokio::test(flavor = "multi_thread")]
async fn outside_imap_sessions_are_reused_between_requests() {
    let far = start(&[
        ("TERN_HOSTNAME", "mail.far.test"),
        ("TERN_WEB__METRICS_TOKEN", "metrics-secret"),
    ]);
    cli_db(far.dir.path(), None, &["domain", "add", "far.test"], "");
    cli_db(
        far.dir.path(),
        None,
        &["user", "add", "jo@far.test"],
        "far away pass\n",
    );
    far.deliver(
        "jo@far.test",
        b"From: a@b.test\r\nSubject: one\r\n\r\nx\r\n",
    )
    .await;
    let imap_connections = || {
        let (_, m) = http(
            far.web,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer metrics-secret\r\nConnection: close\r\n\r\n",
        );
        m.lines()
            .find(|l| l.starts_with("tern_connections_total{protocol=\"imap\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    // The INBOX watch holds a connection of its own; off here, so the
    // count is the webmail's alone.
    let home = home_with(&dns, far.web, true, &[("TERN_OUTSIDE__WATCH_MAX", "0")]);
    let (cookie, csrf) = home_session(&home);
    let a = add_jo_imap(&home, &far, &cookie, &csrf);
    {
        let fc = far.core().await;
        let jo = fc.account("jo@far.test").await.unwrap().unwrap();
        fc.mail(jo.id)
            .create_mailbox("Entwürfe", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        fc.close().await;
    }
    let before = imap_connections();
    for _ in 0..5 {
        let (st, page) = http_get(home.web, &format!("/outside/box?a={a}"), Some(&cookie));
        assert_eq!(st, 200);
        assert!(page.contains(">1 message<"), "{page}");
        // The provider sends the name in modified UTF-7; it reads as text
        // and the link keeps the server's form.
        assert!(
            page.contains("f=Entw%26APw-rfe&amp;page=1\">Entwürfe<"),
            "{page}"
        );
    }
    for _ in 0..2 {
        let (_, msg) = http_get(
            home.web,
            &format!("/outside/read?a={a}&f=INBOX&id=1"),
            Some(&cookie),
        );
        assert!(msg.contains("one"), "{msg}");
    }
    let used = imap_connections() - before;
    // One request at a time: the session the account check logged in is
    // reused by every page after it (without the pool: 12 connections).
    assert!(used <= 1, "{used} new IMAP connections for 7 pages");
}

/// Posts the compose form as a browser without JavaScript would, sending
/// from outside account `a`; the response.
fn compose_from_outside(
    home: &Tern,
    cookie: &str,
    csrf: &str,
    a: &str,
    to: &str,
    body: &str,
) -> (u16, String) {
    let boundary = "ternboundary43";
    let mut mp = String::new();
    for (k, v) in [
        ("csrf", csrf),
        ("action", "send"),
        ("from", &format!("o:{a}")),
        ("to", to),
        ("subject", "from the outside address"),
        ("body", body),
    ] {
        mp.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    mp.push_str(&format!("--{boundary}--\r\n"));
    http(
        home.web,
        &format!(
            "POST /compose HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{mp}",
            home.web,
            mp.len()
        ),
    )
}

/// A separate login for the outgoing server is the one sending uses.
#[tokio::test(flavor = "multi_thread")]
async fn a_separate_outgoing_login_is_used_for_sending() {
    let far = outside_provider().await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_for(&dns, far.web, true);
    let (cookie, csrf) = home_session(&home);
    let imaps = far.imaps.to_string();
    let smtps = far.smtps.to_string();
    let a = add_trusted(
        &home,
        &cookie,
        &csrf,
        &[
            ("address", "jo@far.test"),
            ("password", "far away pass"),
            ("protocol", "imap"),
            ("in_host", "mail.far.test"),
            ("in_port", &imaps),
            ("in_security", "tls"),
            ("out_host", "mail.far.test"),
            ("out_port", &smtps),
            ("out_security", "tls"),
            ("smtp_username", "jo@far.test"),
            ("smtp_password", "not the password"),
        ],
    );
    // Reading uses the incoming login and works; sending uses the
    // outgoing one, which the provider refuses.
    let (_, page) = http_get(home.web, &format!("/outside/box?a={a}"), Some(&cookie));
    assert!(page.contains(">1 message<"), "{page}");
    let (st, resp) = compose_from_outside(&home, &cookie, &csrf, &a, "jo@far.test", "hello");
    assert!((300..400).contains(&st), "{resp}");
    let back = location(&resp);
    assert!(back.starts_with("/compose?draft="), "{back}");
    let (_, page) = http_get(home.web, &back, Some(&cookie));
    assert!(
        page.contains("Not sent") && page.contains("refused the login"),
        "{page}"
    );
    assert_eq!(far.inbox("jo@far.test").await.len(), 1, "nothing was sent");
}

/// The unified inbox follows the webmail's own actions at once, and a new
/// account's INBOX joins it right after it is added, whatever the refresh
/// interval (an hour here).
#[tokio::test(flavor = "multi_thread")]
async fn unified_inbox_follows_actions_at_once() {
    let far = outside_provider().await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_with(
        &dns,
        far.web,
        true,
        &[("TERN_OUTSIDE__CACHE_INTERVAL_SECS", "3600")],
    );
    let (cookie, csrf) = home_session(&home);
    let a = add_jo_imap(&home, &far, &cookie, &csrf);
    let row = |page: &str| -> Option<String> {
        let at = page.find("Café &lt;b&gt;news")?;
        let start = page[..at].rfind("<tr")?;
        let end = at + page[at..].find("</tr>")?;
        Some(page[start..end].to_owned())
    };
    let t0 = Instant::now();
    let first = loop {
        let (_, page) = http_get(home.web, "/unified", Some(&cookie));
        if let Some(r) = row(&page) {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never cached: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(first.contains("class=\"unread\""), "{first}");
    // Reading marks it seen in the list at once.
    let (_, _) = http_get(
        home.web,
        &format!("/outside/read?a={a}&f=INBOX&id=1"),
        Some(&cookie),
    );
    let (_, page) = http_get(home.web, "/unified", Some(&cookie));
    assert!(!row(&page).unwrap().contains("class=\"unread\""), "{page}");
    let act = |op: &str| {
        let body = form(&[
            ("csrf", &csrf),
            ("a", &a),
            ("f", "INBOX"),
            ("id", "1"),
            ("op", op),
        ]);
        let (st, resp) = http_post_form(
            home.web,
            "/api/outside_msg_action",
            &body,
            &format!("Cookie: {cookie}\r\n"),
        );
        assert!((300..400).contains(&st), "{resp}");
    };
    act("flag");
    let (_, page) = http_get(home.web, "/unified", Some(&cookie));
    assert!(row(&page).unwrap().contains("★"), "{page}");
    act("delete");
    let (_, page) = http_get(home.web, "/unified", Some(&cookie));
    assert!(row(&page).is_none(), "{page}");
    assert!(page.contains(">0 messages<"), "{page}");
}

/// Changes made at the provider by another client reach the unified inbox
/// within seconds, though the refresh interval is an hour: an IDLE watch
/// on the outside INBOX reports them. The flag goes on the oldest of 251
/// messages, outside the newest 200 whose flags a refresh reads anyway.
#[tokio::test(flavor = "multi_thread")]
async fn unified_inbox_follows_other_clients_within_seconds() {
    let far = outside_provider().await;
    deliver_many(&far, "jo@far.test", 250, "bulk").await;
    let dns = FakeDns::start();
    dns.a("mail.far.test");
    let home = home_with(
        &dns,
        far.web,
        true,
        &[
            ("TERN_OUTSIDE__CACHE_INTERVAL_SECS", "3600"),
            ("TERN_WEB__METRICS_TOKEN", "metrics-secret"),
        ],
    );
    let (cookie, csrf) = home_session(&home);
    add_jo_imap(&home, &far, &cookie, &csrf);
    let wait_for = |path: &'static str, what: &str, ok: &dyn Fn(&str) -> bool| {
        let t0 = Instant::now();
        loop {
            let (_, page) = http_get(home.web, path, Some(&cookie));
            if ok(&page) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "{what} never showed: {page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("/unified", "the cache", &|p| p.contains(">251 messages<"));
    // Another client at the provider (Python's imaplib).
    let cert = far.cert();
    let imaps = far.imaps;
    let elsewhere = |lines: &str| {
        run_python(&format!(
            r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
M.login("jo@far.test", "far away pass")
M.select("INBOX")
{lines}
M.logout()
"#
        ))
    };
    // The watch starts once the account exists; wait for its IDLE.
    let t0 = Instant::now();
    loop {
        let (_, m) = http(
            home.web,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer metrics-secret\r\nConnection: close\r\n\r\n",
        );
        if m.lines().any(|l| l == "tern_outside_watched_inboxes 1") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "never watched: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    elsewhere(r#"M.store("1", "+FLAGS", "(\\Flagged)")"#);
    let news_row = |p: &str| -> Option<String> {
        let at = p.find("Café &lt;b&gt;news")?;
        let start = p[..at].rfind("<tr")?;
        Some(p[start..at].to_owned())
    };
    wait_for("/unified?q=news", "the flag set elsewhere", &|p| {
        news_row(p).is_some_and(|r| r.contains("★"))
    });
    elsewhere(
        r#"M.append("INBOX", None, None, b"From: Zed <zed@elsewhere.test>\r\nSubject: appended elsewhere\r\n\r\nhi\r\n")"#,
    );
    wait_for("/unified", "mail appended elsewhere", &|p| {
        p.contains("appended elsewhere") && p.contains(">252 messages<")
    });
    elsewhere(
        r#"M.store("1", "+FLAGS", "(\\Deleted)")
M.expunge()"#,
    );
    wait_for("/unified", "an expunge elsewhere", &|p| {
        p.contains(">251 messages<")
    });
    let (_, page) = http_get(home.web, "/unified?q=news", Some(&cookie));
    assert!(news_row(&page).is_none(), "{page}");
}

/// Discovery's last two steps probe the standard ports (993, 465...): the
/// provider listens on them on 127.0.0.2, which needs root (CI has it;
/// TERN_SKIP_ROOT_TESTS=1 skips, as for the storage fault tests).
#[tokio::test(flavor = "multi_thread")]
async fn discovery_by_mx_host_and_common_names() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        if std::env::var("TERN_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("!!! discovery on standard ports: SKIPPED (not root) !!!");
            return;
        }
        panic!("binding 993 and 465 needs root; TERN_SKIP_ROOT_TESTS=1 skips this");
    }
    let far = start(&[
        ("TERN_HOSTNAME", "mx.far.test"),
        ("TERN_LISTENERS__IMAPS", "127.0.0.2:993"),
        ("TERN_LISTENERS__SMTPS", "127.0.0.2:465"),
    ]);
    let dns = FakeDns::start();
    let provider = Ipv4Addr::new(127, 0, 0, 2);
    // far.test: no autoconfig, no SRV, an MX.
    dns.add("far.test", RData::MX(MX::new(10, name("mx.far.test"))));
    dns.a_at("mx.far.test", provider);
    // near.test: nothing but an imap. host.
    dns.a_at("imap.near.test", provider);
    dns.a_at("smtp.near.test", provider);
    let home = home_for(&dns, far.web, true);
    let (cookie, _) = home_session(&home);
    let (_, page) = http_get(
        home.web,
        "/outside/add?address=jo%40far.test&discover=1",
        Some(&cookie),
    );
    assert!(
        page.contains("the domain&#x27;s mail exchanger mx.far.test")
            || page.contains("the domain's mail exchanger mx.far.test"),
        "{page}"
    );
    assert!(page.contains("value=\"mx.far.test\""), "{page}");
    assert!(
        page.contains("value=\"993\"") && page.contains("value=\"465\""),
        "{page}"
    );
    let (_, page) = http_get(
        home.web,
        "/outside/add?address=sam%40near.test&discover=1",
        Some(&cookie),
    );
    assert!(
        page.contains("the common host name imap.near.test"),
        "{page}"
    );
    assert!(page.contains("value=\"smtp.near.test\""), "{page}");
    drop(far);
}
