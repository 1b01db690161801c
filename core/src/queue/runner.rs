//! The queue runner: claims due entries lane by lane and hands each group
//! (one message, one destination, up to `max_rcpts_per_transaction`
//! recipients) to a [`Relay`], then commits what happened.
//!
//! Implementation notes (invariants):
//! - Each lane has its own worker budget. Fresh mail always has its
//!   reserved workers, whatever the retry lane holds (DESIGN.md rule 3).
//! - The retry lane is served round-robin over destination domains, so a
//!   dead destination with a huge backlog gets one turn like any other.
//! - A destination never has more attempts in flight on this node than its
//!   adaptive limit ([`super::concurrency`]).
//! - A `4xx`, a `421`, a lost connection or a timeout defers; only a `5xx`
//!   reply or the give-up time fails a recipient (DESIGN.md rule 4).
//! - Never a DSN for a message with a null sender (RFC 5321 §4.5.5).
//! - The runner knows nothing of sockets: the relay behind the trait does
//!   the SMTP, and tests put a relay to local fake MX servers there.

use crate::ids::QueueId;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::concurrency::{ConcurrencyConfig, DestinationLimits};
use super::dsn::{self, DsnInput, DsnKind, DsnRecipient};
use super::schedule::RetrySchedule;
use super::{AttemptInfo, ClaimSpec, Destination, EntryResult, Finish, Lane, Outcome, QueueEntry};
use crate::Core;
use crate::envelope::Envelope;
use crate::error::CoreResult;
use crate::routing::Route;

/// An SMTP reply as the remote side gave it, or as the relay made it up
/// for a failure that produced none (a refused connection: `451 4.4.1 ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            text: text.into(),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// One SMTP transaction to make: one message to some recipients at one
/// destination domain.
#[derive(Clone, Debug)]
pub struct RelayRequest<'a> {
    pub domain: &'a str,
    pub mail_from: &'a str,
    pub rcpts: &'a [String],
    /// The message with every line ending CRLF and a final CRLF (see
    /// [`super::wire_form`]).
    pub message: &'a [u8],
    /// REQUIRETLS (RFC 8689): authenticated TLS to a server that offers
    /// REQUIRETLS, or no delivery.
    pub require_tls: bool,
}

/// What came of a [`RelayRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
    pub tls: bool,
    /// One reply per recipient, in request order: the RCPT reply if it was
    /// refused, else the reply to the end of data.
    pub replies: Vec<Reply>,
    /// The destination pushed back (`421`, refused or failed connections,
    /// TLS failures): slow down.
    pub pushback: bool,
    /// No host of the destination could be reached at all: back off the
    /// whole destination, not just these entries.
    pub unreachable: bool,
}

/// Delivers to a destination. The server implements it with lettre over
/// MX lookups; tests implement the same over local fake MX servers.
#[async_trait::async_trait]
pub trait Relay: Send + Sync + 'static {
    async fn send(&self, req: &RelayRequest<'_>) -> RelayReport;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Our name in DSNs (`Reporting-MTA`, `MAILER-DAEMON@`).
    #[serde(skip)]
    pub hostname: String,
    pub fresh_workers: usize,
    pub retry_workers: usize,
    pub bounce_workers: usize,
    /// How often to look for due entries when nothing wakes the runner.
    pub poll_interval_ms: u64,
    /// How long a claim holds an entry. Longer than any attempt can take
    /// (the relay's own timeouts end every attempt well before).
    pub lease_secs: i64,
    pub max_rcpts_per_transaction: u64,
    pub schedule: RetrySchedule,
    pub concurrency: ConcurrencyConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            hostname: "localhost".into(),
            // Transactions in flight per lane, over all destinations (each
            // destination has its own adaptive limit, 20 at most). Postfix
            // runs up to 100 delivery processes; a worker here is a task.
            fresh_workers: 32,
            retry_workers: 32,
            bounce_workers: 4,
            poll_interval_ms: 1000,
            lease_secs: 900,
            max_rcpts_per_transaction: 100,
            schedule: RetrySchedule::default(),
            concurrency: ConcurrencyConfig::default(),
        }
    }
}

impl QueueConfig {
    fn workers(&self, lane: Lane) -> usize {
        match lane {
            Lane::Fresh => self.fresh_workers,
            Lane::Retry => self.retry_workers,
            Lane::Bounce => self.bounce_workers,
        }
    }
}

