//! Two `tern serve` processes on one real PostgreSQL behave as one server:
//! the POP3 maildrop lock, the failed-login throttle and `tern cluster
//! status` hold for the cluster, not for one node, and the webmail on one
//! node hears mail accepted on another. (IDLE across nodes is in imap.rs;
//! the queue's exactly-once delivery with several runners in queue.rs;
//! failover in failover.rs.)

mod common;

use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Write};

use common::{Client, PW, PgDb, Tern, start, start_node, web_login};

fn pop_login(t: &Tern, user: &str, pw: &str) -> (Client, String) {
    let (mut c, greeting) = Client::connect_tls_line(t.pop3s, &t.cert());
    assert!(greeting.starts_with("+OK"), "{greeting}");
    let r = c.pop(&format!("USER {user}"));
    assert!(r.starts_with("+OK"), "{r}");
    let r = c.pop(&format!("PASS {pw}"));
    (c, r)
}

fn cluster_status(t: &Tern, url: &str) -> String {
    common::cli_with(
        t.dir.path(),
        &[("TERN_DATABASE__URL", url)],
        &["cluster", "status"],
    )
}

/// RFC 1939 §8: one session per maildrop, whichever node it is on. A
/// node killed with its session open lets go when the lease ends.
#[test]
fn the_pop3_maildrop_lock_holds_across_nodes_until_a_dead_nodes_lease_ends() {
    let Some(pg) = PgDb::create("cluster_pop3") else {
        return;
    };
    let env = [
        ("TERN_DATABASE__URL", pg.url.as_str()),
        ("TERN_POP3__LOCK_LEASE_SECS", "3"),
    ];
    let mut a = start(&env);
    let b = start_node(&env);

    // A session that ends lets go at once.
    let (mut first, r) = pop_login(&b, "alice@example.test", PW);
    assert!(r.starts_with("+OK"), "{r}");
    assert!(first.pop("QUIT").starts_with("+OK"));
    drop(first);
    std::thread::sleep(Duration::from_millis(300));

    let (mut held, r) = pop_login(&a, "alice@example.test", PW);
    assert!(r.starts_with("+OK"), "{r}");
    let (_, r) = pop_login(&b, "alice@example.test", PW);
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    // Held past its lease: the session renews it.
    std::thread::sleep(Duration::from_secs(4));
    let (_, r) = pop_login(&b, "alice@example.test", PW);
    assert!(r.starts_with("-ERR [IN-USE]"), "renewed: {r}");
    assert!(held.pop("STAT").starts_with("+OK"));
    // Another account is not locked.
    let (_, r) = pop_login(&b, "bob@example.test", PW);
    assert!(r.starts_with("+OK"), "{r}");

    // Node A dies with the maildrop locked.
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = Instant::now();
    let (_, r) = pop_login(&b, "alice@example.test", PW);
    assert!(r.starts_with("-ERR [IN-USE]"), "still leased: {r}");
    let served = loop {
        std::thread::sleep(Duration::from_millis(250));
        let (mut c, r) = pop_login(&b, "alice@example.test", PW);
        if r.starts_with("+OK") {
            assert!(c.pop("STAT").starts_with("+OK"));
            break killed.elapsed();
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(killed.elapsed() < Duration::from_secs(10), "never let go");
    };
    assert!(served >= Duration::from_secs(1), "{served:?}");
}

/// 20 failed logins spread over two nodes trip a budget of 15 per account
/// and IP, though neither node alone saw more than 10.
#[test]
fn failed_logins_on_two_nodes_count_together() {
    let Some(pg) = PgDb::create("cluster_throttle") else {
        return;
    };
    let env = [
        ("TERN_DATABASE__URL", pg.url.as_str()),
        ("TERN_AUTH__MAX_FAILURES_PER_ACCOUNT_IP", "15"),
    ];
    let a = start(&env);
    let b = start_node(&env);
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (_, r) = pop_login(node, "alice@example.test", "wrong password");
        // The 15th failure (8 on one node, 7 on the other) locks the pair.
        let want = if i < 15 {
            "-ERR [AUTH]"
        } else {
            "-ERR [LOGIN-DELAY]"
        };
        assert!(r.starts_with(want), "attempt {i}: {r}");
    }
    for node in [&a, &b] {
        let (_, r) = pop_login(node, "alice@example.test", PW);
        assert!(r.starts_with("-ERR [LOGIN-DELAY]"), "{r}");
    }
    // Another account from the same IP is under its own budget.
    let (_, r) = pop_login(&b, "bob@example.test", PW);
    assert!(r.starts_with("+OK"), "{r}");
}

/// `tern cluster status` lists every node from its heartbeat, and one
/// that stopped as gone.
#[test]
fn cluster_status_lists_the_nodes_and_notices_one_gone() {
    let Some(pg) = PgDb::create("cluster_status") else {
        return;
    };
    let url = pg.url.as_str();
    let common = [
        ("TERN_DATABASE__URL", url),
        ("TERN_CLUSTER__HEARTBEAT_SECS", "1"),
    ];
    let a = start(&[common[0], common[1], ("TERN_CLUSTER__NODE_NAME", "node-a")]);
    let mut b = start_node(&[common[0], common[1], ("TERN_CLUSTER__NODE_NAME", "node-b")]);
    std::thread::sleep(Duration::from_millis(1500));
    let st = cluster_status(&a, url);
    assert!(st.contains("backend: postgres"), "{st}");
    assert!(st.contains("nodes up: 2 of 2"), "{st}");
    for name in ["node-a", "node-b"] {
        let row = st
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} missing: {st}"));
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols[1], "up", "{row}");
        assert_eq!(cols[2], env!("CARGO_PKG_VERSION"), "{row}");
    }
    let _ = b.child.kill();
    let _ = b.child.wait();
    std::thread::sleep(Duration::from_secs(5));
    let st = cluster_status(&a, url);
    assert!(st.contains("nodes up: 1 of 2"), "{st}");
    let row = st.lines().find(|l| l.starts_with("node-b\t")).unwrap();
    assert_eq!(row.split('\t').nth(1), Some("gone"), "{st}");
}

