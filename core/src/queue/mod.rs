//! The durable outbound queue.
//!
//! One row per (message, remote recipient). A row is claimed by a worker
//! under a lease (`lock_owner`, `lease_until`), so that N workers on N nodes
//! sharing one database never hold the same row at once, and a row whose
//! worker died becomes claimable again when its lease runs out.
//!
//! - On PostgreSQL the claim is `UPDATE .. WHERE id IN (SELECT .. FOR UPDATE
//!   SKIP LOCKED) RETURNING ..`: concurrent claimers skip each other's rows
//!   instead of queueing behind them.
//! - On SQLite the same statement without the lock clause is atomic, because
//!   SQLite runs one writer at a time and evaluates the subquery inside the
//!   writer's transaction.
//!
//! Rows live in one of three lanes (DESIGN.md rule 3): `fresh` (never tried),
//! `retry` (deferred at least once) and `bounce` (DSNs, whose sender is
//! null). Each lane has its own workers in [`runner`], so a backlog in one
//! lane cannot hold up another.
//!
//! A finished row (delivered, failed, expired, deleted) is removed in the
//! same transaction that writes its delivery-log row and, when the sender is
//! owed one, stores the DSN. Nothing is lost between "retired" and
//! "bounced".

pub mod concurrency;
pub mod dsn;
pub mod runner;
pub mod schedule;

use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set,
};

use crate::db::Backend;
use crate::entities::{delivery_log, queue_destination, queue_entry};
use crate::envelope::Envelope;
use crate::error::{CoreError, CoreResult};
use crate::{Core, Priority};

pub use self::concurrency::{ConcurrencyConfig, DestinationLimits};
pub use self::runner::{
    QueueConfig, QueueRunner, Relay, RelayReport, RelayRequest, Reply, RunnerHandle,
};
pub use self::schedule::RetrySchedule;

/// An enum kept as text in a column: `as_str` is the stored form, `parse`
/// reads it back (None for text no version wrote), `Display` shows it.
macro_rules! stored_as_text {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vm])* $v),+
        }

        impl $name {
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|x| x.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_as_text! {
    /// Which workers take an entry (DESIGN.md rule 3).
    Lane {
        /// Never tried.
        Fresh => "fresh",
        /// Deferred at least once.
        Retry => "retry",
        /// A DSN (null sender).
        Bounce => "bounce",
    }
}

stored_as_text! {
    /// Whether the runner may claim an entry.
    QueueStatus {
        Queued => "queued",
        /// Held by an operator until released.
        Held => "held",
    }
}

stored_as_text! {
    /// What a delivery-log row records of one recipient in one attempt.
    LogOutcome {
        Delivered => "delivered",
        Deferred => "deferred",
        Failed => "failed",
        Expired => "expired",
        /// Removed by an operator.
        Deleted => "deleted",
    }
}

/// One queue row as the runner, the CLI and the admin pages see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: i32,
    pub blob_id: i32,
    pub message_id: String,
    pub mail_from: String,
    pub rcpt_to: String,
    pub domain: String,
    pub lane: Lane,
    pub status: QueueStatus,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub lock_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub delayed_dsn_sent: bool,
}

impl From<queue_entry::Model> for QueueEntry {
    fn from(m: queue_entry::Model) -> Self {
        QueueEntry {
            id: m.id,
            blob_id: m.blob_id,
            message_id: m.message_id,
            mail_from: m.mail_from,
            rcpt_to: m.rcpt_to,
            domain: m.domain,
            // Text no version wrote: the retry lane, queued (the runner
            // tries it, the operator sees it).
            lane: Lane::parse(&m.lane).unwrap_or(Lane::Retry),
            status: QueueStatus::parse(&m.status).unwrap_or(QueueStatus::Queued),
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_attempt_at: m.last_attempt_at,
            last_error: m.last_error,
            created_at: m.created_at,
            lock_owner: m.lock_owner,
            lease_until: m.lease_until,
            delayed_dsn_sent: m.delayed_dsn_sent,
        }
    }
}

/// What an operator command acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Entry(i32),
    Domain(String),
}

#[derive(Clone, Debug, Default)]
pub struct QueueFilter {
    pub domain: Option<String>,
    pub lane: Option<Lane>,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub total: u64,
    pub held: u64,
    /// Entries per lane, in [`Lane::ALL`] order.
    pub by_lane: Vec<(String, u64)>,
    /// Entries per destination domain, largest first.
    pub by_domain: Vec<(String, u64)>,
    /// `created_at` of the oldest entry.
    pub oldest_created_at: Option<i64>,
}