struct State {
    limits: DestinationLimits,
    lane_active: [usize; 3],
    /// What this node last wrote to each destination's row, so that a
    /// stream of successful attempts does not rewrite it every time.
    saved: std::collections::HashMap<String, Saved>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Saved {
    limit: i32,
    ceiling: Option<i32>,
    failures: i32,
    at: Instant,
}

fn lane_index(l: Lane) -> usize {
    match l {
        Lane::Fresh => 0,
        Lane::Retry => 1,
        Lane::Bounce => 2,
    }
}

struct Shared {
    core: Core,
    relay: Arc<dyn Relay>,
    cfg: QueueConfig,
    owner: String,
    state: Mutex<State>,
    finisher: Finisher,
}

/// An attempt's result on its way to the finisher, and where its commit's
/// outcome goes back.
type FinishJob = (Finish, tokio::sync::oneshot::Sender<CoreResult<()>>);

/// Group commit for attempt results: workers hand their [`Finish`] to one
/// task, which commits all that are waiting in one transaction
/// ([`Core::queue_finish_batch`]) while the next ones gather. A drain is
/// bound by commits: one per attempt held it near 60 transactions a
/// second on SQLite.
struct Finisher {
    tx: tokio::sync::mpsc::UnboundedSender<FinishJob>,
    rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<FinishJob>>>,
}

/// Most attempts in one finishing commit.
const FINISH_BATCH: usize = 64;

impl Shared {
    /// Commits one attempt's result through the finisher (or directly,
    /// when it is not running).
    async fn finish(&self, f: Finish) -> CoreResult<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.finisher.tx.send((f, tx)) {
            Ok(()) => match rx.await {
                Ok(r) => r,
                Err(_) => Err(crate::error::CoreError::Unavailable(
                    "the queue finisher stopped".into(),
                )),
            },
            Err(e) => self.core.queue_finish(e.0.0).await,
        }
    }
}

async fn finisher(core: Core, mut rx: tokio::sync::mpsc::UnboundedReceiver<FinishJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < FINISH_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let (fs, txs): (Vec<Finish>, Vec<_>) = batch.into_iter().unzip();
        match core.queue_finish_batch(&fs).await {
            Ok(()) => {
                for tx in txs {
                    let _ = tx.send(Ok(()));
                }
            }
            // One by one, so that one attempt that cannot be recorded
            // does not hold back the others.
            Err(_) if fs.len() > 1 => {
                for (f, tx) in fs.into_iter().zip(txs) {
                    let _ = tx.send(core.queue_finish(f).await);
                }
            }
            Err(e) => {
                if let Some(tx) = txs.into_iter().next() {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
}

pub struct QueueRunner {
    shared: Arc<Shared>,
}

/// See [`RunnerHandle::probe`].
#[derive(Clone)]
pub struct RunnerProbe {
    shared: Arc<Shared>,
}

impl RunnerProbe {
    /// SMTP transactions this node has in flight, over all lanes.
    pub fn in_flight(&self) -> i64 {
        self.shared
            .state
            .lock()
            .map(|s| s.lane_active.iter().map(|&n| n as i64).sum())
            .unwrap_or(0)
    }
}

/// A running queue runner. Dropping the handle leaves it running; `stop`
/// ends it cleanly, `abort` kills it mid-flight (as a crash would).
pub struct RunnerHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    shared: Arc<Shared>,
    /// The finisher; ended after the lanes, whose last attempts it records.
    finishing: Option<tokio::task::JoinHandle<()>>,
}

impl RunnerHandle {
    /// Stops claiming, lets attempts in flight finish (up to `grace`), then
    /// returns. Entries not finished by then are picked up again when their
    /// lease runs out.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
        }
        if let Some(f) = self.finishing {
            f.abort();
        }
    }

    /// Kills the runner and its attempts at once, leaving claimed entries
    /// locked until their lease expires.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(f) = &self.finishing {
            f.abort();
        }
    }

    /// This runner's lock-owner name.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// A cheap view of the runner's load for the node's heartbeat.
    pub fn probe(&self) -> RunnerProbe {
        RunnerProbe {
            shared: self.shared.clone(),
        }
    }

    /// Nodes running a queue runner, as this one last counted them.
    pub fn cluster_nodes(&self) -> i32 {
        self.shared
            .state
            .lock()
            .map(|s| s.limits.nodes())
            .unwrap_or(1)
    }

    /// This node's current limit for a destination.
    pub fn concurrency_limit(&self, domain: &str) -> i32 {
        self.shared
            .state
            .lock()
            .map(|mut s| s.limits.state(domain).limit)
            .unwrap_or(0)
    }
}

