//! The core's error type. Protocols turn it into their own reply codes in one
//! place each; the mapping that matters most is `Unavailable`, which must
//! become a temporary failure (451 / NO [UNAVAILABLE] / -ERR [SYS/TEMP] / 503).

use std::sync::atomic::{AtomicI64, Ordering};

use sea_orm::{DbErr, SqlErr};

/// When this process last met a storage error (unix seconds, 0: never).
/// `/healthz` stays 503 for a short while after one, so a node whose writes
/// fail (a full disk) is taken out even when its own small probe fits.
static LAST_STORAGE_ERROR: AtomicI64 = AtomicI64::new(0);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn note_storage_error() {
    LAST_STORAGE_ERROR.store(unix_now(), Ordering::Relaxed);
}

/// Seconds since the last storage error, if there was one.
pub(crate) fn seconds_since_storage_error() -> Option<i64> {
    match LAST_STORAGE_ERROR.load(Ordering::Relaxed) {
        0 => None,
        t => Some(unix_now().saturating_sub(t)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("permission denied")]
    Forbidden,
    #[error("mailbox full: quota exceeded")]
    OverQuota,
    /// A per-object limit other than the quota (keywords per message).
    #[error("{0}")]
    Limit(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CoreError::Invalid(msg.into())
    }

    /// True for errors that a client should retry later.
    pub fn is_temporary(&self) -> bool {
        matches!(self, CoreError::Unavailable(_))
    }
}

impl From<DbErr> for CoreError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(msg)) => CoreError::Conflict(msg),
            Some(SqlErr::ForeignKeyConstraintViolation(msg)) => {
                CoreError::Invalid(format!("reference to a missing row: {msg}"))
            }
            // Everything else (connection refused, pool timeout, disk full,
            // read-only database) is a storage outage from the client's point
            // of view: retry later, never "message lost".
            _ => {
                note_storage_error();
                metrics::counter!("tern_database_errors_total").increment(1);
                CoreError::Unavailable(e.to_string())
            }
        }
    }
}
