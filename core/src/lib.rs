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
pub mod admin;
pub mod auth;
pub(crate) mod blobs;
pub mod clock;
pub mod cluster;
pub mod db;
pub mod delivery;
pub mod directory;
pub mod directory_cache;
pub mod dkim;
pub mod dns_records;
mod entities;
pub mod envelope;
pub mod error;
pub mod events;
pub mod identities;
pub mod ids;
pub mod mail;
pub mod mailbox_index;
pub mod mailboxes;
pub mod maildir;
pub mod mbox;
pub mod messages;
pub mod meta;
pub mod mta_sts;
pub mod mutf7;
pub mod outside;
pub mod outside_cache;
pub mod outside_fetch;
pub(crate) mod pg_failover;
pub mod queue;
pub mod routing;
pub mod rules;
pub mod scheduled;
pub mod search;
pub mod sent_status;
pub mod sessions;
pub mod snooze;
pub mod spool;
pub mod status;
pub mod submission;
pub mod threads;
pub mod view;
pub mod write;

use std::sync::Arc;

use sea_orm::{DatabaseConnection, EntityTrait};

pub use crate::address::Address;
pub use crate::admin::Admin;
pub use crate::auth::{AuthConfig, AuthError, LoginThrottle, PasswordHasher, ThrottleConfig};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::db::Backend;
pub use crate::directory::{Account, AccountRef, Alias, Domain, Role};
pub use crate::error::{CoreError, CoreResult};
pub use crate::events::{ChangeEvent, ChangeKind};
pub use crate::ids::{AccountId, BlobId, MailboxId, ModSeq, QueueId, Uid};
pub use crate::mail::{Mail, OwnedMailbox};
pub use crate::mailboxes::{Mailbox, MailboxHead, NewMailbox, SPECIAL_MAILBOXES};
pub use crate::messages::{FlagChange, FlagSet, Flags, Keyword, MessageSummary, SortOrder};
pub use crate::routing::{Rejection, Route};

/// How long a login epoch read from the database is trusted.
pub const LOGIN_EPOCH_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long `/healthz` stays 503 after a failed storage operation.
pub const HEALTH_ERROR_WINDOW_SECS: i64 = 10;

/// How long routing trusts its copy alone after the store failed.
const STORE_DOWN_HOLD_MS: i64 = 2_000;

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Options the core needs at start. The server maps its config file onto it.
#[derive(Clone, Debug)]
pub struct CoreOptions {
    pub database_url: String,
    pub auth: AuthConfig,
    pub throttle: ThrottleConfig,
    /// Start even when the database cannot be reached (a node restarted
    /// during an outage still takes mail into its spool); migrations run
    /// once it answers. The CLI leaves this off and fails at once.
    pub start_without_store: bool,
    /// This node's name in the cluster (its heartbeat row, its locks).
    pub node_name: String,
}

impl CoreOptions {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            auth: AuthConfig::default(),
            throttle: ThrottleConfig::default(),
            start_without_store: false,
            node_name: default_node_name(),
        }
    }
}

/// The machine's host name, or "tern".
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tern".to_owned())
}

/// Whose turn it is to write on SQLite; see [`Core::sqlite_write_turn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    Urgent,
    Bulk,
}

/// The handle every protocol and page holds. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    /// Queries.
    db: DatabaseConnection,
    /// Every write transaction (one connection on SQLite; see `db::Pools`).
    wdb: DatabaseConnection,
    backend: Backend,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    events: events::ChangeFeed,
    queue_wakeup: tokio::sync::watch::Sender<u64>,
    /// Wakes this node's scheduler (a new or hurried scheduled message).
    scheduler_wake: Arc<tokio::sync::Notify>,
    /// The SQLite writer's turn and its group commit (`write`).
    writer: Arc<write::Writer>,
    clock: Arc<dyn Clock>,
    /// Recently read login epochs: account id -> (epoch, read at).
    login_epochs: std::sync::Mutex<std::collections::HashMap<AccountId, (i64, std::time::Instant)>>,
    /// The node's spool, once `start_ingest` attached it; without one,
    /// `accept` delivers straight into the store.
    spool: std::sync::OnceLock<spool::Spool>,
    /// The routing copy used while the database is down.
    directory: std::sync::RwLock<Option<Arc<directory_cache::DirectorySnapshot>>>,
    /// Until when (unix ms) routing skips the database, after it failed:
    /// during an outage each RCPT would otherwise wait out a connect
    /// timeout before the copy answers.
    store_down_until: std::sync::atomic::AtomicI64,
    /// Directory changes this process made (moved on before their commit):
    /// the copy answers RCPT on its own only while it was loaded after the
    /// last of them (see `Core::route`).
    directory_local_changes: std::sync::atomic::AtomicU64,
    /// When the routing copy was last found current against the database.
    directory_checked: std::sync::Mutex<Option<std::time::Instant>>,
    /// Outside accounts' sealing key and session-only passwords.
    outside: outside::OutsideState,
    /// Mailboxes' message rows kept between readers (`mailbox_index`).
    index_cache: mailbox_index::IndexCache,
    /// What the IMAP server keeps of each new message ([`FetchDigest`]).
    fetch_digest: std::sync::OnceLock<FetchDigest>,
    /// Turns for claiming `\Recent`, each holding how far this process
    /// has seen the mark (`Core::claim_recent`).
    recent_claims: mailbox_index::Turns<Uid>,
    /// This node's id and its line to the other nodes (`cluster`).
    cluster: cluster::ClusterState,
    /// Each domain's DKIM signers (`dkim`).
    dkim: dkim::DkimCache,
    /// Compiled Sieve scripts (`rules`).
    rules: rules::ScriptCache,
    /// Webmail imports running or just over (`mbox`).
    imports: mbox::Imports,
    /// The status page's board (`status`).
    status: status::StatusState,
}