/// Per-destination state as the last attempt left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub domain: String,
    pub held: bool,
    /// Current connection limit (adaptive, see [`concurrency`]).
    pub concurrency: i32,
    /// The level at which the destination last pushed back, if recently.
    pub ceiling: Option<i32>,
    /// Consecutive attempts on which no host could be reached.
    pub failures: i32,
    pub last_reply: Option<String>,
    pub last_attempt_at: Option<i64>,
    /// While in the future, the whole destination is skipped (it was
    /// unreachable); entries keep their own schedule as well.
    pub next_attempt_at: i64,
}

impl From<queue_destination::Model> for Destination {
    fn from(m: queue_destination::Model) -> Self {
        Destination {
            domain: m.domain,
            held: m.held,
            concurrency: m.concurrency,
            ceiling: m.ceiling,
            failures: m.failures,
            last_reply: m.last_reply,
            last_attempt_at: m.last_attempt_at,
            next_attempt_at: m.next_attempt_at,
        }
    }
}

/// One row of the delivery log: one recipient in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i32,
    pub queue_id: i32,
    pub message_id: String,
    pub mail_from: String,
    pub rcpt_to: String,
    pub domain: String,
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
    pub tls: bool,
    pub outcome: LogOutcome,
    pub reply: String,
    pub duration_ms: i64,
    pub created_at: i64,
}

