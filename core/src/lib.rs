//! `mailcore`: Tern's mail core.
//!
//! It owns storage (sea-orm over SQLite or PostgreSQL), the directory of
//! domains, accounts and aliases, recipient routing, delivery into mailboxes,
//! authentication and the change feed. It knows nothing of sockets or HTML:
//! protocol sessions and web pages call the async methods on [`Core`].
//!
//! Invariants every module keeps:
//! - A method that returns `Ok` after writing has committed its transaction.
//!   "Accepted means durable" rests on this (DESIGN.md rule 1).
//! - A database that cannot be reached yields [`CoreError::Unavailable`], which
//!   every protocol maps to its temporary-failure reply (DESIGN.md rule 2).
//! - Every operation on mail takes the acting account's id and checks that the
//!   mailbox belongs to it; no caller can reach another account's mail by id.

pub mod address;
pub mod auth;
pub mod clock;
pub mod db;
pub mod delivery;
pub mod directory;
mod entities;
pub mod error;
pub mod events;
pub mod mailboxes;
pub mod messages;
pub mod meta;
pub mod queue;
pub mod routing;
pub mod sessions;
pub mod submission;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use crate::address::Address;
pub use crate::auth::{AuthConfig, AuthError, LoginThrottle, PasswordHasher, ThrottleConfig};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::db::Backend;
pub use crate::directory::{Account, AccountRef, Alias, Domain, Role};
pub use crate::error::{CoreError, CoreResult};
pub use crate::events::{ChangeEvent, ChangeKind};
pub use crate::mailboxes::{Mailbox, SPECIAL_MAILBOXES};
pub use crate::messages::{Flags, MessageSummary, SortOrder};
pub use crate::routing::{Rejection, Route};

/// Options the core needs at start. The server maps its config file onto it.
#[derive(Clone, Debug)]
pub struct CoreOptions {
    pub database_url: String,
    pub auth: AuthConfig,
    pub throttle: ThrottleConfig,
}

impl CoreOptions {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            auth: AuthConfig::default(),
            throttle: ThrottleConfig::default(),
        }
    }
}

/// The handle every protocol and page holds. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    backend: Backend,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    events: events::ChangeFeed,
    queue_wakeup: tokio::sync::Notify,
    clock: Arc<dyn Clock>,
}

impl Core {
    /// Connects, runs pending migrations and returns a ready core.
    pub async fn open(opts: CoreOptions) -> CoreResult<Core> {
        Self::open_with_clock(opts, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(opts: CoreOptions, clock: Arc<dyn Clock>) -> CoreResult<Core> {
        let (db, backend) = db::connect(&opts.database_url).await?;
        db::migrate(&db).await?;
        Ok(Core {
            inner: Arc::new(Inner {
                db,
                backend,
                hasher: PasswordHasher::new(opts.auth),
                throttle: LoginThrottle::new(opts.throttle, clock.clone()),
                events: events::ChangeFeed::new(),
                queue_wakeup: tokio::sync::Notify::new(),
                clock,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.inner.hasher
    }

    pub fn throttle(&self) -> &LoginThrottle {
        &self.inner.throttle
    }

    /// Subscribes to the change feed (new mail, flag changes, expunges).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn publish(&self, ev: ChangeEvent) {
        self.inner.events.publish(ev)
    }

    /// Notified when new queue entries are committed, so the queue runner
    /// starts on fresh mail at once instead of at its next poll.
    pub fn queue_wakeup(&self) -> &tokio::sync::Notify {
        &self.inner.queue_wakeup
    }

    /// Answers whether the database takes a query right now; `/healthz` and
    /// the protocols' temporary-failure logic use it.
    pub async fn health(&self) -> CoreResult<()> {
        db::ping(&self.inner.db).await
    }

    /// Closes the pool so SQLite checkpoints its WAL on a clean shutdown.
    pub async fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            let _ = inner.db.close().await;
        }
    }
}
