//! The queue's store on SQLite and PostgreSQL: claims under leases, several
//! nodes claiming at once, outcomes, operator commands, the delivery log.
//! The runner and the relay are tested over real SMTP in server/tests.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::for_each_url;
use mailcore::delivery::{Envelope, LocalCopy};
use mailcore::queue::{
    AttemptInfo, ClaimSpec, Destination, EntryResult, Finish, Lane, LogOutcome, LogQuery, Outcome,
    QueueEntry, QueueFilter, QueueStatus, Target,
};
use mailcore::{Address, Core, CoreOptions, ManualClock, Role};

const T0: i64 = 1_800_000_000;
const LEASE: i64 = 900;

async fn open(url: &str, clock: &Arc<ManualClock>) -> Core {
    Core::open_with_clock(CoreOptions::new(url), clock.clone())
        .await
        .expect("open core")
}

fn msg(id: &str) -> Vec<u8> {
    format!(
        "From: alice@local.test\r\nTo: x@remote.test\r\nSubject: {id}\r\nMessage-ID: <{id}@local.test>\r\n\r\nbody {id}\r\n"
    )
    .into_bytes()
}

async fn queue(core: &Core, id: &str, rcpts: &[&str]) {
    let env = Envelope {
        require_tls: false,
        mail_from: "alice@local.test".into(),
        local: vec![],
        remote: rcpts.iter().map(|r| Address::parse(r).unwrap()).collect(),
    };
    core.deliver(&env, &msg(id)).await.unwrap();
}

fn spec<'a>(lane: Lane, owner: &'a str, exclude: &'a [String]) -> ClaimSpec<'a> {
    ClaimSpec {
        lane,
        owner,
        lease_secs: LEASE,
        domain: None,
        exclude,
        max_rcpts: 100,
        retry_requested_at: None,
    }
}

/// Tries every fresh entry once and defers it until `next_at`, so it all
/// sits in the retry lane.
async fn defer_all_fresh(core: &Core, next_at: i64) {
    loop {
        let g = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        if g.is_empty() {
            break;
        }
        let r = g
            .into_iter()
            .map(|e| (e, Outcome::Deferred { next_at }, "451 later"))
            .collect();
        core.queue_finish(finish("W", r)).await.unwrap();
    }
}

fn finish(owner: &str, results: Vec<(QueueEntry, Outcome, &str)>) -> Finish {
    Finish {
        owner: owner.into(),
        attempt: AttemptInfo {
            remote_host: Some("mx.remote.test".into()),
            remote_ip: Some("127.0.0.1".into()),
            tls: true,
            duration_ms: 12,
        },
        results: results
            .into_iter()
            .map(|(entry, outcome, reply)| EntryResult {
                entry,
                outcome,
                reply: reply.into(),
            })
            .collect(),
        dsns: vec![],
        delayed_reported: vec![],
    }
}

#[tokio::test]
async fn a_claim_takes_a_message_group_and_its_lease_expires() {
    for_each_url("queue_claim_lease", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let a = open(&url, &clock).await;
        let b = open(&url, &clock).await;
        queue(
            &a,
            "m1",
            &["x@remote.test", "y@remote.test", "z@other.test"],
        )
        .await;
        queue(&a, "m2", &["w@remote.test"]).await;

        // Node A gets m1's two recipients at remote.test in one group.
        let ga = a.queue_claim(&spec(Lane::Fresh, "A", &[])).await.unwrap();
        let rcpts: Vec<&str> = ga.iter().map(|e| e.rcpt_to.as_str()).collect();
        assert_eq!(rcpts, ["x@remote.test", "y@remote.test"]);
        assert!(ga.iter().all(|e| e.lock_owner.as_deref() == Some("A")));
        assert!(ga.iter().all(|e| e.message_id == "m1@local.test"));

        // Node B gets what is left, one group at a time, and then nothing.
        let gb1 = b.queue_claim(&spec(Lane::Fresh, "B", &[])).await.unwrap();
        let gb2 = b.queue_claim(&spec(Lane::Fresh, "B", &[])).await.unwrap();
        let mut got: Vec<String> = gb1.iter().chain(&gb2).map(|e| e.rcpt_to.clone()).collect();
        got.sort();
        assert_eq!(got, ["w@remote.test", "z@other.test"]);
        assert!(
            b.queue_claim(&spec(Lane::Fresh, "B", &[]))
                .await
                .unwrap()
                .is_empty()
        );

        // A "dies". Until its lease runs out nobody else may take its rows.
        clock.advance(LEASE - 1);
        assert!(
            b.queue_claim(&spec(Lane::Fresh, "B", &[]))
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(1);
        let stolen = b.queue_claim(&spec(Lane::Fresh, "B", &[])).await.unwrap();
        assert_eq!(
            stolen.len(),
            2,
            "expired lease: the group is claimable again"
        );

        // A wakes up late: its result no longer retires B's rows.
        a.queue_finish(finish(
            "A",
            ga.into_iter()
                .map(|e| (e, Outcome::Delivered, "250 ok"))
                .collect(),
        ))
        .await
        .unwrap();
        assert_eq!(
            a.queue().len().await.unwrap(),
            4,
            "nothing retired by a stale owner"
        );
        // B's own result does.
        b.queue_finish(finish(
            "B",
            stolen
                .into_iter()
                .map(|e| (e, Outcome::Delivered, "250 ok"))
                .collect(),
        ))
        .await
        .unwrap();
        assert_eq!(a.queue().len().await.unwrap(), 2);
        a.close().await;
        b.close().await;
    })
    .await;
}

