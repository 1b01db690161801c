//! The outbound queue end to end: the core's queue runner with the real
//! lettre relay, speaking SMTP over sockets to fake MX servers on
//! 127.0.0.1, with an injected clock and DNS. What the fakes received is
//! checked byte for byte; outcomes through the queue, the delivery log and
//! the sender's INBOX.

mod common;
mod fakemx;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fakemx::{Behaviour, FakeDns, FakeMx, closed_port};
use mailcore::delivery::Envelope;
use mailcore::queue::{
    Lane, LogOutcome, LogQuery, QueueConfig, QueueFilter, QueueRunner, RunnerHandle,
};
use mailcore::{Address, Clock, Core, CoreOptions, ManualClock, Role};
use tern::config::RelayConfig;
use tern::relay::LettreRelay;
use tern::relay::dns::MxAnswer;

const T0: i64 = 1_800_000_000;

struct World {
    clock: Arc<ManualClock>,
    dns: Arc<FakeDns>,
    url: String,
    _dir: tempfile::TempDir,
    _pg: Option<common::PgDb>,
}

static WORLDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl World {
    /// A world on the backend the run asks for: SQLite, or with
    /// `TERN_QUEUE_TEST_BACKEND=postgres` (the README's test command runs
    /// the suite both ways) a fresh database on the test PostgreSQL.
    fn new() -> World {
        if std::env::var("TERN_QUEUE_TEST_BACKEND").is_ok_and(|b| b == "postgres") {
            let n = WORLDS.fetch_add(1, Ordering::SeqCst);
            let pg = common::PgDb::create(&format!("q{n}"))
                .expect("TERN_QUEUE_TEST_BACKEND=postgres needs TERN_TEST_PG_URL");
            World {
                url: pg.url.clone(),
                _pg: Some(pg),
                ..World::sqlite()
            }
        } else {
            World::sqlite()
        }
    }

    fn sqlite() -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            clock: Arc::new(ManualClock::new(T0)),
            dns: Arc::new(FakeDns::default()),
            url: format!("sqlite://{}/tern.db?mode=rwc", dir.path().display()),
            _dir: dir,
            _pg: None,
        }
    }

    fn with_url(url: &str) -> World {
        World {
            url: url.to_owned(),
            ..World::sqlite()
        }
    }

    async fn core(&self) -> Core {
        Core::open_with_clock(CoreOptions::new(&self.url), self.clock.clone())
            .await
            .unwrap()
    }

    fn runner(&self, core: &Core, cfg: QueueConfig) -> RunnerHandle {
        let relay = LettreRelay::new(&relay_cfg(), "tern.test", self.dns.clone()).unwrap();
        QueueRunner::new(core.clone(), Arc::new(relay), cfg).start()
    }
}

fn relay_cfg() -> RelayConfig {
    RelayConfig {
        connect_timeout_secs: 5,
        command_timeout_secs: 10,
        data_timeout_secs: 10,
        ..RelayConfig::default()
    }
}

fn qcfg() -> QueueConfig {
    QueueConfig {
        hostname: "tern.test".into(),
        poll_interval_ms: 20,
        ..QueueConfig::default()
    }
}

/// local.test with alice, the sender of most test mail.
async fn directory(core: &Core) -> mailcore::AccountId {
    core.add_domain("local.test").await.unwrap();
    core.add_account("alice@local.test", "pw-pw-pw-pw", Role::User)
        .await
        .unwrap()
        .id
}