impl QueueRunner {
    pub fn new(core: Core, relay: Arc<dyn Relay>, cfg: QueueConfig) -> Self {
        let owner = format!(
            "{}:{}:{:08x}",
            cfg.hostname,
            std::process::id(),
            rand::thread_rng().r#gen::<u32>()
        );
        let limits = DestinationLimits::new(cfg.concurrency.clone());
        QueueRunner {
            shared: Arc::new(Shared {
                core,
                relay,
                cfg,
                owner,
                state: Mutex::new(State {
                    limits,
                    lane_active: [0; 3],
                    saved: Default::default(),
                }),
                finisher: {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    Finisher {
                        tx,
                        rx: Mutex::new(Some(rx)),
                    }
                },
            }),
        }
    }

    /// Starts one dispatcher per lane. Each claims only for its own lane
    /// and owns its workers, so a lane that waits (on a slow claim, on the
    /// write lock) never holds up another.
    pub fn start(self) -> RunnerHandle {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks: Vec<_> = Lane::ALL
            .into_iter()
            .map(|lane| tokio::spawn(dispatch(self.shared.clone(), lane, stop_rx.clone())))
            .collect();
        tasks.push(tokio::spawn(watch_cluster(
            self.shared.clone(),
            stop_rx.clone(),
        )));
        let rx = self
            .shared
            .finisher
            .rx
            .lock()
            .ok()
            .and_then(|mut r| r.take());
        let finishing = rx.map(|rx| tokio::spawn(finisher(self.shared.core.clone(), rx)));
        RunnerHandle {
            tasks,
            stop,
            shared: self.shared,
            finishing,
        }
    }
}