impl From<delivery_log::Model> for LogEntry {
    fn from(m: delivery_log::Model) -> Self {
        LogEntry {
            id: m.id,
            queue_id: m.queue_id,
            message_id: m.message_id,
            mail_from: m.mail_from,
            rcpt_to: m.rcpt_to,
            domain: m.domain,
            remote_host: m.remote_host,
            remote_ip: m.remote_ip,
            tls: m.tls,
            outcome: LogOutcome::parse(&m.outcome).unwrap_or(LogOutcome::Deferred),
            reply: m.reply,
            duration_ms: m.duration_ms,
            created_at: m.created_at,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Matches anywhere in the message-id, sender or recipient.
    pub text: Option<String>,
    pub queue_id: Option<i32>,
    pub limit: u64,
}

/// What became of one entry in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at `next_at` (in the retry lane, or the bounce lane for DSNs).
    Deferred {
        next_at: i64,
    },
    /// A permanent (5xx) reply.
    Failed,
    /// Retried until the schedule gave up (RFC 5321 §4.5.4.1).
    Expired,
}

impl Outcome {
    pub fn logged(&self) -> LogOutcome {
        match self {
            Outcome::Delivered => LogOutcome::Delivered,
            Outcome::Deferred { .. } => LogOutcome::Deferred,
            Outcome::Failed => LogOutcome::Failed,
            Outcome::Expired => LogOutcome::Expired,
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.logged().as_str()
    }
}

#[derive(Clone, Debug)]
pub struct EntryResult {
    pub entry: QueueEntry,
    pub outcome: Outcome,
    pub reply: String,
}

/// Where and how an attempt went, for the delivery log.
#[derive(Clone, Debug, Default)]
pub struct AttemptInfo {
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
    pub tls: bool,
    pub duration_ms: i64,
}

/// Everything one attempt commits at once.
#[derive(Clone, Debug)]
pub struct Finish {
    pub owner: String,
    pub attempt: AttemptInfo,
    pub results: Vec<EntryResult>,
    /// Bounces (failure or delay reports) to store in the same commit.
    pub dsns: Vec<(Envelope, Vec<u8>)>,
    /// Entries whose "delayed" DSN is among `dsns`.
    pub delayed_reported: Vec<i32>,
}

/// The form in which a message goes on the wire: every bare CR or LF
/// becomes CRLF, and it ends with CRLF.
///
/// This is also the defence against SMTP smuggling through lettre 0.11.23
/// (RUSTSEC-2026-0561): its dot-stuffing only recognises a line start after
/// CRLF, so a bare LF followed by `.` could end the data early at a lenient
/// receiver. With only CRLF line endings every line start is stuffed.
pub fn wire_form(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Fresh mail is urgent; the retry and bounce lanes are background work.
fn priority(lane: Lane) -> Priority {
    match lane {
        Lane::Fresh => Priority::Urgent,
        Lane::Retry | Lane::Bounce => Priority::Bulk,
    }
}

fn claimable(now: i64) -> Condition {
    Condition::all()
        .add(queue_entry::Column::Status.eq(QueueStatus::Queued.as_str()))
        .add(queue_entry::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(queue_entry::Column::LeaseUntil.is_null())
                .add(queue_entry::Column::LeaseUntil.lte(now)),
        )
}

/// Domains the runner must skip: held by an operator, or unreachable until
/// a time still in the future.
fn blocked_domains(now: i64) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(queue_destination::Column::Domain)
        .from(queue_destination::Entity)
        .cond_where(
            Condition::any()
                .add(queue_destination::Column::Held.eq(true))
                .add(queue_destination::Column::NextAttemptAt.gt(now)),
        )
        .to_owned()
}

/// A claim request: the lane, optionally one domain (the retry lane's
/// round-robin picks it), and domains the runner has no room for.
#[derive(Clone, Debug)]
pub struct ClaimSpec<'a> {
    pub lane: Lane,
    pub owner: &'a str,
    pub lease_secs: i64,
    pub domain: Option<&'a str>,
    pub exclude: &'a [String],
    /// Most recipients to put in one SMTP transaction.
    pub max_rcpts: u64,
}

impl Core {
    /// Claims the oldest claimable entry of a lane together with its
    /// siblings (same message, sender and destination), so that one SMTP
    /// transaction carries all of a message's recipients at one domain.
    /// Returns an empty list when nothing is due.
    pub async fn queue_claim(&self, spec: &ClaimSpec<'_>) -> CoreResult<Vec<QueueEntry>> {
        let now = self.now();
        let mut head = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Id)
            .filter(claimable(now))
            .filter(queue_entry::Column::Lane.eq(spec.lane.as_str()))
            .filter(queue_entry::Column::Domain.is_not_in(spec.exclude.iter().cloned()))
            .filter(queue_entry::Column::Domain.not_in_subquery(blocked_domains(now)));
        if let Some(d) = spec.domain {
            head = head.filter(queue_entry::Column::Domain.eq(d));
        }
        // Due order. The lane indexes give it without a sort, however long
        // the backlog.
        let head = head
            .order_by_asc(queue_entry::Column::NextAttemptAt)
            .limit(1);
        // Look before taking the write lock: most passes over an idle lane
        // find nothing, and they must not queue behind busy writers.
        let any: Option<i32> = head.clone().into_tuple().one(self.db()).await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let first = self.claim_ids(head, spec, now).await?;
        let Some(first) = first.into_iter().next() else {
            return Ok(Vec::new());
        };
        let siblings = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Id)
            .filter(claimable(now))
            .filter(queue_entry::Column::Lane.eq(spec.lane.as_str()))
            .filter(queue_entry::Column::BlobId.eq(first.blob_id))
            .filter(queue_entry::Column::MailFrom.eq(first.mail_from.clone()))
            .filter(queue_entry::Column::Domain.eq(first.domain.clone()))
            .order_by_asc(queue_entry::Column::Id)
            .limit(spec.max_rcpts.saturating_sub(1));
        let mut group = vec![first];
        if spec.max_rcpts > 1 {
            group.extend(self.claim_ids(siblings, spec, now).await?);
        }
        group.sort_by_key(|e| e.id);
        Ok(group)
    }

    async fn claim_ids(
        &self,
        select: sea_orm::Select<queue_entry::Entity>,
        spec: &ClaimSpec<'_>,
        now: i64,
    ) -> CoreResult<Vec<QueueEntry>> {
        let mut select = select;
        if self.backend() == Backend::Postgres {
            // Concurrent claimers skip rows another transaction is taking
            // instead of waiting for it and then finding them gone.
            select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let _w = self.sqlite_write_turn(priority(spec.lane)).await;
        let rows = queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LockOwner, Expr::value(spec.owner))
            .col_expr(
                queue_entry::Column::LeaseUntil,
                Expr::value(now + spec.lease_secs),
            )
            .filter(queue_entry::Column::Id.in_subquery(select.into_query()))
            .exec_with_returning(self.wdb())
            .await?;
        Ok(rows.into_iter().map(QueueEntry::from).collect())
    }

    /// The next domain after `after` (in name order) with claimable retry
    /// entries; wraps around. This is the retry lane's round-robin: one
    /// dead destination with 100,000 entries gets one turn like any other.
    pub async fn queue_next_retry_domain(
        &self,
        after: &str,
        exclude: &[String],
    ) -> CoreResult<Option<String>> {
        let now = self.now();
        let blocked: std::collections::HashSet<String> = queue_destination::Entity::find()
            .select_only()
            .column(queue_destination::Column::Domain)
            .filter(
                Condition::any()
                    .add(queue_destination::Column::Held.eq(true))
                    .add(queue_destination::Column::NextAttemptAt.gt(now)),
            )
            .into_tuple::<String>()
            .all(self.db())
            .await?
            .into_iter()
            .collect();
        // Step from domain to domain along the index (one seek each), so a
        // domain with 100,000 entries costs no more than one with one.
        let mut cursor = after.to_owned();
        let mut wrapped = after.is_empty();
        loop {
            let next: Option<String> = queue_entry::Entity::find()
                .select_only()
                .column(queue_entry::Column::Domain)
                .filter(queue_entry::Column::Status.eq(QueueStatus::Queued.as_str()))
                .filter(queue_entry::Column::Lane.eq(Lane::Retry.as_str()))
                .filter(queue_entry::Column::Domain.gt(cursor.as_str()))
                .order_by_asc(queue_entry::Column::Domain)
                .limit(1)
                .into_tuple()
                .one(self.db())
                .await?;
            let d = match next {
                None if wrapped => return Ok(None),
                None => {
                    wrapped = true;
                    cursor.clear();
                    continue;
                }
                Some(d) => d,
            };
            if wrapped && !after.is_empty() && d.as_str() > after {
                return Ok(None);
            }
            if !blocked.contains(&d) && !exclude.contains(&d) {
                let due: Option<i32> = queue_entry::Entity::find()
                    .select_only()
                    .column(queue_entry::Column::Id)
                    .filter(claimable(now))
                    .filter(queue_entry::Column::Lane.eq(Lane::Retry.as_str()))
                    .filter(queue_entry::Column::Domain.eq(d.as_str()))
                    .order_by_asc(queue_entry::Column::NextAttemptAt)
                    .limit(1)
                    .into_tuple()
                    .one(self.db())
                    .await?;
                if due.is_some() {
                    return Ok(Some(d));
                }
            }
            if wrapped && d.as_str() == after {
                return Ok(None);
            }
            cursor = d;
        }
    }

    /// The stored bytes of a queued message.
    pub async fn queue_message_bytes(&self, blob_id: i32) -> CoreResult<Vec<u8>> {
        use crate::entities::blob;
        let b = blob::Entity::find_by_id(blob_id)
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("blob {blob_id}")))?;
        Ok(b.bytes)
    }

    /// Commits the result of one attempt: retires or reschedules each entry
    /// (only while this worker still holds its lease), writes the delivery
    /// log and stores any DSN, all in one transaction.
    pub async fn queue_finish(&self, f: Finish) -> CoreResult<()> {
        let now = self.now();
        let lane = f.results.first().map_or(Lane::Fresh, |r| r.entry.lane);
        let txn = self.write_txn_at(priority(lane)).await?;
        // Which entries are still ours? Written as an UPDATE .. RETURNING so
        // that the transaction's first statement is a write (no SQLite lock
        // upgrade later). An entry whose lease ran out and that another
        // worker took is left to that worker; our attempt is still logged.
        let ids: Vec<i32> = f.results.iter().map(|r| r.entry.id).collect();
        let owned: std::collections::HashSet<i32> = queue_entry::Entity::update_many()
            .col_expr(
                queue_entry::Column::LeaseUntil,
                Expr::col(queue_entry::Column::LeaseUntil).into(),
            )
            .filter(queue_entry::Column::Id.is_in(ids))
            .filter(queue_entry::Column::LockOwner.eq(f.owner.clone()))
            .exec_with_returning(&txn)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let mut receipts = Vec::new();
        for (env, raw) in &f.dsns {
            receipts.push(self.deliver_in(&txn, env, raw).await?);
        }

        // One statement per kind of change, not per entry: a transaction
        // to 100 recipients must not hold the write lock for 200 statements.
        let mut retired = Vec::new();
        let mut released = Vec::new();
        let mut deferred: std::collections::BTreeMap<(i64, &str, &str, bool), Vec<i32>> =
            Default::default();
        for r in &f.results {
            if !owned.contains(&r.entry.id) {
                tracing::warn!(
                    queue_id = r.entry.id,
                    "lease lost before the attempt was recorded"
                );
                continue;
            }
            match &r.outcome {
                Outcome::Delivered | Outcome::Failed | Outcome::Expired => {
                    retired.push(r.entry.id);
                    released.push(r.entry.blob_id);
                }
                Outcome::Deferred { next_at } => {
                    let lane = if r.entry.lane == Lane::Bounce {
                        Lane::Bounce
                    } else {
                        Lane::Retry
                    };
                    let delayed = f.delayed_reported.contains(&r.entry.id);
                    deferred
                        .entry((*next_at, lane.as_str(), r.reply.as_str(), delayed))
                        .or_default()
                        .push(r.entry.id);
                }
            }
        }
        if !retired.is_empty() {
            queue_entry::Entity::delete_many()
                .filter(queue_entry::Column::Id.is_in(retired))
                .exec(&txn)
                .await?;
        }
        for ((next_at, lane, reply, delayed), ids) in deferred {
            let mut upd = queue_entry::Entity::update_many()
                .col_expr(queue_entry::Column::Lane, Expr::value(lane))
                .col_expr(
                    queue_entry::Column::Attempts,
                    Expr::col(queue_entry::Column::Attempts).add(1),
                )
                .col_expr(queue_entry::Column::NextAttemptAt, Expr::value(next_at))
                .col_expr(queue_entry::Column::LastAttemptAt, Expr::value(now))
                .col_expr(
                    queue_entry::Column::LastError,
                    Expr::value(Some(reply.to_owned())),
                )
                .col_expr(queue_entry::Column::LockOwner, Expr::value(None::<String>))
                .col_expr(queue_entry::Column::LeaseUntil, Expr::value(None::<i64>));
            if delayed {
                upd = upd.col_expr(queue_entry::Column::DelayedDsnSent, Expr::value(true));
            }
            upd.filter(queue_entry::Column::Id.is_in(ids))
                .exec(&txn)
                .await?;
        }
        let rows: Vec<delivery_log::ActiveModel> = f
            .results
            .iter()
            .map(|r| log_row(&r.entry, &f.attempt, r.outcome.logged(), &r.reply, now))
            .collect();
        insert_logs(&txn, rows).await?;
        crate::blobs::release_blobs(&txn, &released).await?;
        txn.commit().await?;
        for r in &receipts {
            self.announce(r);
        }
        for r in &f.results {
            tracing::info!(
                queue_id = r.entry.id,
                message_id = %r.entry.message_id,
                rcpt = %r.entry.rcpt_to,
                host = f.attempt.remote_host.as_deref().unwrap_or("-"),
                tls = f.attempt.tls,
                outcome = r.outcome.as_str(),
                reply = %r.reply,
                ms = f.attempt.duration_ms,
                "delivery attempt"
            );
            // Metrics (a facade: a no-op unless the server installs a
            // recorder). "failed" and "expired" both end in a bounce.
            let outcome = match r.outcome {
                Outcome::Delivered => "delivered",
                Outcome::Deferred { .. } => "deferred",
                Outcome::Failed | Outcome::Expired => "bounced",
            };
            metrics::counter!("tern_messages_total", "event" => outcome).increment(1);
            if matches!(r.outcome, Outcome::Delivered) {
                metrics::histogram!("tern_delivery_latency_seconds")
                    .record((now - r.entry.created_at).max(0) as f64);
            }
        }
        Ok(())
    }

    /// Moves fresh entries of destinations that are known unreachable to
    /// the retry lane. Mail queued while another node was finding out (on
    /// PostgreSQL a delivery can commit just after the destination was
    /// deferred) would otherwise wait in the fresh lane, blocked, looking
    /// as if it had never been tried.
    pub async fn queue_sweep_unreachable(&self) -> CoreResult<u64> {
        let now = self.now();
        let dead: Vec<(String, i64, Option<String>)> = queue_destination::Entity::find()
            .select_only()
            .column(queue_destination::Column::Domain)
            .column(queue_destination::Column::NextAttemptAt)
            .column(queue_destination::Column::LastReply)
            .filter(queue_destination::Column::NextAttemptAt.gt(now))
            .into_tuple()
            .all(self.db())
            .await?;
        let mut moved = 0;
        for (domain, next_at, why) in dead {
            let waiting: Option<i32> = queue_entry::Entity::find()
                .select_only()
                .column(queue_entry::Column::Id)
                .filter(claimable(now))
                .filter(queue_entry::Column::Lane.eq(Lane::Fresh.as_str()))
                .filter(queue_entry::Column::Domain.eq(domain.as_str()))
                .limit(1)
                .into_tuple()
                .one(self.db())
                .await?;
            if waiting.is_some() {
                moved += self
                    .queue_defer_destination(&domain, next_at, why.as_deref().unwrap_or(""))
                    .await?;
            }
        }
        Ok(moved)
    }

    /// A destination turned out unreachable: its waiting fresh entries move
    /// to the retry lane now, with the reason, instead of each taking a
    /// fresh worker to find out the same thing. Retry entries need no
    /// change: the destination's own back-off already blocks them.
    pub async fn queue_defer_destination(
        &self,
        domain: &str,
        next_at: i64,
        reason: &str,
    ) -> CoreResult<u64> {
        let now = self.now();
        let _w = self.sqlite_write_turn(Priority::Bulk).await;
        Ok(queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::Lane, Expr::value(Lane::Retry.as_str()))
            .col_expr(queue_entry::Column::NextAttemptAt, Expr::value(next_at))
            .col_expr(
                queue_entry::Column::LastError,
                Expr::value(Some(reason.to_owned())),
            )
            .filter(claimable(now))
            .filter(queue_entry::Column::Lane.eq(Lane::Fresh.as_str()))
            .filter(queue_entry::Column::Domain.eq(domain))
            .exec(self.wdb())
            .await?
            .rows_affected)
    }

    /// Gives back entries a worker claimed but did not attempt (shutdown).
    pub async fn queue_unclaim(&self, owner: &str, ids: &[i32]) -> CoreResult<()> {
        queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LockOwner, Expr::value(None::<String>))
            .col_expr(queue_entry::Column::LeaseUntil, Expr::value(None::<i64>))
            .filter(queue_entry::Column::Id.is_in(ids.iter().copied()))
            .filter(queue_entry::Column::LockOwner.eq(owner))
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    pub async fn queue_entry(&self, id: i32) -> CoreResult<Option<QueueEntry>> {
        Ok(queue_entry::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(QueueEntry::from))
    }

    /// Entries, oldest first.
    pub async fn queue_list(&self, f: &QueueFilter) -> CoreResult<Vec<QueueEntry>> {
        let mut q = queue_entry::Entity::find();
        if let Some(d) = &f.domain {
            q = q.filter(queue_entry::Column::Domain.eq(d.to_ascii_lowercase()));
        }
        if let Some(l) = f.lane {
            q = q.filter(queue_entry::Column::Lane.eq(l.as_str()));
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        Ok(q.order_by_asc(queue_entry::Column::CreatedAt)
            .order_by_asc(queue_entry::Column::Id)
            .offset(f.offset)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(QueueEntry::from)
            .collect())
    }

    /// Counts by lane and destination and the oldest entry's age: the
    /// numbers an operator needs first ("how many, where, since when").
    pub async fn queue_stats(&self) -> CoreResult<QueueStats> {
        let db = self.db();
        let total = queue_entry::Entity::find().count(db).await?;
        let held = queue_entry::Entity::find()
            .filter(queue_entry::Column::Status.eq(QueueStatus::Held.as_str()))
            .count(db)
            .await?;
        let mut by_lane = Vec::new();
        for lane in Lane::ALL {
            let n = queue_entry::Entity::find()
                .filter(queue_entry::Column::Lane.eq(lane.as_str()))
                .count(db)
                .await?;
            by_lane.push((lane.as_str().to_owned(), n));
        }
        let mut by_domain: Vec<(String, i64)> = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Domain)
            .column_as(queue_entry::Column::Id.count(), "n")
            .group_by(queue_entry::Column::Domain)
            .into_tuple()
            .all(db)
            .await?;
        by_domain.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let oldest_created_at: Option<i64> = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::CreatedAt)
            .order_by_asc(queue_entry::Column::CreatedAt)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        Ok(QueueStats {
            total,
            held,
            by_lane,
            by_domain: by_domain
                .into_iter()
                .map(|(d, n)| (d, n.max(0) as u64))
                .collect(),
            oldest_created_at,
        })
    }

    /// Makes entries due now. For a domain this also forgets that it was
    /// unreachable, so the runner tries it at once.
    pub async fn queue_retry(&self, t: &Target) -> CoreResult<u64> {
        let now = self.now();
        let txn = self.write_txn_at(Priority::Urgent).await?;
        let n = queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::NextAttemptAt, Expr::value(now))
            .filter(target_cond(t))
            .exec(&txn)
            .await?
            .rows_affected;
        if let Target::Domain(d) = t {
            queue_destination::Entity::update_many()
                .col_expr(queue_destination::Column::NextAttemptAt, Expr::value(0i64))
                .col_expr(queue_destination::Column::Failures, Expr::value(0))
                .filter(queue_destination::Column::Domain.eq(d.to_ascii_lowercase()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        self.queue_wake();
        Ok(n)
    }

    /// Holds entries: the runner leaves them alone until released. Holding
    /// a domain also holds mail queued for it later.
    pub async fn queue_hold(&self, t: &Target) -> CoreResult<u64> {
        match t {
            Target::Entry(_) => self.set_status(t, QueueStatus::Held.as_str()).await,
            Target::Domain(d) => {
                self.set_destination_held(d, true).await?;
                self.count_target(t).await
            }
        }
    }

    pub async fn queue_release(&self, t: &Target) -> CoreResult<u64> {
        let n = match t {
            Target::Entry(_) => self.set_status(t, QueueStatus::Queued.as_str()).await?,
            Target::Domain(d) => {
                self.set_destination_held(d, false).await?;
                // Entries held one by one stay held: releasing the domain
                // undoes the domain hold only.
                self.count_target(t).await?
            }
        };
        self.queue_wake();
        Ok(n)
    }

    /// Deletes entries without a DSN (an operator's decision), logging each.
    pub async fn queue_delete(&self, t: &Target) -> CoreResult<u64> {
        let now = self.now();
        let txn = self.write_txn_at(Priority::Urgent).await?;
        // The first statement writes (a no-op update that returns the rows),
        // so SQLite takes the write lock at once. Reading first and writing
        // later fails with SQLITE_BUSY_SNAPSHOT when another process (tern
        // serve, for a CLI delete) commits in between.
        let rows = queue_entry::Entity::update_many()
            .col_expr(
                queue_entry::Column::Attempts,
                Expr::col(queue_entry::Column::Attempts).into(),
            )
            .filter(target_cond(t))
            .exec_with_returning(&txn)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
        let blobs: Vec<i32> = rows.iter().map(|r| r.blob_id).collect();
        queue_entry::Entity::delete_many()
            .filter(queue_entry::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        let logs = rows
            .into_iter()
            .map(|r| {
                log_row(
                    &QueueEntry::from(r),
                    &AttemptInfo::default(),
                    LogOutcome::Deleted,
                    "deleted by an operator",
                    now,
                )
            })
            .collect();
        insert_logs(&txn, logs).await?;
        crate::blobs::release_blobs(&txn, &blobs).await?;
        txn.commit().await?;
        Ok(blobs.len() as u64)
    }

    async fn set_status(&self, t: &Target, status: &str) -> CoreResult<u64> {
        Ok(queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::Status, Expr::value(status))
            .filter(target_cond(t))
            .exec(self.wdb())
            .await?
            .rows_affected)
    }

    async fn count_target(&self, t: &Target) -> CoreResult<u64> {
        Ok(queue_entry::Entity::find()
            .filter(target_cond(t))
            .count(self.db())
            .await?)
    }

    async fn set_destination_held(&self, domain: &str, held: bool) -> CoreResult<()> {
        let mut d = self
            .queue_destination(domain)
            .await?
            .unwrap_or_else(|| Destination::new(&domain.to_ascii_lowercase(), 0));
        d.held = held;
        self.queue_save_destination(&d).await
    }

    pub async fn queue_destination(&self, domain: &str) -> CoreResult<Option<Destination>> {
        Ok(
            queue_destination::Entity::find_by_id(domain.to_ascii_lowercase())
                .one(self.db())
                .await?
                .map(Destination::from),
        )
    }

    /// Destinations that have state: every domain tried or held.
    pub async fn queue_destinations(&self) -> CoreResult<Vec<Destination>> {
        Ok(queue_destination::Entity::find()
            .order_by_asc(queue_destination::Column::Domain)
            .all(self.db())
            .await?
            .into_iter()
            .map(Destination::from)
            .collect())
    }

    /// Upserts a destination's state. The hold flag is an operator's and
    /// is written only by hold/release; the runner's writes leave it be.
    pub async fn queue_save_destination(&self, d: &Destination) -> CoreResult<()> {
        self.save_destination(d, true).await
    }

    pub(crate) async fn save_destination(
        &self,
        d: &Destination,
        with_hold: bool,
    ) -> CoreResult<()> {
        use sea_orm::sea_query::OnConflict;
        let mut cols = vec![
            queue_destination::Column::Concurrency,
            queue_destination::Column::Ceiling,
            queue_destination::Column::Failures,
            queue_destination::Column::LastReply,
            queue_destination::Column::LastAttemptAt,
            queue_destination::Column::NextAttemptAt,
            queue_destination::Column::UpdatedAt,
        ];
        if with_hold {
            cols.push(queue_destination::Column::Held);
        }
        let _w = self.sqlite_write_turn(Priority::Bulk).await;
        queue_destination::Entity::insert(queue_destination::ActiveModel {
            domain: Set(d.domain.to_ascii_lowercase()),
            held: Set(d.held),
            concurrency: Set(d.concurrency),
            ceiling: Set(d.ceiling),
            failures: Set(d.failures),
            last_reply: Set(d.last_reply.clone()),
            last_attempt_at: Set(d.last_attempt_at),
            next_attempt_at: Set(d.next_attempt_at),
            updated_at: Set(self.now()),
        })
        .on_conflict(
            OnConflict::column(queue_destination::Column::Domain)
                .update_columns(cols)
                .to_owned(),
        )
        .exec_without_returning(self.db())
        .await?;
        Ok(())
    }

    /// The delivery log, newest first.
    pub async fn delivery_log(&self, q: &LogQuery) -> CoreResult<Vec<LogEntry>> {
        let mut s = delivery_log::Entity::find();
        if let Some(t) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let t = t.trim_matches(|c| c == '<' || c == '>');
            s = s.filter(
                Condition::any()
                    .add(delivery_log::Column::MessageId.contains(t))
                    .add(delivery_log::Column::MailFrom.contains(t))
                    .add(delivery_log::Column::RcptTo.contains(t)),
            );
        }
        if let Some(id) = q.queue_id {
            s = s.filter(delivery_log::Column::QueueId.eq(id));
        }
        let limit = if q.limit == 0 { 100 } else { q.limit };
        Ok(s.order_by_desc(delivery_log::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(LogEntry::from)
            .collect())
    }
}

impl Destination {
    pub fn new(domain: &str, concurrency: i32) -> Self {
        Destination {
            domain: domain.to_owned(),
            held: false,
            concurrency,
            ceiling: None,
            failures: 0,
            last_reply: None,
            last_attempt_at: None,
            next_attempt_at: 0,
        }
    }
}

fn target_cond(t: &Target) -> Condition {
    match t {
        Target::Entry(id) => Condition::all().add(queue_entry::Column::Id.eq(*id)),
        Target::Domain(d) => {
            Condition::all().add(queue_entry::Column::Domain.eq(d.to_ascii_lowercase()))
        }
    }
}

fn log_row(
    e: &QueueEntry,
    a: &AttemptInfo,
    outcome: LogOutcome,
    reply: &str,
    now: i64,
) -> delivery_log::ActiveModel {
    delivery_log::ActiveModel {
        queue_id: Set(e.id),
        message_id: Set(e.message_id.clone()),
        mail_from: Set(e.mail_from.clone()),
        rcpt_to: Set(e.rcpt_to.clone()),
        domain: Set(e.domain.clone()),
        remote_host: Set(a.remote_host.clone()),
        remote_ip: Set(a.remote_ip.clone()),
        tls: Set(a.tls),
        outcome: Set(outcome.as_str().to_owned()),
        reply: Set(reply.to_owned()),
        duration_ms: Set(a.duration_ms),
        created_at: Set(now),
        ..Default::default()
    }
}

/// Multi-row inserts, in chunks that stay under SQLite's bound-variable
/// limit.
async fn insert_logs<C: ConnectionTrait>(
    db: &C,
    rows: Vec<delivery_log::ActiveModel>,
) -> CoreResult<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(500).collect();
        delivery_log::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wire_form;

    #[test]
    fn wire_form_leaves_only_crlf_line_endings() {
        assert_eq!(wire_form(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(wire_form(b"a\n.\nb"), b"a\r\n.\r\nb\r\n");
        assert_eq!(wire_form(b"a\r.\r\n"), b"a\r\n.\r\n");
        assert_eq!(wire_form(b"x\r\r\n"), b"x\r\n\r\n");
        assert_eq!(wire_form(b""), b"\r\n");
    }
}