/// Several attempts' results in one commit (the runner's finisher): each
/// keeps its own lease check, and all of them land together.
#[tokio::test]
async fn finishes_batched_in_one_commit_keep_their_own_leases() {
    for_each_url("queue_finish_batch", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let a = open(&url, &clock).await;
        queue(&a, "m1", &["x@one.test"]).await;
        queue(&a, "m2", &["y@two.test"]).await;
        queue(&a, "m3", &["z@three.test"]).await;
        let g1 = a.queue_claim(&spec(Lane::Fresh, "W1", &[])).await.unwrap();
        let g2 = a.queue_claim(&spec(Lane::Fresh, "W2", &[])).await.unwrap();
        let g3 = a.queue_claim(&spec(Lane::Fresh, "W3", &[])).await.unwrap();
        let done = |owner: &str, g: Vec<QueueEntry>| {
            finish(
                owner,
                g.into_iter()
                    .map(|e| (e, Outcome::Delivered, "250 ok"))
                    .collect(),
            )
        };
        // The third names the wrong owner: its rows stay, the others go.
        a.queue_finish_batch(&[done("W1", g1), done("W2", g2), done("W2", g3)])
            .await
            .unwrap();
        assert_eq!(
            a.queue().len().await.unwrap(),
            1,
            "only the stale result is left undone"
        );
        let log = a
            .queue()
            .log(&LogQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(log.len(), 3, "every attempt is logged, the stale one too");
        a.close().await;
    })
    .await;
}

