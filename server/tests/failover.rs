//! PostgreSQL failover under SMTP load: two `tern serve` nodes on a
//! primary and a synchronous streaming standby (`scripts/pg-pair.sh`),
//! with a multi-host URL. The primary is killed and the standby promoted
//! mid-load; both nodes return to service without a restart, and every
//! message answered `250` is in its mailbox, once.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, PW, Tern, start, start_node};

fn pair_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-pair.sh")
}

/// The pair's directory; both servers are stopped when it goes.
struct Pair {
    dir: tempfile::TempDir,
    ports: (u16, u16),
}

impl Pair {
    fn start() -> Option<Pair> {
        let have_pg = std::fs::read_dir("/usr/lib/postgresql").is_ok();
        if !have_pg {
            if std::env::var("TERN_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("TERN_REQUIRE_PG=1 but PostgreSQL is not installed");
            }
            eprintln!("!!! failover: SKIPPED (no PostgreSQL) !!!");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(pair_script())
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-pair.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut it = text.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        let ports = (it.next().unwrap(), it.next().unwrap());
        Some(Pair { dir, ports })
    }

    fn fail_over(&self) {
        let st = Command::new(pair_script())
            .arg("fail")
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "pg-pair.sh fail");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new(pair_script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// One message to bob over port 25; true when answered 250.
fn send(t: &Tern, subject: &str) -> bool {
    let (mut c, greeting) = Client::connect(t.mx);
    if !greeting.starts_with("220") {
        return false;
    }
    c.cmd("EHLO other.test");
    if !c.cmd("MAIL FROM:<carol@remote.test>").starts_with("250") {
        return false;
    }
    if !c.cmd("RCPT TO:<bob@example.test>").starts_with("250") {
        return false;
    }
    if !c.cmd("DATA").starts_with("354") {
        return false;
    }
    c.cmd(&format!("Subject: {subject}\r\n\r\nfailover\r\n."))
        .starts_with("250")
}

/// The subjects in bob's INBOX as IMAP shows them on this node, or None
/// while the node cannot log in or read.
fn subjects(t: &Tern) -> Option<Vec<String>> {
    let (mut c, greeting) = Client::connect_tls_line(t.imaps, &t.cert());
    if !greeting.starts_with("* OK") {
        return None;
    }
    let mut run = |tag: &str, cmd: &str| -> Vec<String> {
        c.send(format!("{tag} {cmd}\r\n").as_bytes());
        let mut lines = Vec::new();
        loop {
            let l = c.line();
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    };
    let r = run("a", &format!("LOGIN bob@example.test \"{PW}\""));
    if !r.last()?.starts_with("a OK") {
        return None;
    }
    let r = run("b", "SELECT INBOX");
    if !r.last()?.starts_with("b OK") {
        return None;
    }
    let exists = r.iter().find_map(|l| {
        l.strip_prefix("* ")?
            .strip_suffix(" EXISTS\r\n")?
            .parse::<u32>()
            .ok()
    })?;
    if exists == 0 {
        return Some(Vec::new());
    }
    let r = run("c", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    if !r.last()?.starts_with("c OK") {
        return None;
    }
    Some(
        r.iter()
            .filter_map(|l| l.strip_prefix("Subject: "))
            .map(|s| s.trim_end().to_owned())
            .collect(),
    )
}

#[test]
fn nodes_follow_a_promoted_standby_and_lose_nothing_acknowledged() {
    let Some(pair) = Pair::start() else {
        return;
    };
    let (p1, p2) = pair.ports;
    let url = format!(
        "postgres://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/postgres?target_session_attrs=read-write"
    );
    let env = [("TERN_DATABASE__URL", url.as_str())];
    let mut a = start(&env);
    let mut b = start_node(&env);
    let mut accepted = Vec::new();
    for i in 0..20 {
        let subject = format!("before-{i}");
        let node = if i % 2 == 0 { &a } else { &b };
        assert!(
            send(node, &subject),
            "{subject} refused before the failover"
        );
        accepted.push(subject);
    }
    pair.fail_over();
    let failed_at = Instant::now();
    // Mail keeps coming while the nodes find the new primary: each `250`
    // means on disk (the spool), whichever database answers.
    for i in 0..40 {
        let subject = format!("during-{i}");
        let node = if i % 2 == 0 { &a } else { &b };
        if send(node, &subject) {
            accepted.push(subject);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        accepted.len() >= 50,
        "most mail accepted: {}",
        accepted.len()
    );
    let want: BTreeSet<String> = accepted.iter().cloned().collect();
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(got) = subjects(node) {
                let set: BTreeSet<String> = got.iter().cloned().collect();
                if set == want {
                    assert_eq!(got.len(), want.len(), "each message once");
                    break;
                }
                assert!(set.is_subset(&want), "unexpected mail: {set:?}");
            }
            assert!(
                Instant::now() < deadline,
                "not all acknowledged mail reached the promoted standby ({:?} after the failover)",
                failed_at.elapsed()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Both nodes took the new primary without a restart.
    for node in [&mut a, &mut b] {
        assert!(node.child.try_wait().unwrap().is_none(), "a node exited");
    }
}
