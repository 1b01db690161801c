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

mod claim;
pub mod concurrency;
mod destinations;
pub mod dsn;
mod finish;
mod log;
pub use log::Trace;
mod operator;
mod ops;
pub mod runner;
pub mod schedule;

use crate::ids::{BlobId, QueueId};
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

pub use self::claim::{ClaimSpec, RetryTurn};
pub use self::concurrency::{ConcurrencyConfig, DestinationLimits};
pub use self::operator::Queue;
pub use self::runner::{
    QueueConfig, QueueRunner, Relay, RelayReport, RelayRequest, Reply, RunnerHandle, RunnerProbe,
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
// The status page's services and states are stored the same way.
pub(crate) use stored_as_text;

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
    pub id: QueueId,
    pub blob_id: BlobId,
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
    /// REQUIRETLS (RFC 8689) was asked for this message.
    pub require_tls: bool,
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
            require_tls: m.require_tls,
        }
    }
}

/// What an operator command acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Entry(QueueId),
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
    /// An operator's "retry now" for the whole destination: retry entries
    /// last tried before this time are due whatever their schedule says.
    /// Cleared when they have all been tried, or when the destination
    /// turns out unreachable again.
    pub retry_requested_at: Option<i64>,
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
            retry_requested_at: m.retry_requested_at,
        }
    }
}

/// One row of the delivery log: one recipient in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i32,
    pub queue_id: QueueId,
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
    pub queue_id: Option<QueueId>,
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
    pub delayed_reported: Vec<QueueId>,
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