#[tokio::test]
async fn two_nodes_claiming_at_once_take_each_entry_once() {
    for_each_url("queue_concurrent_claims", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let a = open(&url, &clock).await;
        let b = open(&url, &clock).await;
        let mut all = HashSet::new();
        for i in 0..60 {
            let d = format!("d{}.test", i % 7);
            queue(&a, &format!("c{i}"), &[&format!("u{i}@{d}")]).await;
        }
        for e in a
            .queue()
            .list(&QueueFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
        {
            all.insert(e.id);
        }
        assert_eq!(all.len(), 60);

        let mut tasks = Vec::new();
        for (n, core) in [a.clone(), a.clone(), b.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            tasks.push(tokio::spawn(async move {
                let owner = format!("w{n}");
                let mut mine = Vec::new();
                loop {
                    let s = ClaimSpec {
                        max_rcpts: 1,
                        retry_requested_at: None,
                        ..spec(Lane::Fresh, &owner, &[])
                    };
                    let g = core.queue_claim(&s).await.expect("claim");
                    if g.is_empty() {
                        break;
                    }
                    mine.extend(g.into_iter().map(|e| e.id));
                }
                mine
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            seen.extend(t.await.unwrap());
        }
        let unique: HashSet<mailcore::QueueId> = seen.iter().copied().collect();
        assert_eq!(seen.len(), unique.len(), "an entry was claimed twice");
        assert_eq!(unique, all, "every entry was claimed");
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn outcomes_retire_reschedule_log_and_bounce_in_one_commit() {
    for_each_url("queue_finish", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        core.add_domain("local.test").await.unwrap();
        let alice = core
            .add_account("alice@local.test", "pw-pw-pw-pw", Role::User)
            .await
            .unwrap();
        queue(
            &core,
            "f1",
            &["ok@remote.test", "later@remote.test", "gone@remote.test"],
        )
        .await;
        let (blobs_before, _) = core.storage_counts().await.unwrap();
        let g = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        assert_eq!(g.len(), 3);
        let mut f = finish(
            "W",
            vec![
                (g[0].clone(), Outcome::Delivered, "250 2.0.0 ok"),
                (
                    g[1].clone(),
                    Outcome::Deferred { next_at: T0 + 300 },
                    "451 4.7.1 greylisted",
                ),
                (g[2].clone(), Outcome::Failed, "550 5.1.1 no such user"),
            ],
        );
        f.dsns.push((
            Envelope {
                require_tls: false,
                mail_from: String::new(),
                local: vec![LocalCopy::new(alice.id, "alice@local.test")],
                remote: vec![],
            },
            b"From: MAILER-DAEMON@local.test\r\nSubject: Undelivered\r\n\r\nbounce\r\n".to_vec(),
        ));
        core.queue_finish(f).await.unwrap();

        let left = core.queue().list(&QueueFilter::default()).await.unwrap();
        assert_eq!(left.len(), 1);
        let e = &left[0];
        assert_eq!(e.rcpt_to, "later@remote.test");
        assert_eq!(
            (e.lane.as_str(), e.attempts, e.next_attempt_at),
            ("retry", 1, T0 + 300)
        );
        assert_eq!(e.last_error.as_deref(), Some("451 4.7.1 greylisted"));
        assert_eq!((e.lock_owner.clone(), e.lease_until), (None, None));

        // The DSN landed in the sender's INBOX in the same commit.
        let inbox = core
            .mail(alice.id)
            .mailbox_status("INBOX")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inbox.total, 1);
        // The message blob stays while one entry still needs it; the DSN
        // added one.
        let (blobs_after, _) = core.storage_counts().await.unwrap();
        assert_eq!(blobs_after, blobs_before + 1);

        let log = core
            .queue()
            .log(&LogQuery {
                text: Some("<f1@local.test>".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut outcomes: Vec<(String, LogOutcome)> =
            log.iter().map(|l| (l.rcpt_to.clone(), l.outcome)).collect();
        outcomes.sort();
        assert_eq!(
            outcomes,
            [
                ("gone@remote.test".to_owned(), LogOutcome::Failed),
                ("later@remote.test".to_owned(), LogOutcome::Deferred),
                ("ok@remote.test".to_owned(), LogOutcome::Delivered),
            ]
        );
        assert!(
            log.iter()
                .all(|l| l.tls && l.remote_host.as_deref() == Some("mx.remote.test"))
        );
        let by_rcpt = core
            .queue()
            .log(&LogQuery {
                text: Some("gone@remote".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_rcpt.len(), 1);
        assert_eq!(by_rcpt[0].reply, "550 5.1.1 no such user");

        // Retiring the last entry frees the message's bytes.
        clock.advance(300);
        let g = core
            .queue_claim(&spec(Lane::Retry, "W", &[]))
            .await
            .unwrap();
        assert_eq!(g.len(), 1);
        core.queue_finish(finish(
            "W",
            vec![(g[0].clone(), Outcome::Delivered, "250 ok")],
        ))
        .await
        .unwrap();
        let (blobs_end, _) = core.storage_counts().await.unwrap();
        assert_eq!(blobs_end, blobs_before, "only the DSN's blob is left");
        core.close().await;
    })
    .await;
}

#[tokio::test]
async fn operators_hold_release_retry_and_delete() {
    for_each_url("queue_operator", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        queue(&core, "h1", &["a@slow.test", "b@slow.test"]).await;
        clock.advance(10);
        queue(&core, "h2", &["c@fast.test"]).await;

        let st = core.queue().stats().await.unwrap();
        assert_eq!(st.total, 3);
        assert_eq!(st.by_lane[0], ("fresh".to_owned(), 3));
        assert_eq!(st.by_domain[0], ("slow.test".to_owned(), 2));
        assert_eq!(st.oldest_created_at, Some(T0));

        // A held destination is skipped, also for mail queued later.
        assert_eq!(
            core.queue()
                .hold(&Target::Domain("SLOW.test".into()))
                .await
                .unwrap(),
            2
        );
        queue(&core, "h3", &["d@slow.test"]).await;
        let g = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].domain, "fast.test");
        assert!(
            core.queue_claim(&spec(Lane::Fresh, "W", &[]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            core.queue()
                .destination("slow.test")
                .await
                .unwrap()
                .unwrap()
                .held
        );
        core.queue()
            .release(&Target::Domain("slow.test".into()))
            .await
            .unwrap();
        let g = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        assert_eq!(g[0].domain, "slow.test");
        core.queue_unclaim("W", &g.iter().map(|e| e.id).collect::<Vec<_>>())
            .await
            .unwrap();

        // One entry held on its own.
        let id = g[0].id;
        core.queue().hold(&Target::Entry(id)).await.unwrap();
        assert_eq!(
            core.queue().entry(id).await.unwrap().unwrap().status,
            QueueStatus::Held
        );
        assert_eq!(core.queue().stats().await.unwrap().held, 1);
        core.queue().release(&Target::Entry(id)).await.unwrap();
        assert_eq!(
            core.queue().entry(id).await.unwrap().unwrap().status,
            QueueStatus::Queued
        );

        // An unreachable destination waits; retry makes it due at once.
        let mut d = Destination::new("slow.test", 5);
        d.next_attempt_at = T0 + 3600;
        d.failures = 3;
        core.queue_save_destination(&d).await.unwrap();
        assert!(
            core.queue_claim(&spec(Lane::Fresh, "W", &[]))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            core.queue()
                .retry(&Target::Domain("slow.test".into()))
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            core.queue()
                .destination("slow.test")
                .await
                .unwrap()
                .unwrap()
                .failures,
            0
        );
        // The runner's exclusions still apply.
        let busy = vec!["slow.test".to_owned()];
        assert!(
            core.queue_claim(&spec(Lane::Fresh, "W", &busy))
                .await
                .unwrap()
                .is_empty()
        );
        // Both slow.test messages (a group of two and one of one) are due.
        let g1 = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        let g2 = core
            .queue_claim(&spec(Lane::Fresh, "W", &[]))
            .await
            .unwrap();
        let mut sizes = [g1.len(), g2.len()];
        sizes.sort();
        assert_eq!(sizes, [1, 2]);
        assert!(g1.iter().chain(&g2).all(|e| e.domain == "slow.test"));

        // Delete a destination's entries: gone, logged, bytes freed.
        let (blobs, _) = core.storage_counts().await.unwrap();
        assert_eq!(
            core.queue()
                .delete(&Target::Domain("slow.test".into()))
                .await
                .unwrap(),
            3
        );
        assert_eq!(core.queue().len().await.unwrap(), 1);
        let (blobs_after, _) = core.storage_counts().await.unwrap();
        assert_eq!(blobs_after, blobs - 2, "h1 and h3 bytes freed, h2 kept");
        let log = core
            .queue()
            .log(&LogQuery {
                text: Some("slow.test".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(log.len(), 3);
        assert!(log.iter().all(|l| l.outcome == LogOutcome::Deleted));
        core.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_retry_lane_turns_round_robin_over_domains() {
    for_each_url("queue_round_robin", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        for (i, d) in ["c.test", "a.test", "b.test", "a.test", "a.test"]
            .iter()
            .enumerate()
        {
            queue(&core, &format!("r{i}"), &[&format!("u@{d}")]).await;
        }
        // Defer everything once so it all sits in the retry lane.
        defer_all_fresh(&core, T0 + 60).await;
        assert!(
            core.queue_next_retry_domain("", &[])
                .await
                .unwrap()
                .is_none(),
            "not due yet"
        );
        clock.advance(60);
        let mut order = Vec::new();
        let mut cursor = String::new();
        for _ in 0..6 {
            let d = core
                .queue_next_retry_domain(&cursor, &[])
                .await
                .unwrap()
                .unwrap();
            order.push(d.domain.clone());
            cursor = d.domain;
        }
        assert_eq!(
            order,
            ["a.test", "b.test", "c.test", "a.test", "b.test", "c.test"]
        );
        let excl = vec!["b.test".to_owned()];
        assert_eq!(
            core.queue_next_retry_domain("a.test", &excl)
                .await
                .unwrap()
                .map(|t| t.domain)
                .as_deref(),
            Some("c.test")
        );
        core.close().await;
    })
    .await;
}

/// A dispatcher with free workers claims several transactions in one go:
/// each group is one message to one destination and at most
/// `max_rcpts` recipients, no entry is in two groups, and what one call
/// took the next does not take again.
#[tokio::test]
async fn several_groups_are_claimed_at_once_each_entry_once() {
    for_each_url("queue_claim_groups", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        for n in 0..4 {
            queue(
                &core,
                &format!("g{n}"),
                &["a@remote.test", "b@remote.test", "c@remote.test"],
            )
            .await;
        }
        let mut spec = spec(Lane::Fresh, "node-a", &[]);
        spec.max_rcpts = 2;
        let mut seen = HashSet::new();
        let mut calls = Vec::new();
        loop {
            let groups = core.queue_claim_groups(&spec, 3).await.unwrap();
            if groups.is_empty() {
                break;
            }
            assert!(groups.len() <= 3, "{groups:?}");
            for g in &groups {
                assert!(!g.is_empty() && g.len() <= 2, "{g:?}");
                assert!(g.iter().all(|e| e.blob_id == g[0].blob_id), "one message");
                assert!(g.iter().all(|e| e.domain == "remote.test"));
                for e in g {
                    assert!(seen.insert(e.id), "{:?} claimed twice", e.id);
                    assert_eq!(e.lock_owner.as_deref(), Some("node-a"));
                }
            }
            calls.push(groups.len());
        }
        assert_eq!(seen.len(), 12, "every entry claimed once");
        assert!(
            calls[0] >= 2,
            "the first call took several groups: {calls:?}"
        );
        // Leased: nothing more until the leases run out.
        assert!(core.queue_claim_groups(&spec, 3).await.unwrap().is_empty());
        clock.advance(LEASE + 1);
        let again: usize = core
            .queue_claim_groups(&spec, 100)
            .await
            .unwrap()
            .iter()
            .map(Vec::len)
            .sum();
        assert!(again > 0, "expired leases are claimable again");
        core.close().await;
    })
    .await;
}

/// An operator's retry or delete over a destination with thousands of
/// entries covers every one of them, and logs each deletion.
#[tokio::test]
async fn operator_commands_over_many_entries_cover_them_all() {
    for_each_url("queue_operator_chunks", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        let rcpts: Vec<String> = (0..2_000).map(|i| format!("r{i}@remote.test")).collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        for n in 0..6 {
            queue(&core, &format!("many{n}"), &rcpts).await;
        }
        // Unreachable: the whole destination waits an hour.
        core.queue_defer_destination("remote.test", T0 + 3600, "down")
            .await
            .unwrap();
        let mut spec = spec(Lane::Retry, "node-a", &[]);
        spec.max_rcpts = 1000;
        assert!(core.queue_claim_groups(&spec, 20).await.unwrap().is_empty());
        assert!(
            core.queue_next_retry_domain("", &[])
                .await
                .unwrap()
                .is_none()
        );
        let target = Target::Domain("remote.test".into());
        assert_eq!(core.queue().retry(&target).await.unwrap(), 12_000);
        // Claimed as the runner does: the turn carries the request.
        let mut due = 0;
        while let Some(turn) = core.queue_next_retry_domain("", &[]).await.unwrap() {
            spec.domain = Some("remote.test");
            spec.retry_requested_at = turn.retry_requested_at;
            let groups = core.queue_claim_groups(&spec, 20).await.unwrap();
            assert!(!groups.is_empty(), "a turn is given only with work due");
            due += groups.iter().map(Vec::len).sum::<usize>();
        }
        assert_eq!(due, 12_000, "every entry was made due");
        assert_eq!(core.queue().delete(&target).await.unwrap(), 12_000);
        assert_eq!(core.queue().len().await.unwrap(), 0);
        let deleted = core
            .queue()
            .log(&LogQuery {
                limit: 20_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|l| l.outcome == LogOutcome::Deleted)
            .count();
        assert_eq!(deleted, 12_000, "each deletion logged");
        core.close().await;
    })
    .await;
}

/// `tern queue retry --domain` records the request on the destination
/// instead of rewriting its entries; the claims honour it until every
/// entry tried before it has been tried again, then it is forgotten.
#[tokio::test]
async fn a_destination_retry_rewrites_no_entry_and_tries_each_once() {
    for_each_url("queue_retry_request", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        for m in ["r1", "r2", "r3"] {
            queue(&core, m, &["a@remote.test", "b@remote.test"]).await;
        }
        queue(&core, "o1", &["c@other.test"]).await;
        // Every entry tried once and deferred for an hour.
        defer_all_fresh(&core, T0 + 3600).await;
        clock.advance(5);
        assert!(
            core.queue_next_retry_domain("", &[])
                .await
                .unwrap()
                .is_none()
        );

        let target = Target::Domain("remote.test".into());
        assert_eq!(core.queue().retry(&target).await.unwrap(), 6);
        let entries = core.queue().list(&QueueFilter::default()).await.unwrap();
        assert_eq!(entries.len(), 7);
        assert!(
            entries.iter().all(|e| e.next_attempt_at == T0 + 3600),
            "no entry rewritten: {entries:?}"
        );
        let dest = core
            .queue()
            .destination("remote.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dest.retry_requested_at, Some(T0 + 5));

        // The runner's turn carries the request; other.test stays waiting.
        let turn = core
            .queue_next_retry_domain("", &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(turn.domain, "remote.test");
        assert_eq!(turn.retry_requested_at, Some(T0 + 5));
        let mut spec = spec(Lane::Retry, "W", &[]);
        spec.domain = Some("remote.test");
        spec.retry_requested_at = turn.retry_requested_at;
        let groups = core.queue_claim_groups(&spec, 10).await.unwrap();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
        assert!(
            core.queue_claim_groups(&spec, 10).await.unwrap().is_empty(),
            "entries in flight are not claimed twice"
        );

        // Tried again and deferred again: the request is answered, and
        // forgotten; nothing is due until the entries' own schedule.
        clock.advance(1);
        let r = groups
            .into_iter()
            .flatten()
            .map(|e| (e, Outcome::Deferred { next_at: T0 + 7200 }, "451 still"))
            .collect();
        core.queue_finish(finish("W", r)).await.unwrap();
        assert!(core.queue_claim_groups(&spec, 10).await.unwrap().is_empty());
        assert!(
            core.queue_next_retry_domain("", &[])
                .await
                .unwrap()
                .is_none()
        );
        let dest = core
            .queue()
            .destination("remote.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dest.retry_requested_at, None, "forgotten once answered");

        // A destination found unreachable answers a request too.
        clock.advance(1);
        core.queue().retry(&target).await.unwrap();
        core.queue_defer_destination("remote.test", T0 + 9000, "down")
            .await
            .unwrap();
        let dest = core
            .queue()
            .destination("remote.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dest.retry_requested_at, None);
        core.close().await;
    })
    .await;
}

/// A claim moves its entries' next attempt to the lease's end, so the next
/// claim's due range starts past everything in flight; giving them back
/// makes them due at once.
#[tokio::test]
async fn claimed_entries_leave_the_due_order_until_given_back() {
    for_each_url("queue_claim_moves_due", |url| async move {
        let clock = Arc::new(ManualClock::new(T0));
        let core = open(&url, &clock).await;
        queue(&core, "due1", &["a@remote.test", "b@remote.test"]).await;
        let spec = spec(Lane::Fresh, "node-a", &[]);
        let got = core.queue_claim(&spec).await.unwrap();
        assert_eq!(got.len(), 2);
        for e in &got {
            assert_eq!(e.next_attempt_at, T0 + LEASE, "{e:?}");
            let stored = core.queue().entry(e.id).await.unwrap().unwrap();
            assert_eq!(stored.next_attempt_at, T0 + LEASE);
        }
        assert!(core.queue_claim(&spec).await.unwrap().is_empty());
        let ids: Vec<_> = got.iter().map(|e| e.id).collect();
        core.queue_unclaim("node-a", &ids).await.unwrap();
        let again = core.queue_claim(&spec).await.unwrap();
        assert_eq!(
            again.len(),
            2,
            "given back: due now, not at the lease's end"
        );
        core.close().await;
    })
    .await;
}