/// On PostgreSQL, counts the nodes running a queue runner (from their
/// heartbeats) so each takes its share of every destination's limit, and
/// takes the stricter ceilings other nodes stored. SQLite has one node.
async fn watch_cluster(sh: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if sh.core.backend() != crate::Backend::Postgres {
        return;
    }
    while !*stop.borrow() {
        let now = sh.core.now();
        if let Ok(nodes) = sh.core.cluster_nodes().await {
            let n = nodes
                .iter()
                .filter(|n| n.runs_queue && n.is_up(now))
                .count();
            if let Ok(mut s) = sh.state.lock() {
                s.limits.set_nodes(i32::try_from(n).unwrap_or(i32::MAX));
            }
        }
        if let Ok(dests) = sh.core.queue().destinations().await
            && let Ok(mut s) = sh.state.lock()
        {
            for d in dests {
                if let Some(c) = d.ceiling {
                    s.limits.adopt(&d.domain, d.concurrency, c, now);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CLUSTER_WATCH) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How often a runner recounts the cluster's queue nodes.
const CLUSTER_WATCH: Duration = Duration::from_secs(2);

async fn dispatch(sh: Arc<Shared>, lane: Lane, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut workers = JoinSet::new();
    let mut cursor = String::new();
    let mut wake = sh.core.queue_wakeups();
    let poll = Duration::from_millis(sh.cfg.poll_interval_ms.max(10));
    let mut last_sweep = Instant::now() - poll;
    while !*stop.borrow() {
        let mut db_down = false;
        // The sweep is background tidying: once per poll interval, not on
        // every wake-up (each accepted message wakes the fresh lane).
        if lane == Lane::Fresh && last_sweep.elapsed() >= poll {
            last_sweep = Instant::now();
            if let Err(e) = sh.core.queue_sweep_unreachable().await {
                tracing::warn!(error = %e, "queue sweep failed");
                db_down = true;
            }
        }
        loop {
            let (free, exclude) = match sh.state.lock() {
                Ok(s) => (
                    sh.cfg
                        .workers(lane)
                        .saturating_sub(s.lane_active[lane_index(lane)]),
                    s.limits.saturated(),
                ),
                Err(_) => return,
            };
            if free == 0 {
                break;
            }
            match claim(&sh, lane, &exclude, &mut cursor, free).await {
                Ok(groups) if groups.is_empty() => break,
                Ok(groups) => {
                    for group in groups {
                        let domain = group[0].domain.clone();
                        seed_limits(&sh, &domain).await;
                        if let Ok(mut s) = sh.state.lock() {
                            s.lane_active[lane_index(lane)] += 1;
                            s.limits.acquire(&domain);
                        }
                        let sh2 = sh.clone();
                        workers.spawn(async move {
                            attempt(&sh2, group).await;
                            if let Ok(mut s) = sh2.state.lock() {
                                s.lane_active[lane_index(lane)] -= 1;
                                s.limits.release(&domain);
                            }
                            // A freed connection slot may let another lane
                            // claim for this destination.
                            sh2.core.queue_wake_local();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, lane = lane.as_str(), "queue claim failed");
                    db_down = true;
                    break;
                }
            }
        }
        let wait = if db_down { poll * 2 } else { poll };
        tokio::select! {
            _ = wake.changed() => {}
            Some(_) = workers.join_next(), if !workers.is_empty() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    while workers.join_next().await.is_some() {}
}

/// The next groups to attempt: one for the fresh and bounce lanes (each may
/// be another destination, with limits of its own, and fresh mail is
/// claimed as it comes); for the retry lane's destination of the turn, as
/// many as both the lane (`free` workers) and the destination's limit have
/// room for, in one claim.
async fn claim(
    sh: &Shared,
    lane: Lane,
    exclude: &[String],
    cursor: &mut String,
    free: usize,
) -> CoreResult<Vec<Vec<QueueEntry>>> {
    let mut spec = ClaimSpec {
        lane,
        owner: &sh.owner,
        lease_secs: sh.cfg.lease_secs,
        domain: None,
        exclude,
        max_rcpts: sh.cfg.max_rcpts_per_transaction.max(1),
        retry_requested_at: None,
    };
    if lane != Lane::Retry {
        let group = sh.core.queue_claim(&spec).await?;
        return Ok(if group.is_empty() {
            Vec::new()
        } else {
            vec![group]
        });
    }
    let Some(turn) = sh.core.queue_next_retry_domain(cursor, exclude).await? else {
        return Ok(Vec::new());
    };
    let domain = turn.domain;
    seed_limits(sh, &domain).await;
    let room = match sh.state.lock() {
        Ok(mut s) => s.limits.room(&domain).max(1) as usize,
        Err(_) => 1,
    };
    spec.domain = Some(&domain);
    spec.retry_requested_at = turn.retry_requested_at;
    let groups = sh.core.queue_claim_groups(&spec, free.min(room)).await?;
    *cursor = domain;
    Ok(groups)
}

/// A destination this node has not delivered to since it started may have
/// stored state from before (a ceiling after `421`s): start from it.
async fn seed_limits(sh: &Shared, domain: &str) {
    let known = sh
        .state
        .lock()
        .map(|s| s.limits.known(domain))
        .unwrap_or(true);
    if known {
        return;
    }
    if let Ok(Some(d)) = sh.core.queue().destination(domain).await
        && d.concurrency > 0
        && let Ok(mut s) = sh.state.lock()
    {
        let now = sh.core.now();
        s.limits
            .seed(domain, d.concurrency, d.ceiling.map(|c| (c, now)));
    }
}

async fn attempt(sh: &Shared, group: Vec<QueueEntry>) {
    let started = Instant::now();
    let first = group[0].clone();
    let message = match sh.core.queue_message_bytes(first.blob_id).await {
        Ok(b) => super::wire_form(&b),
        Err(e) => {
            // Without the bytes there is nothing to send; give the entries
            // back so a later pass (or node) tries when storage is back.
            tracing::warn!(error = %e, queue_id = %first.id, "cannot read queued message");
            let ids: Vec<QueueId> = group.iter().map(|e| e.id).collect();
            let _ = sh.core.queue_unclaim(&sh.owner, &ids).await;
            return;
        }
    };
    let rcpts: Vec<String> = group.iter().map(|e| e.rcpt_to.clone()).collect();
    let in_flight = sh
        .state
        .lock()
        .map(|mut s| s.limits.state(&first.domain).active)
        .unwrap_or(1);
    let mut report = sh
        .relay
        .send(&RelayRequest {
            domain: &first.domain,
            mail_from: &first.mail_from,
            rcpts: &rcpts,
            message: &message,
            require_tls: first.require_tls,
        })
        .await;
    // A relay must answer every recipient; one that does not gets a
    // deferral rather than a guess.
    report.replies.resize(
        rcpts.len(),
        Reply::new(451, "4.3.0 no reply recorded for this recipient"),
    );
    let now = sh.core.now();
    let (limit, ceiling) = match sh.state.lock() {
        Ok(mut s) => {
            if report.pushback {
                let too_many = report.replies.iter().any(|r| r.code == 421);
                s.limits.pushback(&first.domain, in_flight, too_many, now);
            } else if report.replies.iter().any(Reply::is_success) {
                s.limits.success(&first.domain, now);
            }
            let st = s.limits.state(&first.domain);
            (st.limit, st.ceiling.map(|(c, _)| c))
        }
        Err(_) => (sh.cfg.concurrency.initial, None),
    };

    let attempt_info = AttemptInfo {
        remote_host: report.remote_host.clone(),
        remote_ip: report.remote_ip.clone(),
        tls: report.tls,
        duration_ms: started.elapsed().as_millis() as i64,
    };
    // The commit is retried while storage is down: an attempt whose result
    // is lost would be made again once the lease expires.
    let mut delay = Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs((sh.cfg.lease_secs / 2).max(1) as u64);
    loop {
        let res = async {
            let finish = prepare_finish(sh, &group, &report, &attempt_info, &message, now).await?;
            sh.finish(finish).await
        }
        .await;
        match res {
            Ok(()) => break,
            Err(e) if e.is_temporary() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "recording a delivery attempt failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                tracing::error!(error = %e, queue_id = %first.id, "could not record a delivery attempt");
                return;
            }
        }
    }

    // The destination's row is what operators read (limit, last reply,
    // next attempt). Write it when something changed, and otherwise at most
    // every few seconds.
    let last = sh
        .state
        .lock()
        .ok()
        .and_then(|s| s.saved.get(&first.domain).copied());
    let failures = if report.unreachable {
        let prev = sh
            .core
            .queue()
            .destination(&first.domain)
            .await
            .ok()
            .flatten();
        prev.map(|d| d.failures).unwrap_or(0) + 1
    } else {
        0
    };
    let due = match last {
        None => true,
        Some(l) => {
            l.limit != limit
                || l.ceiling != ceiling
                || l.failures != failures
                || report.unreachable
                || l.at.elapsed() >= Duration::from_secs(2)
        }
    };
    let dest = Destination {
        domain: first.domain.clone(),
        held: false,
        concurrency: limit,
        ceiling,
        failures,
        last_reply: report.replies.first().map(|r| r.to_string()),
        last_attempt_at: Some(now),
        next_attempt_at: if report.unreachable {
            sh.cfg
                .schedule
                .next_attempt(now, failures, rand::thread_rng().r#gen())
        } else {
            0
        },
        retry_requested_at: None,
    };
    if due {
        match sh.core.save_destination(&dest, false).await {
            Ok(()) => {
                if let Ok(mut s) = sh.state.lock() {
                    s.saved.insert(
                        first.domain.clone(),
                        Saved {
                            limit,
                            ceiling,
                            failures,
                            at: Instant::now(),
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, domain = %first.domain, "could not save destination state")
            }
        }
    }
    if report.unreachable {
        let reason = dest.last_reply.clone().unwrap_or_default();
        match sh
            .core
            .queue_defer_destination(&first.domain, dest.next_attempt_at, &reason)
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(domain = %first.domain, entries = n, "destination unreachable; its fresh mail moves to the retry lane")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not defer an unreachable destination"),
        }
    }
}

/// Decides each entry's outcome and builds the DSNs the sender is owed.
async fn prepare_finish(
    sh: &Shared,
    group: &[QueueEntry],
    report: &RelayReport,
    attempt: &AttemptInfo,
    message: &[u8],
    now: i64,
) -> CoreResult<Finish> {
    let sched = &sh.cfg.schedule;
    // One draw of jitter and one attempt count for the whole group, so the
    // recipients of a message retry together and travel in one transaction
    // again.
    let jitter: f64 = rand::thread_rng().r#gen();
    let attempts = group.iter().map(|e| e.attempts).max().unwrap_or(0) + 1;
    let mut results = Vec::with_capacity(group.len());
    let mut failed = Vec::new();
    let mut delayed = Vec::new();
    let mut delayed_ids = Vec::new();
    for (e, reply) in group.iter().zip(&report.replies) {
        let outcome = if reply.is_success() {
            Outcome::Delivered
        } else if reply.is_permanent() {
            Outcome::Failed
        } else if sched.expired(e.created_at, now) {
            Outcome::Expired
        } else {
            Outcome::Deferred {
                next_at: sched.next_attempt(now, attempts, jitter),
            }
        };
        let remote_mta = report.remote_host.clone();
        match outcome {
            Outcome::Failed => failed.push(DsnRecipient {
                rcpt: e.rcpt_to.clone(),
                diagnostic: reply.to_string(),
                remote_mta,
                status: dsn::status_of(reply.code, &reply.text),
            }),
            Outcome::Expired => failed.push(DsnRecipient {
                rcpt: e.rcpt_to.clone(),
                diagnostic: format!(
                    "gave up after {} attempts over {} hours; last reply: {reply}",
                    e.attempts + 1,
                    (now - e.created_at) / 3600
                ),
                remote_mta,
                status: "4.4.7".into(),
            }),
            Outcome::Deferred { .. }
                if !e.delayed_dsn_sent && sched.delayed_dsn_due(e.created_at, now) =>
            {
                delayed_ids.push(e.id);
                delayed.push(DsnRecipient {
                    rcpt: e.rcpt_to.clone(),
                    diagnostic: reply.to_string(),
                    remote_mta,
                    status: dsn::status_of(reply.code, &reply.text),
                });
            }
            _ => {}
        }
        results.push(EntryResult {
            entry: e.clone(),
            outcome,
            reply: reply.to_string(),
        });
    }

    let sender = &group[0].mail_from;
    let mut dsns = Vec::new();
    let mut delay_notice_sent = false;
    // RFC 5321 §4.5.5: a message with a null reverse-path gets no DSN.
    if !sender.is_empty() && (!failed.is_empty() || !delayed.is_empty()) {
        if let Some(env) = dsn_envelope(&sh.core, sender).await? {
            let created = group.iter().map(|e| e.created_at).min().unwrap_or(now);
            for (kind, rcpts) in [(DsnKind::Failed, &failed), (DsnKind::Delayed, &delayed)] {
                if rcpts.is_empty() {
                    continue;
                }
                let raw = dsn::build(&DsnInput {
                    kind,
                    reporting_mta: &sh.cfg.hostname,
                    sender,
                    arrival_date: created,
                    now,
                    retry_until: Some(created + sched.give_up_after_secs),
                    recipients: rcpts,
                    original: message,
                });
                dsns.push((env.clone(), raw));
                delay_notice_sent |= kind == DsnKind::Delayed;
            }
        } else {
            tracing::warn!(sender = %sender, "no route back to the sender; DSN dropped");
        }
    }
    // Without a DSN to carry it, the delay notice was not sent.
    if !delay_notice_sent {
        delayed_ids.clear();
    }
    Ok(Finish {
        owner: sh.owner.clone(),
        attempt: attempt.clone(),
        results,
        dsns,
        delayed_reported: delayed_ids,
    })
}

/// Where a DSN to `sender` goes: local accounts directly, anyone else
/// through the queue's bounce lane.
pub(crate) async fn dsn_envelope(core: &Core, sender: &str) -> CoreResult<Option<Envelope>> {
    let mut env = Envelope {
        require_tls: false,
        mail_from: String::new(),
        ..Default::default()
    };
    match core.route(sender).await? {
        Route::Remote(addr) => env.remote.push(addr),
        // A local domain's unknown or disabled sender: nobody to tell.
        Route::Rejected(_) => return Ok(None),
        route => {
            env.add_local_route(sender, &route);
        }
    }
    if env.local.is_empty() && env.remote.is_empty() {
        return Ok(None);
    }
    Ok(Some(env))
}