/// Made once per new message from its bytes and parsed MIME, and kept with
/// the bytes (`blobs.fetch_cache`): the IMAP server renders ENVELOPE and
/// BODYSTRUCTURE here, so that FETCH reads them instead of parsing the
/// message again. The core stores the result and never looks inside.
pub type FetchDigest = fn(&[u8], &mail_parser::Message<'_>) -> Vec<u8>;

impl Core {
    /// Connects, runs pending migrations and returns a ready core.
    pub async fn open(opts: CoreOptions) -> CoreResult<Core> {
        Self::open_with_clock(opts, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(opts: CoreOptions, clock: Arc<dyn Clock>) -> CoreResult<Core> {
        let connected = async {
            let p = db::connect(&opts.database_url).await?;
            db::migrate(&p.write).await?;
            Ok::<_, CoreError>(p)
        }
        .await;
        let db::Pools {
            read: db,
            write: wdb,
            backend,
        } = match connected {
            Ok(p) => p,
            Err(CoreError::Unavailable(why)) if opts.start_without_store => {
                tracing::error!(
                    error = %why,
                    "the database cannot be reached: starting without it; mail is spooled \
                     and everything else answers 'temporarily unavailable' until it returns"
                );
                let p = db::connect_lazy(&opts.database_url)?;
                let w = p.write.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        if db::migrate(&w).await.is_ok() {
                            tracing::info!("the database answers again; schema checked");
                            break;
                        }
                    }
                });
                p
            }
            Err(e) => return Err(e),
        };
        Ok(Core {
            inner: Arc::new(Inner {
                db,
                wdb,
                backend,
                hasher: PasswordHasher::new(opts.auth),
                throttle: LoginThrottle::new(opts.throttle, clock.clone()),
                events: events::ChangeFeed::new(),
                queue_wakeup: tokio::sync::watch::channel(0).0,
                scheduler_wake: Arc::new(tokio::sync::Notify::new()),
                writer: write::Writer::new(backend),
                clock,
                login_epochs: Default::default(),
                spool: std::sync::OnceLock::new(),
                directory: Default::default(),
                store_down_until: Default::default(),
                directory_local_changes: Default::default(),
                directory_checked: Default::default(),
                outside: Default::default(),
                index_cache: Default::default(),
                fetch_digest: Default::default(),
                recent_claims: Default::default(),
                cluster: cluster::ClusterState::new(&opts.node_name),
                dkim: Default::default(),
                rules: Default::default(),
                imports: Default::default(),
                status: Default::default(),
            }),
        })
    }

    /// Routing saw the store fail in the last moments: go to the copy.
    pub(crate) fn store_recently_down(&self) -> bool {
        self.inner
            .store_down_until
            .load(std::sync::atomic::Ordering::Relaxed)
            > unix_millis()
    }

    pub(crate) fn note_store_down(&self) {
        self.inner.store_down_until.store(
            unix_millis() + STORE_DOWN_HOLD_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Where writes go. Never take it while holding a transaction of it:
    /// on SQLite it is one connection.
    pub(crate) fn wdb(&self) -> &DatabaseConnection {
        &self.inner.wdb
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

    /// The account's login epoch as the database has it, read at most
    /// once per [`LOGIN_EPOCH_CACHE`] per account however many sessions
    /// ask (a change made here is seen at once; one made by the CLI or
    /// another node within that time). `None` while the store is down:
    /// an outage is no reason to end anyone's session.
    pub async fn login_epoch(&self, account_id: AccountId) -> Option<i64> {
        {
            let m = self
                .inner
                .login_epochs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some((epoch, at)) = m.get(&account_id)
                && at.elapsed() < LOGIN_EPOCH_CACHE
            {
                return Some(*epoch);
            }
        }
        let row = entities::account::Entity::find_by_id(account_id)
            .one(self.db())
            .await
            .ok()?;
        // A removed account has no sessions left to keep.
        let epoch = row.map_or(i64::MAX, |r| r.login_epoch);
        let mut m = self
            .inner
            .login_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.insert(account_id, (epoch, std::time::Instant::now()));
        Some(epoch)
    }

    pub(crate) fn forget_login_epoch(&self, account_id: AccountId) {
        let mut m = self
            .inner
            .login_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.remove(&account_id);
    }

    /// Sets what is kept of each new message for FETCH (once; later calls
    /// are ignored).
    pub fn set_fetch_digest(&self, f: FetchDigest) {
        let _ = self.inner.fetch_digest.set(f);
    }

    /// A new message's list fields, search text and FETCH digest, from one
    /// parse.
    pub(crate) fn message_meta(&self, raw: &[u8]) -> meta::MessageMeta {
        meta::MessageMeta::extract_with(raw, self.inner.fetch_digest.get().copied())
    }

    /// A committed change, to this node's subscribers and the others'.
    pub(crate) fn publish(&self, ev: ChangeEvent) {
        self.tell_cluster_change(&ev);
        self.inner.events.publish(ev)
    }

    /// A change another node committed, to this node's subscribers.
    pub(crate) fn publish_local(&self, ev: ChangeEvent) {
        self.inner.events.publish(ev)
    }

    /// Tells the queue runners' lanes to look for due entries now (new
    /// mail was queued, an operator retried) instead of at their next
    /// poll, on every node. Every lane sees every wake-up.
    pub fn queue_wake(&self) {
        self.tell_cluster_queue();
        self.queue_wake_local();
    }

    /// [`Core::queue_wake`] for this node only (a worker freed a slot).
    pub fn queue_wake_local(&self) {
        self.inner
            .queue_wakeup
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn queue_wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.queue_wakeup.subscribe()
    }

    /// On SQLite, the writers of this process take turns here, first come
    /// first served, before they begin a write transaction. SQLite runs
    /// one writer at a time anyway; left to its busy handler, waiting
    /// writers poll with growing sleeps and a short transaction (fresh mail)
    /// can wait seconds behind a stream of long ones (a draining backlog).
    ///
    /// Background writers (`Priority::Bulk`: the retry and bounce lanes)
    /// first pass a gate that lets one of them at a time into the queue for
    /// the write lock, so accepting and sending new mail waits behind at
    /// most one backlog transaction. PostgreSQL needs none of this.
    pub(crate) async fn sqlite_write_turn(&self, p: Priority) -> Option<write::Turn<'_>> {
        match self.inner.backend {
            Backend::Postgres => None,
            Backend::Sqlite => {
                let mut turn = self.inner.writer.turn(p).await;
                // This writer uses the connection on its own: end the
                // group that may hold it.
                turn.flush().await;
                Some(turn)
            }
        }
    }

    pub(crate) async fn sqlite_write_guard(&self) -> Option<write::Turn<'_>> {
        self.sqlite_write_turn(Priority::Urgent).await
    }

    /// A write transaction: on SQLite a savepoint in the writer's group
    /// commit (see `write`), on PostgreSQL a transaction of its own.
    pub(crate) async fn write_txn(&self) -> CoreResult<write::WriteTxn<'_>> {
        self.write_txn_at(Priority::Urgent).await
    }

    pub(crate) async fn write_txn_at(&self, p: Priority) -> CoreResult<write::WriteTxn<'_>> {
        match self.inner.backend {
            Backend::Postgres => write::WriteTxn::alone(self.wdb()).await,
            Backend::Sqlite => {
                let turn = self.inner.writer.turn(p).await;
                write::WriteTxn::in_group(self.wdb(), turn).await
            }
        }
    }

    /// How many commits covered how many grouped write transactions.
    pub fn write_group_stats(&self) -> write::GroupStats {
        self.inner.writer.stats()
    }

    /// Answers whether the store takes a write right now (`/healthz`): the
    /// probe row is rewritten and committed, and no other write of this
    /// process has failed in the last [`HEALTH_ERROR_WINDOW_SECS`].
    pub async fn health(&self) -> CoreResult<()> {
        {
            let _turn = self.sqlite_write_guard().await;
            db::probe_write(&self.inner.wdb, self.now()).await?;
        }
        match error::seconds_since_storage_error() {
            Some(age) if age < HEALTH_ERROR_WINDOW_SECS => Err(CoreError::Unavailable(format!(
                "a storage write failed {age} s ago"
            ))),
            _ => Ok(()),
        }
    }

    /// Closes the pool so SQLite checkpoints its WAL on a clean shutdown.
    pub async fn close(self) {
        // A group left open would be rolled back with its connection.
        self.inner.writer.turn(Priority::Urgent).await.flush().await;
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            let _ = inner.db.close().await;
            let _ = inner.wdb.close().await;
        }
    }
}
