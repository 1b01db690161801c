//! The core's error type. Protocols turn it into their own reply codes in one
//! place each; the mapping that matters most is `Unavailable`, which must
//! become a temporary failure (451 / NO [UNAVAILABLE] / -ERR [SYS/TEMP] / 503).

use sea_orm::{DbErr, SqlErr};

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
                metrics::counter!("tern_database_errors_total").increment(1);
                CoreError::Unavailable(e.to_string())
            }
        }
    }
}