fn msg(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@local.test>\r\nTo: someone@remote.test\r\nSubject: {id}\r\n\
         Message-ID: <{id}@local.test>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn send(core: &Core, from: &str, rcpts: &[&str], raw: &[u8]) {
    let env = Envelope {
        require_tls: false,
        mail_from: from.into(),
        local: vec![],
        remote: rcpts.iter().map(|r| Address::parse(r).unwrap()).collect(),
    };
    core.deliver(&env, raw).await.unwrap();
}

async fn wait_for(what: &str, secs: u64, mut cond: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn queue_empty(core: &Core) -> bool {
    core.queue().len().await.unwrap() == 0
}

/// Messages in an account's INBOX, raw.
async fn inbox(core: &Core, account: mailcore::AccountId) -> Vec<String> {
    let mb = core.mail(account).open("INBOX").await.unwrap();
    let (list, _) = mb.list(0, 1000, mailcore::SortOrder::UidAsc).await.unwrap();
    let mut out = Vec::new();
    for m in list {
        let raw = mb.raw(m.uid).await.unwrap();
        out.push(String::from_utf8_lossy(&raw).into_owned());
    }
    out
}

#[tokio::test]
async fn delivers_over_starttls_and_logs_the_attempt() {
    let w = World::new();
    let core = w.core().await;
    directory(&core).await;
    let mx = FakeMx::start(Behaviour {
        starttls: true,
        ..Default::default()
    })
    .await;
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    let raw = msg("tls1", "Hello over TLS.\r\n");
    send(
        &core,
        "alice@local.test",
        &["bob@remote.test", "carol@remote.test"],
        &raw,
    )
    .await;
    wait_for("delivery", 20, async || queue_empty(&core).await).await;

    let got = mx.accepted();
    assert_eq!(got.len(), 1, "two recipients, one transaction");
    assert_eq!(got[0].mail_from, "alice@local.test");
    assert_eq!(got[0].rcpts, ["bob@remote.test", "carol@remote.test"]);
    assert_eq!(got[0].data, raw, "the bytes arrive unchanged");
    assert!(got[0].tls, "opportunistic STARTTLS was used");

    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("tls1@local.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    for l in &log {
        assert_eq!(l.outcome, LogOutcome::Delivered);
        assert_eq!(l.remote_host.as_deref(), Some("mx.remote.test"));
        assert_eq!(l.remote_ip.as_deref(), Some("127.0.0.1"));
        assert!(l.tls);
        assert!(l.reply.starts_with("250 2.0.0"), "{}", l.reply);
    }
    // The runner writes the destination's row just after recording the
    // attempt, so it may trail the empty queue by a moment.
    wait_for("the destination row", 10, async || {
        core.queue()
            .destination("remote.test")
            .await
            .unwrap()
            .is_some_and(|d| d.last_reply.is_some())
    })
    .await;
    let d = core
        .queue()
        .destination("remote.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.concurrency, 5, "a fresh destination starts at 5");
    assert!(d.last_reply.unwrap().starts_with("250"));
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn mx_order_implicit_mx_null_mx_and_missing_domains() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    // Preference 10 refuses connections; 20 works.
    w.dns.mx(
        "two.test",
        MxAnswer::Hosts(vec![
            (20, "backup.two.test".into()),
            (10, "primary.two.test".into()),
        ]),
    );
    w.dns.host("primary.two.test", &[closed_port()]);
    w.dns.host("backup.two.test", &[mx.addr]);
    // No MX: the domain's own address (RFC 5321 §5.1).
    w.dns.mx("bare.test", MxAnswer::NoMx);
    w.dns.host("bare.test", &[mx.addr]);
    // RFC 7505 null MX, and a domain that does not exist.
    w.dns.mx("nullmx.test", MxAnswer::NullMx);
    let runner = w.runner(&core, qcfg());

    send(
        &core,
        "alice@local.test",
        &["a@two.test"],
        &msg("pref", "x\r\n"),
    )
    .await;
    send(
        &core,
        "alice@local.test",
        &["b@bare.test"],
        &msg("bare", "x\r\n"),
    )
    .await;
    send(
        &core,
        "alice@local.test",
        &["c@nullmx.test"],
        &msg("null", "x\r\n"),
    )
    .await;
    send(
        &core,
        "alice@local.test",
        &["d@nowhere.test"],
        &msg("nx", "x\r\n"),
    )
    .await;
    wait_for("all four handled", 20, async || queue_empty(&core).await).await;

    let mut rcpts: Vec<String> = mx.accepted().iter().flat_map(|r| r.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@two.test", "b@bare.test"]);
    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("pref@local.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].remote_host.as_deref(), Some("backup.two.test"));

    // Two bounces, failed at once (no retries), with the RFC 3464 status.
    let dsns = inbox(&core, alice).await;
    assert_eq!(dsns.len(), 2, "{dsns:#?}");
    let null = dsns.iter().find(|d| d.contains("c@nullmx.test")).unwrap();
    assert!(null.contains("Status: 5.1.10"), "{null}");
    assert!(null.contains("Diagnostic-Code: smtp; 556 5.1.10"));
    let nx = dsns.iter().find(|d| d.contains("d@nowhere.test")).unwrap();
    assert!(nx.contains("Status: 5.1.2"), "{nx}");
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn replies_count_per_recipient_and_bounces_follow_rfc_3464() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    mx.set_rcpt(|a| match a {
        "later@remote.test" => "451 4.7.1 greylisted, come back later".into(),
        "gone@remote.test" => "550 5.1.1 no such user here".into(),
        _ => "250 2.1.5 ok".into(),
    });
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    let raw = msg("per-rcpt", "Three recipients.\r\n");
    send(
        &core,
        "alice@local.test",
        &["ok@remote.test", "later@remote.test", "gone@remote.test"],
        &raw,
    )
    .await;
    wait_for("first attempt", 20, async || {
        core.queue().len().await.unwrap() == 1
    })
    .await;

    // One transaction carried all three; only ok@ was accepted.
    let got = mx.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["ok@remote.test"]);

    // later@ waits in the retry lane, 5 minutes plus at most 20% jitter.
    let e = &core.queue().list(&QueueFilter::default()).await.unwrap()[0];
    assert_eq!(e.rcpt_to, "later@remote.test");
    assert_eq!((e.lane.as_str(), e.attempts), ("retry", 1));
    assert!(
        (T0 + 300..=T0 + 360).contains(&e.next_attempt_at),
        "{}",
        e.next_attempt_at
    );
    assert!(
        e.last_error
            .as_deref()
            .unwrap()
            .starts_with("451 4.7.1 greylisted")
    );

    // gone@ bounced: one DSN, human part first, then the status, then the
    // original header only.
    let dsns = inbox(&core, alice).await;
    assert_eq!(dsns.len(), 1);
    let d = &dsns[0];
    assert!(d.contains("Content-Type: multipart/report; report-type=delivery-status;"));
    let (human, status, headers) = (
        d.find("text/plain").unwrap(),
        d.find("message/delivery-status").unwrap(),
        d.find("text/rfc822-headers").unwrap(),
    );
    assert!(human < status && status < headers);
    assert!(d.contains(
        "Final-Recipient: rfc822; gone@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    ));
    assert!(d.contains("Remote-MTA: dns; mx.remote.test"));
    assert!(d.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"));
    assert!(d.contains("Message-ID: <per-rcpt@local.test>"));
    assert!(
        !d.contains("Three recipients."),
        "the body does not come back"
    );
    assert!(!d.contains("ok@remote.test") && !d.contains("later@remote.test"));
    assert!(d.contains("From: Mail Delivery System <MAILER-DAEMON@tern.test>"));

    // Not due yet: nothing happens. Then the greylisting clears.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mx.accepted().len(), 1);
    mx.set_rcpt(|_| "250 2.1.5 ok".into());
    w.clock.advance(360);
    core.queue_wake();
    wait_for("retry", 20, async || queue_empty(&core).await).await;
    let got = mx.accepted();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpts, ["later@remote.test"], "ok@ is not sent twice");
    assert_eq!(got[1].data, raw);
    assert_eq!(inbox(&core, alice).await.len(), 1, "no further DSN");
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_bounce_never_bounces() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    mx.set_rcpt(|_| "550 5.1.1 unknown".into());
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    // A DSN from us to a remote sender (null reverse path) fails for good.
    send(
        &core,
        "",
        &["sender@remote.test"],
        &msg("dsn", "a bounce\r\n"),
    )
    .await;
    let e = &core.queue().list(&QueueFilter::default()).await.unwrap()[0];
    assert_eq!(
        e.lane,
        Lane::Bounce,
        "null-sender mail travels in the bounce lane"
    );
    wait_for("the failure", 20, async || queue_empty(&core).await).await;
    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("dsn@local.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, LogOutcome::Failed);
    assert!(inbox(&core, alice).await.is_empty(), "no DSN about a DSN");
    assert_eq!(core.queue().len().await.unwrap(), 0, "and none queued");
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_schedule_warns_at_four_hours_and_gives_up_after_five_days() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    mx.set_rcpt(|_| "452 4.2.2 mailbox full".into());
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    send(
        &core,
        "alice@local.test",
        &["full@remote.test"],
        &msg("sched", "x\r\n"),
    )
    .await;

    let mut intervals = Vec::new();
    let mut last_attempts = 0;
    loop {
        // Wait for the attempt in flight to be recorded.
        let mut entry = None;
        wait_for("an attempt", 20, async || {
            entry = core
                .queue()
                .list(&QueueFilter::default())
                .await
                .unwrap()
                .pop();
            entry
                .as_ref()
                .is_none_or(|e| e.attempts > last_attempts && e.lock_owner.is_none())
        })
        .await;
        let Some(e) = entry else { break };
        last_attempts = e.attempts;
        let now = w.clock.now();
        intervals.push(e.next_attempt_at - now);
        assert!(e.attempts < 200, "runaway retries");
        w.clock.advance(e.next_attempt_at - now);
        core.queue_wake();
    }
    // First retry after ~5 minutes, doubling, capped at an hour; jitter
    // adds at most 20%.
    let base = [300, 600, 1200, 2400, 3600, 3600];
    for (got, want) in intervals.iter().zip(base) {
        assert!(
            (want..=want + want / 5).contains(got),
            "interval {got}, want ~{want}: {intervals:?}"
        );
    }
    assert!(intervals[6..].iter().all(|i| (3600..=4320).contains(i)));

    let dsns = inbox(&core, alice).await;
    assert_eq!(dsns.len(), 2, "one delay warning and one final failure");
    let delayed = dsns.iter().find(|d| d.contains("Action: delayed")).unwrap();
    assert!(delayed.contains("Status: 4.2.2"));
    assert!(delayed.contains("Will-Retry-Until:"));
    assert!(delayed.contains("Subject: Delayed Mail (still being retried)"));
    let failed = dsns.iter().find(|d| d.contains("Action: failed")).unwrap();
    assert!(
        failed.contains("Status: 4.4.7"),
        "expiry is reported as 4.4.7"
    );
    assert!(failed.contains("last reply: 452 4.2.2 mailbox full"));
    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("sched@local.test".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].outcome, LogOutcome::Expired);
    assert!(w.clock.now() - T0 >= 5 * 86400);
    assert!(w.clock.now() - T0 < 5 * 86400 + 4320);
    assert!(log[1..].iter().all(|l| l.outcome == LogOutcome::Deferred));
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_connection_lost_in_data_is_retried_and_delivered_once() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    mx.behaviour.drop_in_data.store(1, Ordering::SeqCst);
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    let raw = msg("drop", "line one\r\nline two\r\nline three\r\n");
    send(&core, "alice@local.test", &["bob@remote.test"], &raw).await;
    let mut e = None;
    wait_for("the failed attempt", 20, async || {
        e = core
            .queue()
            .list(&QueueFilter::default())
            .await
            .unwrap()
            .pop();
        e.as_ref().is_some_and(|e| e.attempts == 1)
    })
    .await;
    let e = e.unwrap();
    assert_eq!(e.lane, Lane::Retry);
    assert!(
        e.last_error.as_deref().unwrap().starts_with("451 4.4.2"),
        "{:?}",
        e.last_error
    );
    assert!(mx.accepted().is_empty());
    w.clock.advance(400);
    core.queue_wake();
    wait_for("the retry", 20, async || queue_empty(&core).await).await;
    let got = mx.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, raw);
    assert!(
        inbox(&core, alice).await.is_empty(),
        "a lost connection never bounces"
    );
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dot_stuffing_is_exact_and_bare_line_ends_cannot_smuggle() {
    let w = World::new();
    let core = w.core().await;
    directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());

    // Lines starting with dots, a lone dot, and the classic smuggling
    // payloads: a dot between bare LFs, and a dot after a bare CR.
    let body = "..\r\n.\r\n.hidden\r\n...three\r\nsafe\n.\nMAIL FROM:<evil@x.test>\r\n\
                RCPT TO:<victim@remote.test>\r\nDATA\r\nsmuggled\r\n.\r\n\
                tail\r.\r\nend\r\n";
    let raw = msg("dots", body);
    send(&core, "alice@local.test", &["bob@remote.test"], &raw).await;
    wait_for("delivery", 20, async || queue_empty(&core).await).await;

    let got = mx.accepted();
    assert_eq!(got.len(), 1, "exactly one message: nothing was smuggled");
    assert_eq!(got[0].rcpts, ["bob@remote.test"]);
    assert_eq!(
        got[0].data,
        mailcore::queue::wire_form(&raw),
        "intact, with CRLF line ends"
    );
    let text = String::from_utf8(got[0].data.clone()).unwrap();
    assert!(text.contains(
        "\r\n..\r\n.\r\n.hidden\r\n...three\r\nsafe\r\n.\r\nMAIL FROM:<evil@x.test>\r\n"
    ));
    assert!(text.ends_with("tail\r\n.\r\nend\r\n"));
    assert_eq!(mx.stats.data_complete.load(Ordering::SeqCst), 1);
    runner.stop(Duration::from_secs(5)).await;
}

/// Mail a local user submits is DKIM-signed with the domain's Ed25519 and
/// RSA keys before it is queued. At the receiver (the fake MX) both
/// signatures verify with mail-auth over real DNS (a DNS server on
/// 127.0.0.1 publishing the records `tern domain dns` lists) and with an
/// independent verifier, dkimpy (Debian's python3-dkim); a changed body
/// fails both.
#[tokio::test(flavor = "multi_thread")]
async fn submitted_mail_is_dkim_signed_and_verifies_at_the_receiver() {
    use mail_auth::common::crypto::Algorithm;
    use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
    let w = World::new();
    let core = w.core().await;
    core.set_outside_key_file(w._dir.path().join("outside.key"));
    directory(&core).await;
    let keys = core.dkim_keys("local.test").await.unwrap();
    assert_eq!(keys.len(), 2, "a new domain has an Ed25519 and an RSA key");
    let mx = FakeMx::start(Behaviour::default()).await;
    w.dns.point("remote.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    let alice = core
        .authenticate(
            "alice@local.test",
            "pw-pw-pw-pw",
            "127.0.0.1".parse().unwrap(),
        )
        .await
        .unwrap();
    let raw = msg("signed", "Hello, signed world.\r\n");
    let signed = core
        .complete_submission(&alice, &raw, "tern.test")
        .await
        .unwrap();
    send(&core, "alice@local.test", &["bob@remote.test"], &signed).await;
    wait_for("delivery", 20, async || queue_empty(&core).await).await;
    let got = mx.accepted()[0].data.clone();
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert_eq!(text.matches("dkim-signature:").count(), 2, "{text}");

    let dns = common::fakedns::FakeDns::start();
    for k in &keys {
        dns.txt(&k.record_name(), &k.record_value());
    }
    let auth = MessageAuthenticator(dns.resolver());
    let parsed = AuthenticatedMessage::parse(&got).unwrap();
    let out = auth.verify_dkim(&parsed).await;
    assert_eq!(out.len(), 2);
    assert!(
        out.iter().all(|o| *o.result() == DkimResult::Pass),
        "{:?}",
        out.iter().map(|o| o.result()).collect::<Vec<_>>()
    );
    let mut algs: Vec<String> = out
        .iter()
        .map(|o| format!("{:?}", o.signature().unwrap().a))
        .collect();
    algs.sort();
    assert_eq!(
        algs,
        [
            format!("{:?}", Algorithm::Ed25519Sha256),
            format!("{:?}", Algorithm::RsaSha256)
        ]
    );
    let tampered = String::from_utf8(got.clone())
        .unwrap()
        .replace("Hello, signed world.", "Hello, changed world.");
    let parsed = AuthenticatedMessage::parse(tampered.as_bytes()).unwrap();
    let out = auth.verify_dkim(&parsed).await;
    assert!(
        out.iter().all(|o| *o.result() != DkimResult::Pass),
        "a changed body fails"
    );

    // dkimpy, from Debian (the system Python has it, not a pyenv one).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.eml"), &got).unwrap();
    std::fs::write(dir.path().join("bad.eml"), tampered.as_bytes()).unwrap();
    let records: String = keys
        .iter()
        .map(|k| format!("{}\t{}\n", k.record_name(), k.record_value()))
        .collect();
    std::fs::write(dir.path().join("dns.txt"), records).unwrap();
    let script = r#"
import json, sys, dkim
recs = dict(l.rstrip('\n').split('\t', 1) for l in open(sys.argv[3]))
def dnsfunc(name, timeout=5):
    n = (name.decode() if isinstance(name, bytes) else name).rstrip('.')
    v = recs.get(n)
    return v.encode() if v else None
def check(d, i):
    try:
        return bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.ValidationError:
        return False
out = []
for f in sys.argv[1:3]:
    d = dkim.DKIM(open(f, 'rb').read())
    out.append([check(d, i) for i in range(2)])
print(json.dumps(out))
"#;
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let res = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("good.eml"))
        .arg(dir.path().join("bad.eml"))
        .arg(dir.path().join("dns.txt"))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&res.stdout).trim(),
        "[[true, true], [false, false]]",
        "dkimpy: good passes with both keys, a changed body fails"
    );
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn concurrency_settles_under_421_and_nothing_bounces() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let mx = FakeMx::start(Behaviour {
        max_conns: Some(2),
        data_delay: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    w.dns.point("busy.test", mx.addr);
    let runner = w.runner(&core, qcfg());
    for i in 0..30 {
        send(
            &core,
            "alice@local.test",
            &[&format!("u{i}@busy.test")],
            &msg(&format!("busy{i}"), "x\r\n"),
        )
        .await;
    }
    // Move time on whenever the runner has nothing due, until all is sent.
    let end = Instant::now() + Duration::from_secs(90);
    while !queue_empty(&core).await {
        assert!(Instant::now() < end, "not delivered in time");
        let busy = core
            .queue()
            .list(&QueueFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .any(|e| e.lock_owner.is_some() && e.lease_until.is_some_and(|l| l > w.clock.now()));
        if !busy {
            w.clock.advance(400);
            core.queue_wake();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids: Vec<String> = mx.accepted().iter().map(|r| r.rcpts.join(",")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "every message delivered");
    assert_eq!(mx.accepted().len(), 30, "and each exactly once");
    assert!(
        mx.stats.refused_421.load(Ordering::SeqCst) > 0,
        "the fake did push back"
    );
    assert!(
        runner.concurrency_limit("busy.test") <= 2,
        "settled at {}",
        runner.concurrency_limit("busy.test")
    );
    let d = core
        .queue()
        .destination("busy.test")
        .await
        .unwrap()
        .unwrap();
    assert!(
        d.concurrency <= 2 && d.ceiling.is_some_and(|c| c <= 2),
        "{d:?}"
    );
    assert!(inbox(&core, alice).await.is_empty(), "a 421 never bounces");
    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("busy.test".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|l| l.outcome == LogOutcome::Deferred && l.reply.starts_with("421"))
    );
    assert!(
        log.iter()
            .all(|l| l.outcome == LogOutcome::Deferred || l.outcome == LogOutcome::Delivered)
    );
    runner.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn fresh_mail_goes_first_past_a_backlog_of_ten_thousand() {
    let w = World::new();
    let core = w.core().await;
    directory(&core).await;
    let live = FakeMx::start(Behaviour::default()).await;
    w.dns.point("live.test", live.addr);
    // The backlog's destination first refuses connections...
    w.dns.point("dead.test", closed_port());
    let cfg = QueueConfig {
        max_rcpts_per_transaction: 10,
        ..qcfg()
    };
    let runner = w.runner(&core, cfg);
    for m in 0..100 {
        let rcpts: Vec<String> = (0..100).map(|r| format!("u{m}x{r}@dead.test")).collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        send(
            &core,
            "alice@local.test",
            &rcpts,
            &msg(&format!("old{m}"), "backlog\r\n"),
        )
        .await;
    }
    // ...so one attempt defers all 10,000 to the retry lane.
    wait_for("the backlog to be deferred", 60, async || {
        let st = core.queue().stats().await.unwrap();
        if std::env::var("QDEBUG").is_ok() {
            eprintln!(
                "{:?} {:?}",
                st.by_lane,
                core.queue().destination("dead.test").await.unwrap()
            );
        }
        st.by_lane[1].1 == 10_000
    })
    .await;

    // Now it answers, slowly and only with 4xx (a tarpit), and the backlog
    // is due. Fresh mail for a healthy destination arrives meanwhile.
    let tarpit = FakeMx::start(Behaviour {
        data_delay: Duration::from_millis(10),
        greeting_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    tarpit.set_rcpt(|_| "451 4.3.2 not now".into());
    w.dns.point("dead.test", tarpit.addr);
    w.clock.advance(2 * 3600);
    core.queue()
        .retry(&mailcore::queue::Target::Domain("dead.test".into()))
        .await
        .unwrap();
    wait_for("the backlog to be worked on", 20, async || {
        tarpit.stats.sessions.load(Ordering::SeqCst) > 0
    })
    .await;
    for i in 0..100 {
        send(
            &core,
            "alice@local.test",
            &[&format!("f{i}@live.test")],
            &msg(&format!("fresh{i}"), "new\r\n"),
        )
        .await;
    }
    wait_for("fresh mail", 60, async || live.accepted().len() == 100).await;

    // The order of events in the delivery log: when the last fresh message
    // was delivered, most of the backlog had not even been tried again.
    let log = core
        .queue()
        .log(&LogQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let last_fresh = log
        .iter()
        .filter(|l| l.domain == "live.test" && l.outcome == LogOutcome::Delivered)
        .map(|l| l.id)
        .max()
        .unwrap();
    let backlog_retried_before = log
        .iter()
        .filter(|l| {
            l.domain == "dead.test" && l.id < last_fresh && l.reply.starts_with("451 4.3.2")
        })
        .count();
    eprintln!("backlog attempts before the last fresh delivery: {backlog_retried_before}");
    assert!(
        backlog_retried_before < 1000,
        "fresh mail waited behind {backlog_retried_before} backlog attempts"
    );
    let still_waiting = core.queue().stats().await.unwrap().by_domain;
    let dead_left = still_waiting
        .iter()
        .find(|(d, _)| d == "dead.test")
        .unwrap()
        .1;
    assert_eq!(dead_left, 10_000, "the backlog is deferred, not lost");
    runner.abort();
}

/// `nodes` runners (each its own core, as separate processes would have)
/// deliver `entries` while mail keeps arriving on every node: each entry
/// reaches the fake MX exactly once and is logged once.
async fn runners_deliver_each_entry_once(w: World, nodes: usize, entries: usize) {
    let cores = {
        let mut v = Vec::new();
        for _ in 0..nodes {
            v.push(w.core().await);
        }
        v
    };
    directory(&cores[0]).await;
    let mx = FakeMx::start(Behaviour {
        data_delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    for d in ["a.test", "b.test", "c.test", "d.test"] {
        w.dns.point(d, mx.addr);
    }
    let cfg = QueueConfig {
        max_rcpts_per_transaction: 1,
        ..qcfg()
    };
    let runners: Vec<RunnerHandle> = cores.iter().map(|c| w.runner(c, cfg.clone())).collect();
    for i in 0..entries {
        let d = ["a.test", "b.test", "c.test", "d.test"][i % 4];
        send(
            &cores[i % nodes],
            "alice@local.test",
            &[&format!("u{i}@{d}")],
            &msg(&format!("pool{i}"), "x\r\n"),
        )
        .await;
    }
    wait_for("all delivered", 90, async || queue_empty(&cores[0]).await).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in mx.accepted() {
        *count.entry(r.rcpts.join(",")).or_default() += 1;
    }
    assert_eq!(count.len(), entries, "every entry delivered");
    assert!(
        count.values().all(|n| *n == 1),
        "some entry delivered twice: {count:?}"
    );
    let log = cores[0]
        .queue()
        .log(&LogQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        log.iter()
            .filter(|l| l.outcome == LogOutcome::Delivered)
            .count(),
        entries
    );
    for r in runners {
        r.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn two_runners_on_sqlite_deliver_each_entry_once() {
    runners_deliver_each_entry_once(World::sqlite(), 2, 120).await;
}

#[tokio::test]
async fn two_runners_on_postgres_deliver_each_entry_once() {
    let Some(pg) = common::PgDb::create("queue_two_runners") else {
        return;
    };
    runners_deliver_each_entry_once(World::with_url(&pg.url), 2, 120).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runners_on_postgres_deliver_each_entry_once_under_load() {
    let Some(pg) = common::PgDb::create("queue_three_runners") else {
        return;
    };
    runners_deliver_each_entry_once(World::with_url(&pg.url), 3, 600).await;
}

/// Two nodes share a destination's limit: it allows 2 connections (a
/// ceiling stored after an earlier 421), and the two runners together
/// never open more, so the fake never has to refuse one. With each node
/// keeping its own limit, they opened 2 each and met 421s.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_a_destinations_connection_limit() {
    let Some(pg) = common::PgDb::create("queue_shared_limit") else {
        return;
    };
    let w = World::with_url(&pg.url);
    let a = w.core().await;
    let b = w.core().await;
    directory(&a).await;
    let mx = FakeMx::start(Behaviour {
        max_conns: Some(2),
        data_delay: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    w.dns.point("busy.test", mx.addr);
    let mut d = mailcore::queue::Destination::new("busy.test", 2);
    d.ceiling = Some(2);
    a.queue_save_destination(&d).await.unwrap();
    let cfg = QueueConfig {
        max_rcpts_per_transaction: 1,
        ..qcfg()
    };
    let ra = w.runner(&a, cfg.clone());
    let rb = w.runner(&b, cfg);
    for (core, runner) in [(&a, &ra), (&b, &rb)] {
        let probe = runner.probe();
        core.start_cluster(mailcore::cluster::NodeInfo {
            version: "test".into(),
            heartbeat: Duration::from_millis(200),
            queue_in_flight: Box::new(move || probe.in_flight()),
            runs_queue: true,
        });
    }
    wait_for("both runners count two nodes", 20, async || {
        ra.cluster_nodes() == 2 && rb.cluster_nodes() == 2
    })
    .await;
    for i in 0..24 {
        let core = if i % 2 == 0 { &a } else { &b };
        send(
            core,
            "alice@local.test",
            &[&format!("u{i}@busy.test")],
            &msg(&format!("shared{i}"), "x\r\n"),
        )
        .await;
    }
    wait_for("all delivered", 60, async || queue_empty(&a).await).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in mx.accepted() {
        *count.entry(r.rcpts.join(",")).or_default() += 1;
    }
    assert_eq!(count.len(), 24, "every message delivered");
    assert!(count.values().all(|n| *n == 1), "once each: {count:?}");
    assert_eq!(
        mx.stats.refused_421.load(Ordering::SeqCst),
        0,
        "the cluster stayed under the destination's limit"
    );
    assert!(mx.stats.max_open.load(Ordering::SeqCst) <= 2);
    ra.stop(Duration::from_secs(5)).await;
    rb.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_killed_worker_is_replaced_after_its_lease() {
    let w = World::new();
    let core = w.core().await;
    directory(&core).await;
    let mx = FakeMx::start(Behaviour::default()).await;
    // The first session gets the whole message and then never answers.
    mx.behaviour.hang_after_dot.store(1, Ordering::SeqCst);
    w.dns.point("remote.test", mx.addr);
    let a = w.runner(&core, qcfg());
    let raw = msg("crash", "x\r\n");
    send(&core, "alice@local.test", &["bob@remote.test"], &raw).await;
    wait_for("data at the fake", 20, async || {
        mx.stats.data_complete.load(Ordering::SeqCst) == 1
    })
    .await;
    // Kill the worker mid-delivery: no 250 was seen, nothing recorded.
    a.abort();
    let e = core
        .queue()
        .list(&QueueFilter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(e.lock_owner.as_deref(), Some(a.owner()));
    assert_eq!(e.attempts, 0);

    // A second runner leaves the leased entry alone...
    let core_b = w.core().await;
    let b = w.runner(&core_b, qcfg());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mx.stats.sessions.load(Ordering::SeqCst), 1);
    // ...until the lease runs out, then delivers it.
    w.clock.advance(qcfg().lease_secs + 1);
    core_b.queue_wake();
    wait_for("redelivery", 20, async || queue_empty(&core_b).await).await;
    assert_eq!(mx.accepted().len(), 1, "exactly one remote 250");
    assert_eq!(mx.accepted()[0].data, raw);
    let log = core_b
        .queue()
        .log(&LogQuery {
            text: Some("crash@local.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, LogOutcome::Delivered);
    b.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn required_tls_is_never_skipped() {
    let w = World::new();
    let core = w.core().await;
    directory(&core).await;
    let plain = FakeMx::start(Behaviour::default()).await;
    w.dns.point("secure.test", plain.addr);
    let relay = LettreRelay::new(
        &RelayConfig {
            require_tls: "secure.test".into(),
            ..relay_cfg()
        },
        "tern.test",
        w.dns.clone(),
    )
    .unwrap();
    let runner = QueueRunner::new(core.clone(), Arc::new(relay), qcfg()).start();
    send(
        &core,
        "alice@local.test",
        &["x@secure.test"],
        &msg("reqtls", "secret\r\n"),
    )
    .await;
    let mut e = None;
    wait_for("the deferral", 20, async || {
        e = core
            .queue()
            .list(&QueueFilter::default())
            .await
            .unwrap()
            .pop();
        e.as_ref().is_some_and(|e| e.attempts == 1)
    })
    .await;
    assert!(
        e.unwrap()
            .last_error
            .unwrap()
            .contains("4.7.10 TLS is required")
    );
    assert!(plain.accepted().is_empty(), "nothing sent in clear text");
    runner.stop(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------
// Through the `tern` binary: submission in, relay out, the queue CLI.

fn lettre_client(
    t: &common::Tern,
    port: u16,
    implicit: bool,
) -> lettre::AsyncSmtpTransport<lettre::Tokio1Executor> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let pem = std::fs::read(t.cert()).unwrap();
    let tls = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .build_rustls()
        .unwrap();
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(if implicit {
            Tls::Wrapper(tls)
        } else {
            Tls::Required(tls)
        })
        .credentials(Credentials::new(
            "alice@example.test".into(),
            common::PW.into(),
        ))
        .build()
}

fn lettre_mail(to: &[&str], subject: &str) -> lettre::Message {
    let mut b = lettre::Message::builder()
        .from("alice@example.test".parse().unwrap())
        .subject(subject);
    for t in to {
        b = b.to(t.parse().unwrap());
    }
    b.body(format!("{subject}\r\n.a line with a leading dot\r\n"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tern_serve_relays_submitted_mail_to_the_remote_mx() {
    use lettre::AsyncTransport;
    let mx = FakeMx::start(Behaviour {
        starttls: true,
        ..Default::default()
    })
    .await;
    let route = format!("remote.test=127.0.0.1:{}", mx.addr.port());
    let t = common::start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
    ]);
    lettre_client(&t, t.sub, false)
        .send(lettre_mail(
            &["bob@example.test", "far@remote.test"],
            "out and in",
        ))
        .await
        .unwrap();
    wait_for("the remote copy", 30, async || !mx.accepted().is_empty()).await;
    let got = mx.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "alice@example.test");
    assert_eq!(got[0].rcpts, ["far@remote.test"]);
    assert!(got[0].tls);
    let text = String::from_utf8(got[0].data.clone()).unwrap();
    assert!(text.contains("Subject: out and in\r\n"));
    assert!(
        text.contains("\r\n.a line with a leading dot\r\n"),
        "{text}"
    );
    assert!(text.to_ascii_lowercase().contains("message-id: <"));
    // The local recipient got it directly, not through the queue.
    let bob = t.inbox("bob@example.test").await;
    assert_eq!(bob.len(), 1);
    wait_for("the queue to empty", 10, async || t.queue_len().await == 0).await;
    let log = common::cli_out(t.dir.path(), &["queue", "log", "far@remote.test"]);
    assert!(log.contains("delivered"), "{log}");
    assert!(log.contains("tls=yes"), "{log}");
    assert!(
        log.contains("<alice@example.test>\t<far@remote.test>"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_cli_answers_how_many_where_since_when_and_why() {
    let dead = closed_port();
    let route = format!("remote.test={dead}");
    let t = common::start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
        ("TERN_QUEUE__POLL_INTERVAL_MS", "50"),
    ]);
    use lettre::AsyncTransport;
    let client = lettre_client(&t, t.smtps, true);
    client
        .send(lettre_mail(&["a@remote.test"], "first"))
        .await
        .unwrap();
    client
        .send(lettre_mail(&["b@remote.test"], "second"))
        .await
        .unwrap();
    let dir = t.dir.path();
    wait_for("both deferred", 30, async || {
        common::cli_out(dir, &["queue", "stats"]).contains("lane retry\t2")
    })
    .await;

    let stats = common::cli_out(dir, &["queue", "stats"]);
    assert!(stats.contains("total\t2\n"), "{stats}");
    assert!(stats.contains("lane fresh\t0\n"), "{stats}");
    assert!(stats.contains("oldest\t"), "{stats}");
    let dest = stats
        .lines()
        .find(|l| l.starts_with("destination remote.test\t2"))
        .unwrap();
    assert!(
        dest.contains("concurrency=2"),
        "a refused connection halved 5 to 2: {dest}"
    );
    assert!(
        dest.contains("next=in "),
        "the destination backs off: {dest}"
    );
    assert!(
        dest.contains("last=451 4.4.1") || dest.contains("last=451 4.4.2"),
        "{dest}"
    );

    let list = common::cli_out(dir, &["queue", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].contains("\tretry\tqueued\t"));
    assert!(lines[0].contains("<alice@example.test>\t<a@remote.test>"));
    let id = lines[0].split('\t').next().unwrap().to_owned();
    let show = common::cli_out(dir, &["queue", "show", &id]);
    assert!(show.contains("to: <a@remote.test>"), "{show}");
    assert!(show.contains("message-id: <"), "{show}");
    assert!(show.contains("lane: retry"), "{show}");
    assert!(show.contains("last error: 451"), "{show}");

    let out = common::cli_out(dir, &["queue", "hold", "--domain", "remote.test"]);
    assert_eq!(out, "2 entries held\n");
    let stats = common::cli_out(dir, &["queue", "stats"]);
    assert!(stats.contains("held=true"), "{stats}");
    assert_eq!(
        common::cli_out(dir, &["queue", "release", "--domain", "remote.test"]),
        "2 entries released\n"
    );
    assert_eq!(
        common::cli_out(dir, &["queue", "hold", &id]),
        "1 entries held\n"
    );
    assert!(common::cli_out(dir, &["queue", "show", &id]).contains("status: held"));
    assert_eq!(
        common::cli_out(dir, &["queue", "retry", "--domain", "remote.test"]),
        "2 entries due now\n"
    );
    assert_eq!(
        common::cli_out(dir, &["queue", "delete", &id]),
        "1 entries deleted\n"
    );
    let list = common::cli_out(dir, &["queue", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    let log = common::cli_out(dir, &["queue", "log", "a@remote.test"]);
    assert!(log.contains("deleted"), "{log}");
    assert!(log.contains("deferred"), "{log}");

    // Bad input gets a clear error.
    let bad = std::process::Command::new(common::BIN)
        .args(["queue", "list", "--lane", "slow"])
        .env("TERN_DATA_DIR", dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown lane slow"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_smarthost_takes_mail_with_auth_over_starttls_or_implicit_tls() {
    // The smarthost is a real Tern: its submission and SMTPS ports.
    let hub = common::start(&[]);
    for (port, tls, subject) in [
        (hub.sub, "starttls", "via 587"),
        (hub.smtps, "tls", "via 465"),
    ] {
        let w = World::new();
        let core = w.core().await;
        let relay = LettreRelay::new(
            &RelayConfig {
                smarthost: format!("127.0.0.1:{port}"),
                smarthost_tls: tls.into(),
                smarthost_username: "alice@example.test".into(),
                smarthost_password: common::PW.into(),
                ..relay_cfg()
            },
            "edge.test",
            w.dns.clone(),
        )
        .unwrap();
        let runner = QueueRunner::new(core.clone(), Arc::new(relay), qcfg()).start();
        let raw = format!(
            "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
             Message-ID: <{tls}@edge.test>\r\n\r\nthrough the hub\r\n"
        );
        send(
            &core,
            "alice@example.test",
            &["bob@example.test"],
            raw.as_bytes(),
        )
        .await;
        wait_for("the smarthost", 30, async || queue_empty(&core).await).await;
        let log = core.queue().log(&LogQuery::default()).await.unwrap();
        assert_eq!(log[0].outcome, LogOutcome::Delivered, "{log:?}");
        assert!(log[0].tls);
        runner.stop(Duration::from_secs(5)).await;
    }
    let bob = hub.inbox("bob@example.test").await;
    let subjects: Vec<bool> = ["via 587", "via 465"]
        .iter()
        .map(|s| {
            bob.iter()
                .any(|m| String::from_utf8_lossy(m).contains(&format!("Subject: {s}")))
        })
        .collect();
    assert_eq!(subjects, [true, true]);

    // A wrong password defers (our configuration is at fault, not the
    // recipient), and never bounces.
    let w = World::new();
    let core = w.core().await;
    let relay = LettreRelay::new(
        &RelayConfig {
            smarthost: format!("127.0.0.1:{}", hub.sub),
            smarthost_username: "alice@example.test".into(),
            smarthost_password: "wrong".into(),
            ..relay_cfg()
        },
        "edge.test",
        w.dns.clone(),
    )
    .unwrap();
    let runner = QueueRunner::new(core.clone(), Arc::new(relay), qcfg()).start();
    send(
        &core,
        "alice@example.test",
        &["bob@example.test"],
        b"Subject: x\r\n\r\nx\r\n",
    )
    .await;
    let mut e = None;
    wait_for("the deferral", 30, async || {
        e = core
            .queue()
            .list(&QueueFilter::default())
            .await
            .unwrap()
            .pop();
        e.as_ref().is_some_and(|e| e.attempts == 1)
    })
    .await;
    let err = e.unwrap().last_error.unwrap();
    assert!(
        err.starts_with("451 4.7.8 smarthost refused our login"),
        "{err}"
    );
    runner.stop(Duration::from_secs(5)).await;
}

/// DESIGN.md rule 2 for the queue: while PostgreSQL is unreachable the
/// runner neither crashes nor loses an attempt's result; when it returns,
/// delivery resumes without a restart, and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread")]
async fn the_runner_rides_out_a_database_outage() {
    let Some(pg) = common::PgDb::create("queue_outage") else {
        return;
    };
    let w = World::with_url(&pg.url);
    let core = w.core().await;
    directory(&core).await;
    let mx = FakeMx::start(Behaviour {
        data_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    w.dns.point("remote.test", mx.addr);
    send(
        &core,
        "alice@local.test",
        &["one@remote.test"],
        &msg("outage1", "x\r\n"),
    )
    .await;
    let runner = w.runner(&core, qcfg());
    // The attempt is under way (the fake holds its reply to the data)...
    wait_for("the attempt", 20, async || {
        mx.stats.data_complete.load(Ordering::SeqCst) == 1
    })
    .await;
    // ...when the database goes away. The 250 arrives while it is gone.
    pg.cut_off();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mx.accepted().len(), 1);
    pg.restore();
    wait_for("the result to be recorded", 30, async || {
        core.queue().len().await.is_ok_and(|n| n == 0)
    })
    .await;
    let log = core
        .queue()
        .log(&LogQuery {
            text: Some("outage1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, LogOutcome::Delivered);

    // New mail queued after the outage goes out as usual.
    send(
        &core,
        "alice@local.test",
        &["two@remote.test"],
        &msg("outage2", "x\r\n"),
    )
    .await;
    wait_for("delivery after the outage", 30, async || {
        mx.accepted().len() == 2
    })
    .await;
    assert_eq!(mx.accepted()[1].rcpts, ["two@remote.test"]);
    runner.stop(Duration::from_secs(5)).await;
}

fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one sample line of a Prometheus text page, 0 if absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_after_one_delivery_and_one_failed_login() {
    use lettre::AsyncTransport;
    let mx = FakeMx::start(Behaviour::default()).await;
    let route = format!("remote.test=127.0.0.1:{}", mx.addr.port());
    let t = common::start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
        ("TERN_WEB__METRICS_TOKEN", "s3cret-scrape-token"),
    ]);
    let url = format!("http://127.0.0.1:{}/metrics", t.web);
    let scrape = || curl(&["-H", "Authorization: Bearer s3cret-scrape-token", &url]);
    // Without the token, or with a wrong one: 401.
    let code = |extra: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(extra);
        a.push(&url);
        curl(&a)
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(
        code(&["-H", "Authorization: Bearer wrong-token-of-same-len"]),
        "401"
    );

    let before = scrape();
    assert!(before.contains("# TYPE tern_queue_depth gauge"), "{before}");
    lettre_client(&t, t.sub, false)
        .send(lettre_mail(&["far@remote.test"], "metered"))
        .await
        .unwrap();
    wait_for("the remote copy", 30, async || !mx.accepted().is_empty()).await;
    wait_for("the queue to empty", 10, async || t.queue_len().await == 0).await;
    // One failed web login.
    let login = format!("http://127.0.0.1:{}/api/login", t.web);
    curl(&[
        "-o",
        "/dev/null",
        "-d",
        "address=alice@example.test&password=wrong-password",
        &login,
    ]);

    let after = scrape();
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved("tern_messages_total{event=\"accepted\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("tern_messages_total{event=\"delivered\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("tern_auth_failures_total{protocol=\"web\"}"),
        1.0,
        "{after}"
    );
    assert!(
        moved("tern_connections_total{protocol=\"smtp\"}") >= 1.0,
        "{after}"
    );
    assert_eq!(moved("tern_delivery_latency_seconds_count"), 1.0, "{after}");
    assert_eq!(
        sample(&after, "tern_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "tern_queue_depth{lane=\"fresh\"}"),
        0.0,
        "{after}"
    );
    assert!(
        after.contains("tern_queue_depth{lane=\"retry\"} 0"),
        "{after}"
    );
}

/// The relay used straight (no queue), with a fake DNS pointing `domain`
/// at `mx`.
fn relay_to(domain: &str, mx: &FakeMx) -> LettreRelay {
    let dns = Arc::new(FakeDns::default());
    dns.point(domain, mx.addr);
    LettreRelay::new(&relay_cfg(), "tern.test", dns).unwrap()
}

/// One message from alice to `rcpts` at `domain`, through `relay`.
async fn relay_one(
    relay: &LettreRelay,
    domain: &str,
    rcpts: &[String],
    msg: &str,
) -> mailcore::queue::RelayReport {
    relay_req(relay, domain, rcpts, msg, false).await
}

/// [`relay_one`], with or without REQUIRETLS.
async fn relay_req(
    relay: &LettreRelay,
    domain: &str,
    rcpts: &[String],
    msg: &str,
    require_tls: bool,
) -> mailcore::queue::RelayReport {
    use mailcore::queue::{Relay, RelayRequest};
    relay
        .send(&RelayRequest {
            domain,
            mail_from: "alice@example.test",
            rcpts,
            message: msg.as_bytes(),
            require_tls,
        })
        .await
}

/// PIPELINING (RFC 2920) and connection reuse in the relay, straight
/// against a fake MX that answers MAIL only once RCPTs and DATA have
/// arrived too: a client that waited for each reply would hang there. 50
/// messages of three recipients (one refused for good, one for now) go
/// over one connection, each transaction in one write, RSET between, and
/// every recipient gets its own reply.
#[tokio::test(flavor = "multi_thread")]
async fn relay_pipelines_and_reuses_one_connection() {
    let mx = FakeMx::start(Behaviour {
        strict_pipelining: true,
        ..Behaviour::default()
    })
    .await;
    mx.set_rcpt(|a| match a.split('@').next() {
        Some("gone") => "550 5.1.1 no such user".into(),
        Some("full") => "452 4.2.2 mailbox full".into(),
        _ => "250 2.1.5 ok".into(),
    });
    let relay = relay_to("pipe.test", &mx);
    let rcpts: Vec<String> = ["ok@pipe.test", "gone@pipe.test", "full@pipe.test"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t0 = Instant::now();
    for i in 0..50 {
        let msg = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
        let report = relay_one(&relay, "pipe.test", &rcpts, &msg).await;
        let codes: Vec<u16> = report.replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 550, 452], "message {i}: {:?}", report.replies);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "a hang on MAIL's reply means the client did not pipeline"
    );
    let got = mx.accepted();
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|r| r.rcpts == ["ok@pipe.test"]));
    assert_eq!(got[7].data, b"Subject: m7\r\n\r\nbody 7\r\n");
    let st = &mx.stats;
    assert_eq!(
        st.pipelined_groups.load(Ordering::SeqCst),
        50,
        "one write each"
    );
    assert_eq!(
        st.sessions.load(Ordering::SeqCst),
        1,
        "one connection for all"
    );
    assert!(
        st.rsets.load(Ordering::SeqCst) >= 49,
        "RSET between messages"
    );
}

/// A session the server closed is not reused: with a server that ends
/// every connection after one message, each message opens its own, and
/// none is lost.
#[tokio::test(flavor = "multi_thread")]
async fn relay_does_not_reuse_a_closed_connection() {
    let mx = FakeMx::start(Behaviour {
        messages_per_connection: Some(1),
        ..Behaviour::default()
    })
    .await;
    let relay = relay_to("once.test", &mx);
    let rcpts = vec!["bob@once.test".to_owned()];
    for i in 0..5 {
        let msg = format!("Subject: once {i}\r\n\r\nx\r\n");
        let report = relay_one(&relay, "once.test", &rcpts, &msg).await;
        assert_eq!(report.replies[0].code, 250, "{:?}", report.replies);
    }
    assert_eq!(mx.accepted().len(), 5);
    assert_eq!(mx.stats.sessions.load(Ordering::SeqCst), 5);
}

// ---------------------------------------------------------------------
// Authenticated TLS to MX hosts: MTA-STS (RFC 8461) and DANE (RFC 7672).

/// A private CA, as PEM on disk for `relay.tls_roots_file`.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: rcgen::Certificate,
    pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Tern test CA");
        let cert = p.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(p, key);
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, cert.pem()).unwrap();
        TestCa {
            issuer,
            cert,
            pem,
            _dir: dir,
        }
    }

    /// A certificate for `names` signed by this CA: (chain, PKCS#8 key).
    fn leaf(&self, names: &[&str]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (
            vec![cert.der().to_vec(), self.cert.der().to_vec()],
            key.serialize_der(),
        )
    }
}

/// Policies served from memory, counting fetches.
#[derive(Default)]
struct MemFetcher {
    policies: std::sync::Mutex<HashMap<String, Result<String, String>>>,
    fetches: std::sync::atomic::AtomicUsize,
}

impl MemFetcher {
    fn serve(&self, domain: &str, policy: Result<String, String>) {
        self.policies
            .lock()
            .unwrap()
            .insert(domain.to_owned(), policy);
    }
}

#[async_trait::async_trait]
impl tern::relay::mta_sts::PolicyFetcher for MemFetcher {
    async fn fetch(&self, domain: &str) -> Result<String, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.policies
            .lock()
            .unwrap()
            .get(domain)
            .cloned()
            .unwrap_or_else(|| Err("404".into()))
    }
}

fn sts_policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

fn sts_relay(
    dns: &Arc<FakeDns>,
    ca: &TestCa,
    fetcher: &Arc<MemFetcher>,
    store: Arc<dyn tern::relay::mta_sts::PolicyStore>,
) -> LettreRelay {
    LettreRelay::new(
        &RelayConfig {
            tls_roots_file: ca.pem.display().to_string(),
            ..relay_cfg()
        },
        "tern.test",
        dns.clone(),
    )
    .unwrap()
    .with_mta_sts(fetcher.clone(), store)
}

/// A destination publishing an MTA-STS policy (TXT and policy) whose MX
/// is `mx.<domain>` at `addr`.
fn publish_sts(
    dns: &FakeDns,
    f: &MemFetcher,
    domain: &str,
    id: &str,
    policy: String,
    addr: std::net::SocketAddr,
) {
    dns.point(domain, addr);
    dns.txt.lock().unwrap().insert(
        format!("_mta-sts.{domain}"),
        vec![format!("v=STSv1; id={id}")],
    );
    f.serve(domain, Ok(policy));
}

/// `enforce` delivers only to a policy MX host over TLS with a
/// certificate valid for its name; anything less is deferred (4xx, never
/// a bounce, never clear text). `testing` delivers anyway, and so does a
/// message that says `TLS-Required: No` (RFC 8689 §5).
#[tokio::test(flavor = "multi_thread")]
async fn mta_sts_enforce_needs_a_valid_certificate_for_a_policy_mx() {
    let ca = TestCa::new();
    let good = FakeMx::start(Behaviour {
        starttls: true,
        cert: Some(ca.leaf(&["mx.good.test", "mx.stray.test"])),
        ..Default::default()
    })
    .await;
    // Self-signed: fine for opportunistic TLS, not for a policy.
    let selfsigned = FakeMx::start(Behaviour {
        starttls: true,
        ..Default::default()
    })
    .await;
    let plain = FakeMx::start(Behaviour::default()).await;
    let dns = Arc::new(FakeDns::default());
    let f = Arc::new(MemFetcher::default());
    let enforce = |mx: &str| sts_policy("enforce", mx);
    publish_sts(
        &dns,
        &f,
        "good.test",
        "1",
        enforce("mx.good.test"),
        good.addr,
    );
    publish_sts(
        &dns,
        &f,
        "bad.test",
        "1",
        enforce("*.bad.test"),
        selfsigned.addr,
    );
    publish_sts(
        &dns,
        &f,
        "plain.test",
        "1",
        enforce("mx.plain.test"),
        plain.addr,
    );
    publish_sts(
        &dns,
        &f,
        "stray.test",
        "1",
        enforce("mx.elsewhere.test"),
        good.addr,
    );
    publish_sts(
        &dns,
        &f,
        "soft.test",
        "1",
        sts_policy("testing", "mx.soft.test"),
        selfsigned.addr,
    );
    // Published TXT, but the policy cannot be fetched: no policy.
    dns.point("nofetch.test", selfsigned.addr);
    dns.txt
        .lock()
        .unwrap()
        .insert("_mta-sts.nofetch.test".into(), vec!["v=STSv1; id=9".into()]);
    let relay = sts_relay(&dns, &ca, &f, Arc::new(tern::relay::mta_sts::NoStore));
    let one = |d: &str| vec![format!("x@{d}")];
    let msg = "Subject: sts\r\n\r\nbody\r\n";

    let r = relay_one(&relay, "good.test", &one("good.test"), msg).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
    assert!(r.tls);
    assert_eq!(good.accepted().len(), 1);

    let r = relay_one(&relay, "bad.test", &one("bad.test"), msg).await;
    assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    assert!(
        r.replies[0]
            .text
            .contains("4.7.5 MTA-STS: certificate of mx.bad.test not accepted"),
        "{:?}",
        r.replies
    );
    let r = relay_one(&relay, "plain.test", &one("plain.test"), msg).await;
    assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    assert!(r.replies[0].text.contains("4.7.10"), "{:?}", r.replies);
    let r = relay_one(&relay, "stray.test", &one("stray.test"), msg).await;
    assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    assert!(
        r.replies[0]
            .text
            .contains("not named in the MTA-STS policy of stray.test"),
        "{:?}",
        r.replies
    );
    assert!(selfsigned.accepted().is_empty() && plain.accepted().is_empty());
    assert_eq!(
        good.accepted().len(),
        1,
        "nothing for stray.test reached a host outside its policy"
    );

    let r = relay_one(&relay, "soft.test", &one("soft.test"), msg).await;
    assert_eq!(
        r.replies[0].code, 250,
        "testing mode delivers: {:?}",
        r.replies
    );
    let r = relay_one(&relay, "nofetch.test", &one("nofetch.test"), msg).await;
    assert_eq!(
        r.replies[0].code, 250,
        "no policy, opportunistic: {:?}",
        r.replies
    );
    let r = relay_one(
        &relay,
        "bad.test",
        &one("bad.test"),
        "TLS-Required: No\r\nSubject: sts\r\n\r\nbody\r\n",
    )
    .await;
    assert_eq!(r.replies[0].code, 250, "TLS-Required: No: {:?}", r.replies);
    assert_eq!(selfsigned.accepted().len(), 3);
}

/// A fetched policy is kept (in the database, so on PostgreSQL and
/// SQLite alike) and holds when the TXT record disappears and the policy
/// host is gone, across a new relay (a restart); a new TXT id fetches it
/// again, and the policy can be lifted that way.
#[tokio::test(flavor = "multi_thread")]
async fn mta_sts_policy_is_kept_across_a_restart_and_a_stripped_txt_record() {
    let w = World::new();
    let core = w.core().await;
    let ca = TestCa::new();
    let selfsigned = FakeMx::start(Behaviour {
        starttls: true,
        ..Default::default()
    })
    .await;
    let f = Arc::new(MemFetcher::default());
    let store = || -> Arc<dyn tern::relay::mta_sts::PolicyStore> {
        Arc::new(tern::relay::mta_sts::DbStore(core.clone()))
    };
    publish_sts(
        &w.dns,
        &f,
        "kept.test",
        "a1",
        sts_policy("enforce", "mx.kept.test"),
        selfsigned.addr,
    );
    let rcpt = vec!["x@kept.test".to_owned()];
    let msg = "Subject: kept\r\n\r\nbody\r\n";
    let relay = sts_relay(&w.dns, &ca, &f, store());
    for _ in 0..2 {
        let r = relay_one(&relay, "kept.test", &rcpt, msg).await;
        assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    }
    assert_eq!(
        f.fetches.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
    let stored = core.mta_sts_policy("kept.test").await.unwrap().unwrap();
    assert_eq!(stored.policy_id, "a1");
    assert!(stored.policy.contains("mode: enforce"));

    // An attacker strips the TXT record and the policy host; a new relay
    // still enforces the policy it kept.
    w.dns.txt.lock().unwrap().clear();
    f.serve("kept.test", Err("connection refused".into()));
    let relay = sts_relay(&w.dns, &ca, &f, store());
    let r = relay_one(&relay, "kept.test", &rcpt, msg).await;
    assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    assert!(selfsigned.accepted().is_empty());

    // The domain publishes a new id with mode none: fetched, and lifted.
    publish_sts(
        &w.dns,
        &f,
        "kept.test",
        "a2",
        "version: STSv1\r\nmode: none\r\nmax_age: 60\r\n".into(),
        selfsigned.addr,
    );
    let relay = sts_relay(&w.dns, &ca, &f, store());
    let r = relay_one(&relay, "kept.test", &rcpt, msg).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
    assert_eq!(
        core.mta_sts_policy("kept.test")
            .await
            .unwrap()
            .unwrap()
            .policy_id,
        "a2"
    );
}

/// DANE: a secure TLSA record pins the MX host's key (no CA needed,
/// DANE-EE); a mismatch defers; a record the resolver did not vouch for
/// (no AD bit) is ignored, as RFC 7672 §2.2 requires.
#[tokio::test(flavor = "multi_thread")]
async fn dane_tlsa_records_pin_the_mx_key() {
    let ck = rcgen::generate_simple_self_signed(vec!["mx.dane.test".to_owned()]).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&ck.signing_key);
    let mx = FakeMx::start(Behaviour {
        starttls: true,
        cert: Some((vec![ck.cert.der().to_vec()], ck.signing_key.serialize_der())),
        ..Default::default()
    })
    .await;
    let dns = Arc::new(FakeDns::default());
    dns.point("dane.test", mx.addr);
    let relay = LettreRelay::new(&relay_cfg(), "tern.test", dns.clone()).unwrap();
    let rcpt = vec!["x@dane.test".to_owned()];
    let msg = "Subject: dane\r\n\r\nbody\r\n";
    let sha256 = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b).to_vec()
    };
    let tlsa = |data: Vec<u8>, secure: bool| tern::relay::dns::TlsaAnswer {
        records: vec![tern::relay::tls_auth::Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data,
        }],
        secure,
    };
    dns.tlsa
        .lock()
        .unwrap()
        .insert("mx.dane.test".into(), tlsa(sha256(&spki), true));
    let r = relay_one(&relay, "dane.test", &rcpt, msg).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
    assert!(r.tls);

    dns.tlsa
        .lock()
        .unwrap()
        .insert("mx.dane.test".into(), tlsa(sha256(b"another key"), true));
    let r = relay_one(&relay, "dane.test", &rcpt, msg).await;
    assert_eq!(r.replies[0].code, 451, "{:?}", r.replies);
    assert!(r.replies[0].text.contains("4.7.5 DANE"), "{:?}", r.replies);

    dns.tlsa
        .lock()
        .unwrap()
        .insert("mx.dane.test".into(), tlsa(sha256(b"another key"), false));
    let r = relay_one(&relay, "dane.test", &rcpt, msg).await;
    assert_eq!(
        r.replies[0].code, 250,
        "insecure TLSA ignored: {:?}",
        r.replies
    );
    assert_eq!(mx.accepted().len(), 2);
}

/// The HTTPS side of MTA-STS, for real: `tern serve` publishes its policy
/// at `https://mta-sts.D/.well-known/mta-sts.txt` (web.listen_tls, its own
/// certificate), the relay's fetcher gets it over rustls with a WebPKI
/// check of `mta-sts.D`, and the DNS helper lists the `_mta-sts` record
/// whose id matches what is served, and the TLSA record of the key.
#[tokio::test(flavor = "multi_thread")]
async fn tern_serves_its_mta_sts_policy_and_the_helper_publishes_it() {
    use tern::relay::mta_sts::{HttpsFetcher, PolicyFetcher};
    let ca = TestCa::new();
    let (chain, key) = ca.leaf(&[
        "mx.example.test",
        "mta-sts.example.test",
        "mta-sts.unknown.test",
    ]);
    let files = tempfile::tempdir().unwrap();
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    let cert_path = files.path().join("cert.pem");
    let key_path = files.path().join("key.pem");
    std::fs::write(
        &cert_path,
        chain
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(&key_path, pem("PRIVATE KEY", &key)).unwrap();
    let https = common::free_port();
    let (c, k, l) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
        format!("127.0.0.1:{https}"),
    );
    let env = [
        ("TERN_TLS__CERT", c.as_str()),
        ("TERN_TLS__KEY", k.as_str()),
        ("TERN_TLS__MTA_STS_MODE", "enforce"),
        ("TERN_WEB__LISTEN_TLS", l.as_str()),
    ];
    let t = common::start(&env);
    let dns = common::fakedns::FakeDns::start();
    dns.a("mta-sts.example.test");
    dns.a("mta-sts.unknown.test");
    let fetcher = |roots| HttpsFetcher {
        roots: Arc::new(roots),
        resolver: dns.resolver(),
        port: https,
    };
    let ours =
        fetcher(tern::relay::tls_auth::roots(Some(&std::fs::read(&ca.pem).unwrap())).unwrap());
    let want = mailcore::dns_records::mta_sts_policy("mx.example.test", "enforce", 604800);
    let mut got = Err(String::new());
    for _ in 0..100 {
        got = ours.fetch("example.test").await;
        if got.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, Ok(want.clone()));
    let other = ours.fetch("unknown.test").await.unwrap_err();
    assert!(other.contains("404"), "{other}");
    // Without the CA, the certificate is not trusted.
    let strict = fetcher(tern::relay::tls_auth::roots(None).unwrap());
    let e = strict.fetch("example.test").await.unwrap_err();
    assert!(e.contains("TLS"), "{e}");

    let out = common::cli_with(
        t.dir.path(),
        &[("TERN_HOSTNAME", "mx.example.test"), env[0], env[1], env[2]],
        &["domain", "dns", "example.test"],
    );
    let id = mailcore::dns_records::mta_sts_id(&want);
    assert!(
        out.contains(&format!(
            "_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id={id}\""
        )),
        "{out}"
    );
    let spki = tern::relay::tls_auth::spki(&chain[0]).unwrap();
    let tlsa = mailcore::dns_records::tlsa_value(spki);
    assert!(
        out.contains(&format!("_25._tcp.mx.example.test. 3600 IN TLSA {tlsa}")),
        "{out}"
    );

    // The relay's TLSA lookup reads the AD bit of its resolver.
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::proto::rr::rdata::TLSA;
    use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(spki).to_vec()
    };
    dns.add(
        "_25._tcp.mx.example.test",
        RData::TLSA(TLSA::new(
            CertUsage::DaneEe,
            Selector::Spki,
            Matching::Sha256,
            digest.clone(),
        )),
    );
    let hd = tern::relay::dns::HickoryDns::new(25, Some(dns.addr().parse().unwrap())).unwrap();
    use tern::relay::dns::Dns;
    let a = hd.tlsa("mx.example.test").await.unwrap();
    assert!(!a.secure);
    assert_eq!(a.records.len(), 1);
    assert_eq!(a.records[0].data, digest);
    assert_eq!(
        (
            a.records[0].usage,
            a.records[0].selector,
            a.records[0].matching
        ),
        (3, 1, 1)
    );
    dns.authentic.store(true, Ordering::SeqCst);
    assert!(hd.tlsa("mx.example.test").await.unwrap().secure);
    let none = hd.tlsa("mx.other.test").await.unwrap();
    assert!(none.records.is_empty());
}

/// REQUIRETLS (RFC 8689) on the way out: only to an MX host that
/// MTA-STS (testing mode counts as enforce) or DANE authenticates, over
/// TLS with a good certificate, and that offers REQUIRETLS, which is
/// passed on in MAIL. What cannot be met by waiting (no way to
/// authenticate the host, no REQUIRETLS offered) fails at once, for the
/// sender to hear; a bad certificate defers. `TLS-Required: No` does not
/// lift it.
#[tokio::test(flavor = "multi_thread")]
async fn requiretls_needs_an_authenticated_host_that_offers_it() {
    let ca = TestCa::new();
    let cert = ca.leaf(&["mx.good.test", "mx.old.test", "mx.soft.test"]);
    let good = FakeMx::start(Behaviour {
        starttls: true,
        requiretls: true,
        cert: Some(cert.clone()),
        ..Default::default()
    })
    .await;
    let old = FakeMx::start(Behaviour {
        starttls: true,
        cert: Some(cert.clone()),
        ..Default::default()
    })
    .await;
    let selfsigned = FakeMx::start(Behaviour {
        starttls: true,
        requiretls: true,
        ..Default::default()
    })
    .await;
    let dns = Arc::new(FakeDns::default());
    let f = Arc::new(MemFetcher::default());
    publish_sts(
        &dns,
        &f,
        "good.test",
        "1",
        sts_policy("enforce", "mx.good.test"),
        good.addr,
    );
    publish_sts(
        &dns,
        &f,
        "old.test",
        "1",
        sts_policy("enforce", "mx.old.test"),
        old.addr,
    );
    publish_sts(
        &dns,
        &f,
        "soft.test",
        "1",
        sts_policy("testing", "*.soft.test"),
        selfsigned.addr,
    );
    dns.point("bare.test", good.addr);
    let relay = sts_relay(&dns, &ca, &f, Arc::new(tern::relay::mta_sts::NoStore));
    let one = |d: &str| vec![format!("x@{d}")];
    let msg = "Subject: secret\r\n\r\nbody\r\n";

    let r = relay_req(&relay, "good.test", &one("good.test"), msg, true).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
    let lines = good.stats.mail_lines.lock().unwrap().clone();
    assert!(lines[0].ends_with(" REQUIRETLS"), "{lines:?}");
    // Without REQUIRETLS, nothing is added.
    let r = relay_req(&relay, "good.test", &one("good.test"), msg, false).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
    assert!(!good.stats.mail_lines.lock().unwrap()[1].contains("REQUIRETLS"));

    let r = relay_req(&relay, "old.test", &one("old.test"), msg, true).await;
    assert_eq!(r.replies[0].code, 550, "{:?}", r.replies);
    assert!(r.replies[0].text.starts_with("5.7.30"), "{:?}", r.replies);
    let r = relay_req(&relay, "bare.test", &one("bare.test"), msg, true).await;
    assert_eq!(r.replies[0].code, 550, "{:?}", r.replies);
    assert!(
        r.replies[0].text.starts_with("5.7.10 REQUIRETLS"),
        "{:?}",
        r.replies
    );
    let r = relay_req(&relay, "soft.test", &one("soft.test"), msg, true).await;
    assert_eq!(
        r.replies[0].code, 451,
        "testing mode is enforced: {:?}",
        r.replies
    );
    let r = relay_req(
        &relay,
        "soft.test",
        &one("soft.test"),
        "TLS-Required: No\r\nSubject: secret\r\n\r\nbody\r\n",
        true,
    )
    .await;
    assert_eq!(r.replies[0].code, 451, "REQUIRETLS wins: {:?}", r.replies);
    assert_eq!(good.accepted().len(), 2);
    assert!(old.accepted().is_empty() && selfsigned.accepted().is_empty());
    // Without REQUIRETLS, the testing-mode domain takes the mail.
    let r = relay_req(&relay, "soft.test", &one("soft.test"), msg, false).await;
    assert_eq!(r.replies[0].code, 250, "{:?}", r.replies);
}

/// What the webmail's Sent folder shows, from the queue and the delivery
/// log: one recipient delivered (with the remote host and its reply), one
/// refused for good (with the reason), one retrying (attempts, last reply,
/// next attempt), one local; a Bcc the header does not name is still
/// listed. Another account asking with the same Message-ID sees nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sent_mail_shows_what_became_of_each_recipient() {
    use mailcore::sent_status::RcptState;
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    let eve = core
        .add_account("eve@local.test", "pw-pw-pw-pw", Role::User)
        .await
        .unwrap()
        .id;
    let mx = FakeMx::start(Behaviour::default()).await;
    mx.set_rcpt(|a| {
        if a.starts_with("gone@") {
            "550 5.1.1 no such user here".into()
        } else {
            "250 2.1.5 ok".into()
        }
    });
    w.dns.point("remote.test", mx.addr);
    w.dns.point("down.test", closed_port());
    let runner = w.runner(&core, qcfg());
    let raw = msg("status1", "Hello.\r\n");
    send(
        &core,
        "alice@local.test",
        &[
            "bob@remote.test",
            "gone@remote.test",
            "x@down.test",
            "hidden@remote.test",
        ],
        &raw,
    )
    .await;
    wait_for("the attempts", 20, async || {
        let left = core.queue().list(&QueueFilter::default()).await.unwrap();
        left.len() == 1 && left[0].attempts >= 1
    })
    .await;
    let me = |id, address: &str| mailcore::AccountRef {
        id,
        address: address.into(),
        role: Role::User,
    };
    let header = [
        "bob@remote.test".to_owned(),
        "gone@remote.test".to_owned(),
        "x@down.test".to_owned(),
        "alice@local.test".to_owned(),
    ];
    let st = core
        .delivery_status(
            &me(alice, "alice@local.test"),
            "status1@local.test",
            &header,
        )
        .await
        .unwrap();
    let of = |r: &str| {
        st.iter()
            .find(|s| s.rcpt == r)
            .unwrap_or_else(|| panic!("{r}: {st:?}"))
            .state
            .clone()
    };
    match of("bob@remote.test") {
        RcptState::Delivered { host, reply, .. } => {
            assert_eq!(host, "mx.remote.test");
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
        }
        o => panic!("{o:?}"),
    }
    match of("gone@remote.test") {
        RcptState::Bounced { reason, .. } => assert!(reason.contains("550 5.1.1"), "{reason}"),
        o => panic!("{o:?}"),
    }
    match of("x@down.test") {
        RcptState::Retrying {
            attempts,
            last_reply,
            next_attempt_at,
        } => {
            assert_eq!(attempts, 1);
            assert!(last_reply.contains("4.4.1"), "{last_reply}");
            assert!(next_attempt_at > T0, "{next_attempt_at}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(of("alice@local.test"), RcptState::Local);
    assert!(matches!(
        of("hidden@remote.test"),
        RcptState::Delivered { .. }
    ));
    assert_eq!(st.len(), 5, "the header's four, then the Bcc: {st:?}");
    assert_eq!(st[4].rcpt, "hidden@remote.test");

    let sums = core
        .sent_summaries(&me(alice, "alice@local.test"), &["status1@local.test"])
        .await
        .unwrap();
    let s = &sums["status1@local.test"];
    assert_eq!((s.delivered, s.pending, s.bounced), (2, 1, 1));
    assert_eq!(s.word(), Some("pending, partly bounced"));

    // Not eve's mail: nothing of it shows.
    let theirs = core
        .delivery_status(
            &me(eve, "eve@local.test"),
            "status1@local.test",
            &header[..1],
        )
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].state, RcptState::Unknown);
    assert!(
        core.sent_summaries(&me(eve, "eve@local.test"), &["status1@local.test"])
            .await
            .unwrap()
            .is_empty()
    );
    runner.stop(Duration::from_secs(5)).await;
}

/// Identities: the account's own address, then the aliases that deliver to
/// it; a name and a signature are kept per address, and only for
/// addresses the account may send as, within their limits.
#[tokio::test(flavor = "multi_thread")]
async fn identities_are_the_addresses_one_may_send_as() {
    let w = World::new();
    let core = w.core().await;
    let alice = directory(&core).await;
    core.add_account("bob@local.test", "pw-pw-pw-pw", Role::User)
        .await
        .unwrap();
    core.add_alias("sales@local.test", &["alice@local.test".to_owned()])
        .await
        .unwrap();
    core.add_alias("info@local.test", &["bob@local.test".to_owned()])
        .await
        .unwrap();
    let me = mailcore::AccountRef {
        id: alice,
        address: "alice@local.test".into(),
        role: Role::User,
    };
    core.set_identity(
        &me,
        "Sales@local.test",
        "Sales\r\nBcc: x@evil.test",
        "Best,\r\nSales",
    )
    .await
    .unwrap();
    let ids = core.identities(&me).await.unwrap();
    let addrs: Vec<&str> = ids.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addrs, ["alice@local.test", "sales@local.test"]);
    assert_eq!(ids[1].name, "Sales  Bcc: x@evil.test", "one line");
    assert_eq!(ids[1].signature, "Best,\nSales");
    assert_eq!(
        ids[1].mailbox(),
        "\"Sales  Bcc: x@evil.test\" <sales@local.test>"
    );
    assert!(matches!(
        core.set_identity(&me, "info@local.test", "Info", "").await,
        Err(mailcore::CoreError::Forbidden)
    ));
    assert!(matches!(
        core.set_identity(&me, "alice@local.test", &"x".repeat(201), "")
            .await,
        Err(mailcore::CoreError::Invalid(_))
    ));
    core.set_identity(&me, "alice@local.test", "Alice", "A.")
        .await
        .unwrap();
    assert_eq!(
        core.identities(&me).await.unwrap()[0].mailbox(),
        "Alice <alice@local.test>"
    );
}

/// `tern trace`: a message deferred twice (`451` from the MX) and then
/// delivered reads as its path, recipient by recipient, by Message-ID or
/// by queue id, from the delivery log of a running `tern serve`.
#[tokio::test(flavor = "multi_thread")]
async fn tern_trace_follows_a_message_deferred_twice_then_delivered() {
    use lettre::AsyncTransport;
    let mx = FakeMx::start(Behaviour::default()).await;
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = tries.clone();
    mx.set_rcpt(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            "451 4.3.0 greylisted, try again".into()
        } else {
            "250 2.1.5 ok".into()
        }
    });
    let route = format!("remote.test=127.0.0.1:{}", mx.addr.port());
    let t = common::start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
        ("TERN_QUEUE__POLL_INTERVAL_MS", "50"),
    ]);
    lettre_client(&t, t.smtps, true)
        .send(lettre_mail(&["far@remote.test"], "traced"))
        .await
        .unwrap();
    let dir = t.dir.path();
    for n in 1..=2 {
        wait_for("a deferral", 30, async || tries.load(Ordering::SeqCst) >= n).await;
        wait_for("the deferral logged", 30, async || {
            common::cli_out(dir, &["queue", "log", "far@remote.test"])
                .matches("deferred")
                .count()
                >= n
        })
        .await;
        common::cli_out(dir, &["queue", "retry", "--domain", "remote.test"]);
    }
    wait_for("the delivery", 30, async || !mx.accepted().is_empty()).await;
    wait_for("the queue to empty", 30, async || t.queue_len().await == 0).await;
    let log = common::cli_out(dir, &["queue", "log", "far@remote.test"]);
    let mid = log
        .split('\t')
        .nth(2)
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let by_mid = common::cli_out(dir, &["trace", &mid]);
    let lines: Vec<&str> = by_mid.lines().collect();
    assert_eq!(lines[0], format!("message <{mid}>"), "{by_mid}");
    assert_eq!(lines[1], "  from <alice@example.test>", "{by_mid}");
    assert_eq!(lines[2], "  to <far@remote.test>", "{by_mid}");
    assert_eq!(lines.len(), 6, "{by_mid}");
    for (line, (n, outcome, reply)) in lines[3..].iter().zip([
        (1, "deferred", "451 4.3.0 greylisted, try again"),
        (2, "deferred", "451 4.3.0 greylisted, try again"),
        (3, "delivered", "250 2.0.0"),
    ]) {
        assert!(
            line.contains(&format!("\tattempt {n}\t{outcome}\tqueue=")),
            "{line}"
        );
        assert!(line.contains("\thost="), "{line}");
        assert!(line.contains(reply), "{line}");
    }
    let qid = lines[3]
        .split("queue=")
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap();
    assert_eq!(
        common::cli_out(dir, &["trace", qid]),
        by_mid,
        "by queue id too"
    );
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["trace", "nothing-like-it@nowhere"])
        .env("TERN_DATA_DIR", dir)
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("nothing in the queue or the delivery log")
    );
}

/// `docs/ops`: the alert rules pass `promtool check rules` and their own
/// `promtool test rules`, the dashboard's queries are valid PromQL (checked
/// by promtool as recording rules), and every series either names is one a
/// running Tern exports after a delivery and a failed login.
#[tokio::test(flavor = "multi_thread")]
async fn ops_rules_and_dashboard_use_series_tern_exports() {
    use lettre::AsyncTransport;
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ops");
    let promtool = |args: &[&str]| {
        let o = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&ops)
            .output()
            .expect("promtool (Debian package `prometheus`; scripts/test.sh installs it)");
        assert!(
            o.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ops.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10);
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("dashboard-rules.yml");
    let mut y = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        y.push_str(&format!(
            "      - record: dashboard:panel{i}\n        expr: {e:?}\n"
        ));
    }
    std::fs::write(&rules, y).unwrap();
    promtool(&["check", "rules", &rules.display().to_string()]);

    // What a running Tern exports, after some work.
    let mx = FakeMx::start(Behaviour::default()).await;
    let route = format!("remote.test=127.0.0.1:{}", mx.addr.port());
    let t = common::start(&[
        ("TERN_RELAY__ENABLED", "true"),
        ("TERN_RELAY__ROUTES", &route),
        ("TERN_WEB__METRICS_TOKEN", "ops-scrape-token"),
    ]);
    lettre_client(&t, t.sub, false)
        .send(lettre_mail(&["far@remote.test"], "for the dashboard"))
        .await
        .unwrap();
    wait_for("the remote copy", 30, async || !mx.accepted().is_empty()).await;
    wait_for("the queue to empty", 10, async || t.queue_len().await == 0).await;
    curl(&[
        "-o",
        "/dev/null",
        "-d",
        "address=alice@example.test&password=wrong-password",
        &format!("http://127.0.0.1:{}/api/login", t.web),
    ]);
    let page = curl(&[
        "-H",
        "Authorization: Bearer ops-scrape-token",
        &format!("http://127.0.0.1:{}/metrics", t.web),
    ]);
    let exported: std::collections::HashSet<String> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    assert!(exported.contains("tern_storage_up"), "{page}");
    assert_eq!(sample(&page, "tern_storage_up"), 1.0);
    assert!(
        sample(&page, "tern_tls_certificate_expiry_timestamp_seconds") > 1.7e9,
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "tern_delivery_attempts_total{domain=\"remote.test\",class=\"2xx\"}"
        ),
        1.0,
        "{page}"
    );
    let named = |text: &str| -> Vec<String> {
        let mut v = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("tern_") {
            let s = i + at;
            let mut e = s;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
                e += 1;
            }
            // Not part of a longer word (a rule or file name).
            if s == 0 || !(b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_' || b[s - 1] == b':')
            {
                v.push(text[s..e].to_owned());
            }
            i = e;
        }
        v
    };
    let alerts = std::fs::read_to_string(ops.join("alerts.yml")).unwrap();
    let mut checked = 0;
    for name in named(&alerts)
        .into_iter()
        .chain(exprs.iter().flat_map(|e| named(e)))
    {
        if name.starts_with("tern_delivery_latency_seconds") {
            // A histogram: its _bucket series.
            assert!(
                exported.contains("tern_delivery_latency_seconds_bucket"),
                "{page}"
            );
        } else {
            assert!(exported.contains(&name), "{name} is not exported:\n{page}");
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
}
