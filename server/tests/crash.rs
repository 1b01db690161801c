//! kill -9 of `tern serve` at random moments under SMTP load: every message
//! that got `250` is in its mailbox after the restart, exactly once
//! (DESIGN.md rule 1). Spool writes and ingest are both in flight when the
//! kill comes.
//!
//! `TERN_CRASH_CYCLES` sets the number of kills (default 6 here; the
//! bench/spool-crash.sh script runs 1,000) and `TERN_CRASH_REPORT` names
//! a file for the counts.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::start;

/// One SMTP transaction; `Ok(true)` only for a `250` after the data.
fn send_one(port: u16, token: &str) -> std::io::Result<bool> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut reply = || -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    };
    let ok = |r: &str, code: &str| r.starts_with(code);
    if !ok(&reply()?, "220") {
        return Ok(false);
    }
    w.write_all(b"EHLO crash.test\r\n")?;
    if !ok(&reply()?, "250") {
        return Ok(false);
    }
    w.write_all(b"MAIL FROM:<load@remote.example>\r\n")?;
    if !ok(&reply()?, "250") {
        return Ok(false);
    }
    w.write_all(b"RCPT TO:<alice@example.test>\r\n")?;
    if !ok(&reply()?, "250") {
        return Ok(false);
    }
    w.write_all(b"DATA\r\n")?;
    if !ok(&reply()?, "354") {
        return Ok(false);
    }
    let body = format!(
        "From: load@remote.example\r\nTo: alice@example.test\r\nSubject: {token}\r\n\
         Message-ID: <{token}@remote.example>\r\n\r\n{}\r\n.\r\n",
        "crash test body line\r\n".repeat(40)
    );
    w.write_all(body.as_bytes())?;
    let got = reply()?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(got.starts_with("250"))
}

/// A cheap varying number (no rand in this crate's tests).
fn jitter(seed: u64, max: u64) -> u64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_duplicates_nothing() {
    let cycles: u64 = std::env::var("TERN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut t = start(&[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut attempts = 0u64;
    let started = Instant::now();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for th in 0..6 {
            let (stop, acked, port) = (stop.clone(), acked.clone(), t.mx);
            senders.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let token = format!("crash-{cycle}-{th}-{n}");
                    n += 1;
                    match send_one(port, &token) {
                        Ok(true) => acked.lock().unwrap().push(token),
                        // The kill came mid-transaction: not acknowledged.
                        Ok(false) | Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                n
            }));
        }
        // Somewhere between a few and a few hundred messages in.
        std::thread::sleep(Duration::from_millis(
            30 + jitter(
                cycle.wrapping_mul(7919) + started.elapsed().as_nanos() as u64,
                400,
            ),
        ));
        t.restart();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            attempts += s.join().unwrap();
        }
    }
    // A last restart with no load: whatever the last kill left is found.
    t.restart();
    // Under this load the spool takes mail faster than a debug build
    // stores it, so a backlog may wait here (that is what a spool is for).
    t.settle_within(Duration::from_secs(600));
    let core = t.core().await;
    let a = core.account("alice@example.test").await.unwrap().unwrap();
    let ib = core.mail(a.id).open("INBOX").await.unwrap();
    let (msgs, _) = ib
        .list(0, 1_000_000, mailcore::SortOrder::UidAsc)
        .await
        .unwrap();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for m in &msgs {
        *seen.entry(m.subject.clone()).or_default() += 1;
    }
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|t| !seen.contains_key(*t)).collect();
    let twice: Vec<(&String, &u32)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let unacked_stored = seen.len().saturating_sub(acked.len());
    let report = format!(
        "cycles {cycles}\nattempts {attempts}\nacknowledged {}\nstored {}\nlost {}\nduplicated {}\n\
         stored_without_250 {unacked_stored}\nseconds {}\n",
        acked.len(),
        msgs.len(),
        lost.len(),
        twice.len(),
        started.elapsed().as_secs()
    );
    eprint!("{report}");
    if let Ok(path) = std::env::var("TERN_CRASH_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    assert!(
        acked.len() as u64 >= cycles,
        "the load barely ran: {report}"
    );
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}\n{report}");
    assert!(twice.is_empty(), "stored twice: {twice:?}\n{report}");
}

/// A torn spool tail (the last record cut mid-write, as power loss during
/// the write leaves it) is found and cut when the server starts; the
/// records before it are delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_spool_tail_is_cut_and_earlier_records_are_delivered() {
    let mut t = start(&[]);
    let alice = t
        .core()
        .await
        .account("alice@example.test")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut last = std::path::PathBuf::new();
    let mut cut_len = 0;
    let rt = tokio::runtime::Handle::current();
    t.while_stopped(|dir| {
        // Three records written as the server would, with no server to
        // store them; then the third cut in half.
        let spool_dir = dir.join("spool");
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(async {
                    let spool = mailcore::spool::Spool::open(&mailcore::spool::SpoolConfig::new(
                        &spool_dir,
                    ))
                    .unwrap();
                    for i in 0..3 {
                        let env = mailcore::delivery::Envelope {
                            require_tls: false,
                            mail_from: "x@remote.example".into(),
                            local: vec![mailcore::delivery::LocalCopy::new(
                                alice,
                                "alice@example.test",
                            )],
                            remote: vec![],
                        };
                        let raw = format!(
                            "From: x@remote.example\r\nSubject: torn-{i}\r\n\r\nbody {i}\r\n"
                        );
                        spool.append(&env, raw.as_bytes(), 1).await.unwrap();
                    }
                })
            });
        });
        let mut segs: Vec<_> = std::fs::read_dir(&spool_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        last = segs.last().expect("a segment").clone();
        let full = std::fs::metadata(&last).unwrap().len();
        cut_len = full - 20;
        let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(cut_len).unwrap();
        let out = common::cli_out(dir, &["spool", "stats"]);
        assert!(out.contains("torn: "), "stats sees the torn tail: {out}");
        assert!(out.contains("records: 2"), "{out}");
    });
    t.settle();
    assert!(
        std::fs::metadata(&last).map_or(true, |m| m.len() < cut_len),
        "the torn bytes are cut off"
    );
    let out = common::cli_out(t.dir.path(), &["spool", "stats"]);
    assert!(!out.contains("torn:"), "{out}");
    let inbox: Vec<String> = t
        .inbox("alice@example.test")
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let count = |tok: &str| inbox.iter().filter(|m| m.contains(tok)).count();
    assert_eq!(count("Subject: torn-0\r\n"), 1, "{inbox:?}");
    assert_eq!(count("Subject: torn-1\r\n"), 1, "{inbox:?}");
    assert_eq!(
        count("Subject: torn-2\r\n"),
        0,
        "the torn record is not delivered"
    );
    // The server goes on accepting, into a new segment.
    assert!(send_one(t.mx, "after-torn").unwrap());
    assert_eq!(t.inbox("alice@example.test").await.len(), 3);
}