/// The webmail's live stream on node B (`/mail/events`, what an open
/// folder page listens to) reports mail accepted over SMTP on node A
/// within a second, with the folder's new count.
#[test]
fn the_webmail_on_one_node_hears_mail_accepted_on_another() {
    let Some(pg) = PgDb::create("cluster_web") else {
        return;
    };
    let env = [("TERN_DATABASE__URL", pg.url.as_str())];
    let a = start(&env);
    let b = start_node(&env);
    let cookie = web_login(b.web, "bob@example.test", PW).expect("signed in on B");
    let sock = std::net::TcpStream::connect(("127.0.0.1", b.web)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = sock.try_clone().unwrap();
    write!(
        w,
        "GET /mail/events?f=INBOX HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(sock);
    let mut seen = String::new();
    fn until(r: &mut impl BufRead, seen: &mut String, want: &str) -> Instant {
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "stream ended; so far: {seen}");
            seen.push_str(&line);
            if line.trim_end() == want {
                return Instant::now();
            }
        }
    }
    until(&mut r, &mut seen, "event: ready");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{seen}"
    );
    let (mut smtp, _) = Client::connect(a.mx);
    smtp.cmd("EHLO other.test");
    smtp.cmd("MAIL FROM:<carol@remote.test>");
    smtp.cmd("RCPT TO:<bob@example.test>");
    smtp.cmd("DATA");
    let r250 = smtp.cmd("Subject: live\r\n\r\nhi\r\n.");
    assert!(r250.starts_with("250"), "{r250}");
    let sent = Instant::now();
    until(&mut r, &mut seen, "event: exists");
    let heard = until(&mut r, &mut seen, "data: 1");
    assert!(
        heard - sent < Duration::from_secs(1),
        "heard after {:?}",
        heard - sent
    );
    // Without a session there is no stream.
    let (st, resp) = common::http_get(b.web, "/mail/events?f=INBOX", None);
    assert_eq!(st, 303, "{resp}");
}

/// An IMAP login on a node; the tagged reply.
fn imap_login(t: &Tern, user: &str) -> (Client, String) {
    let (mut c, greeting) = Client::connect_tls_line(t.imaps, &t.cert());
    assert!(greeting.starts_with("* OK"), "{greeting}");
    c.send(format!("a LOGIN {user} \"{PW}\"\r\n").as_bytes());
    loop {
        let l = c.line();
        if l.starts_with("a ") {
            return (c, l);
        }
    }
}

/// The per-account connection limit counts every node's sessions, and a
/// dead node's sessions stop counting after three of its heartbeats.
#[test]
fn the_per_account_connection_limit_counts_every_nodes_sessions() {
    let Some(pg) = PgDb::create("cluster_conns") else {
        return;
    };
    let env = [
        ("TERN_DATABASE__URL", pg.url.as_str()),
        ("TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT", "3"),
        ("TERN_CLUSTER__HEARTBEAT_SECS", "1"),
    ];
    let mut a = start(&env);
    let b = start_node(&env);
    let (_a1, r) = imap_login(&a, "alice@example.test");
    assert!(r.starts_with("a OK"), "{r}");
    let (_a2, r) = imap_login(&a, "alice@example.test");
    assert!(r.starts_with("a OK"), "{r}");
    let (b1, r) = imap_login(&b, "alice@example.test");
    assert!(r.starts_with("a OK"), "{r}");
    // Three open over two nodes: a fourth on either is refused.
    for node in [&a, &b] {
        let (_, r) = imap_login(node, "alice@example.test");
        assert!(r.starts_with("a NO [LIMIT]"), "{r}");
    }
    // Another account is not limited by alice's sessions.
    let (_, r) = imap_login(&b, "bob@example.test");
    assert!(r.starts_with("a OK"), "{r}");
    // A session that ends frees its slot on the other node too.
    drop(b1);
    let freed = Instant::now();
    let again = loop {
        let (c, r) = imap_login(&b, "alice@example.test");
        if r.starts_with("a OK") {
            break c;
        }
        assert!(freed.elapsed() < Duration::from_secs(5), "never freed: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Node A dies with two sessions: they stop counting after its lease.
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = Instant::now();
    let (_, r) = imap_login(&b, "alice@example.test");
    assert!(
        r.starts_with("a NO [LIMIT]"),
        "A's sessions still count: {r}"
    );
    let mut held = vec![again];
    while held.len() < 3 {
        let (c, r) = imap_login(&b, "alice@example.test");
        if r.starts_with("a OK") {
            held.push(c);
        } else {
            assert!(
                killed.elapsed() < Duration::from_secs(15),
                "A's sessions never ran out: {r}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
