//! Group commit for SQLite's one writer connection (issue 14; DESIGN.md
//! "Writes": one writer connection takes every write transaction in turn,
//! batched).
//!
//! Every write transaction of the core on SQLite runs on one connection,
//! one at a time, in the order the writers queued (`Writer::group`, a FIFO
//! lock). Each transaction used to end in its own COMMIT, and with
//! `synchronous=FULL` each COMMIT is an fsync of the WAL. Here a write
//! transaction is a savepoint inside one open outer transaction shared by
//! every writer that queued while it ran:
//!
//! - `Core::write_txn` takes the turn, opens the outer transaction if none
//!   is open, and hands out a savepoint (`WriteTxn`).
//! - `WriteTxn::commit` releases the savepoint. If nobody else is queued,
//!   it commits the outer transaction at once (no added delay when one
//!   writer is alone). Otherwise it leaves the commit to the next writer in
//!   line and waits for it: the last writer of a busy moment commits for
//!   all of them, with one fsync.
//! - A writer that fails (an error inside its savepoint, or dropped) rolls
//!   back to its savepoint only, so one failure does not abort the others.
//!
//! Invariants:
//! - No `WriteTxn::commit` returns `Ok` before the outer COMMIT that covers
//!   it has returned `Ok`. A failed COMMIT is every member's error (after
//!   an I/O error SQLite may roll the whole transaction back, so nobody in
//!   the group may be told "done").
//! - An open outer transaction is never left without someone bound to end
//!   it: a writer that leaves it open for others wakes the flusher task,
//!   which queues for the turn like anyone and commits what it finds. A
//!   group never holds more than [`MAX_GROUP`] transactions.
//! - Writers that do not use `write_txn` (autocommit statements, the
//!   ingest worker's batches) take the turn with `Core::sqlite_write_turn`,
//!   which commits any open group first, so the one connection is free for
//!   them.
//!
//! PostgreSQL needs none of this: `write_txn` there is a plain transaction
//! and transactions run concurrently.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};

use crate::Priority;
use crate::error::{CoreError, CoreResult};

/// The most write transactions one COMMIT covers: a bound on how long the
/// first of them waits for its answer.
pub(crate) const MAX_GROUP: usize = 64;

/// The open group: the outer transaction and whoever waits for its COMMIT.
#[derive(Default)]
pub(crate) struct Group {
    outer: Option<DatabaseTransaction>,
    members: Vec<oneshot::Sender<Result<(), String>>>,
}

/// How many commits covered how many write transactions (tests read it;
/// `/metrics` has the `tern_write_group_transactions` histogram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub commits: u64,
    pub transactions: u64,
}

/// The SQLite writer's turn and its open group.
pub(crate) struct Writer {
    group: Mutex<Group>,
    /// Lets one background (bulk) writer at a time into the queue for
    /// `group`; see `Core::sqlite_write_turn`.
    bulk_gate: Mutex<()>,
    /// Writers queued for `group` that do not hold it yet.
    waiting: AtomicUsize,
    /// Wakes the flusher task (capacity 1: a pending wake-up is enough).
    wake: mpsc::Sender<()>,
    commits: AtomicU64,
    transactions: AtomicU64,
}

/// Counts a writer as queued until it holds the turn, also when its future
/// is dropped while it waits.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    /// A writer, and on SQLite the flusher task that ends groups left open
    /// for others. Needs a tokio runtime.
    pub(crate) fn new(backend: crate::db::Backend) -> Arc<Writer> {
        let (wake, rx) = mpsc::channel(1);
        let w = Arc::new(Writer {
            group: Mutex::new(Group::default()),
            bulk_gate: Mutex::new(()),
            waiting: AtomicUsize::new(0),
            wake,
            commits: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
        });
        if backend == crate::db::Backend::Sqlite {
            tokio::spawn(flusher(Arc::downgrade(&w), rx));
        }
        w
    }

    pub(crate) fn stats(&self) -> GroupStats {
        GroupStats {
            commits: self.commits.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }

    /// Queues for the turn, first come first served. Bulk writers pass
    /// the gate first, so urgent writers wait behind at most one of them.
    pub(crate) async fn turn(&self, p: Priority) -> Turn<'_> {
        let gate = match p {
            Priority::Bulk => Some(self.bulk_gate.lock().await),
            Priority::Urgent => None,
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued(&self.waiting);
        let group = self.group.lock().await;
        drop(queued);
        Turn {
            group,
            _gate: gate,
            writer: self,
        }
    }

    fn wake_flusher(&self) {
        // Full means a wake-up is already pending; closed means the core
        // is gone. Neither needs more.
        let _ = self.wake.try_send(());
    }
}

/// Holding the writer's turn. Field order matters: the turn is given up
/// before the gate, so the next bulk writer can only queue after urgent
/// writers already waiting.
pub(crate) struct Turn<'a> {
    group: MutexGuard<'a, Group>,
    _gate: Option<MutexGuard<'a, ()>>,
    writer: &'a Writer,
}

impl Turn<'_> {
    /// Commits the open group, if any, and answers its members.
    pub(crate) async fn flush(&mut self) {
        let Some(outer) = self.group.outer.take() else {
            return;
        };
        let res = outer.commit().await.map_err(|e| {
            let e = CoreError::from(e);
            tracing::error!(error = %e, "a group commit failed; every writer in it is told");
            e.to_string()
        });
        let members = std::mem::take(&mut self.group.members);
        if res.is_ok() && !members.is_empty() {
            self.writer.commits.fetch_add(1, Ordering::Relaxed);
            self.writer
                .transactions
                .fetch_add(members.len() as u64, Ordering::Relaxed);
            metrics::histogram!("tern_write_group_transactions").record(members.len() as f64);
        }
        for m in members {
            // A member whose caller went away is not told; its work is
            // committed as a write whose reply was lost would be.
            let _ = m.send(res.clone());
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Someone must end an outer transaction left open: it holds the
        // connection and SQLite's write lock.
        if self.group.outer.is_some() {
            self.writer.wake_flusher();
        }
    }
}

/// Ends groups that their last writer left open because others were
/// queued. Holds the writer weakly, so it ends with the core.
async fn flusher(writer: Weak<Writer>, mut wake: mpsc::Receiver<()>) {
    while wake.recv().await.is_some() {
        let Some(w) = writer.upgrade() else { return };
        // Not counted as waiting: a writer that sees only the flusher
        // queued commits itself, and the flusher then finds nothing.
        let mut turn = Turn {
            group: w.group.lock().await,
            _gate: None,
            writer: &w,
        };
        turn.flush().await;
    }
}

/// A write transaction: on SQLite a savepoint in the writer's open group
/// (holding the turn), on PostgreSQL a transaction of its own. It is a
/// connection for queries; end it with [`WriteTxn::commit`] or
/// [`WriteTxn::rollback`]. Dropped without either, it rolls back.
///
/// Field order matters: dropped, the savepoint queues its rollback on the
/// connection before the turn passes on to the next writer.
pub struct WriteTxn<'a> {
    txn: Option<DatabaseTransaction>,
    turn: Option<Turn<'a>>,
}

impl<'a> WriteTxn<'a> {
    /// A transaction of its own (PostgreSQL).
    pub(crate) async fn alone(db: &DatabaseConnection) -> CoreResult<WriteTxn<'a>> {
        Ok(WriteTxn {
            txn: Some(db.begin().await?),
            turn: None,
        })
    }

    /// A savepoint in the open group, opening one if needed (SQLite).
    pub(crate) async fn in_group(
        db: &DatabaseConnection,
        mut turn: Turn<'a>,
    ) -> CoreResult<WriteTxn<'a>> {
        // (Never full here: the commit that fills a group flushes it.)
        if turn.group.outer.is_none() {
            turn.group.outer = Some(db.begin().await?);
        }
        let outer = turn.group.outer.as_ref().expect("opened above");
        match outer.begin().await {
            Ok(sp) => Ok(WriteTxn {
                txn: Some(sp),
                turn: Some(turn),
            }),
            Err(e) => {
                // The outer transaction is in doubt: end it now.
                turn.flush().await;
                Err(e.into())
            }
        }
    }

    fn txn(&self) -> &DatabaseTransaction {
        self.txn
            .as_ref()
            .expect("a WriteTxn holds its transaction until it ends")
    }

    /// Commits: `Ok` only once the data is on disk. On SQLite this
    /// releases the savepoint and then commits the group now or waits for
    /// the writer after it to commit it.
    pub async fn commit(mut self) -> CoreResult<()> {
        let txn = self.txn.take().expect("not yet ended");
        let Some(mut turn) = self.turn.take() else {
            return Ok(txn.commit().await?);
        };
        if let Err(e) = txn.commit().await {
            // The outer transaction may be gone with it: end the group
            // now, so no later writer joins something in doubt.
            turn.flush().await;
            return Err(e.into());
        }
        let (tx, rx) = oneshot::channel();
        turn.group.members.push(tx);
        let alone = turn.writer.waiting.load(Ordering::SeqCst) == 0;
        if alone || turn.group.members.len() >= MAX_GROUP {
            turn.flush().await;
        }
        // Gives up the turn: the next writer joins the group, and the last
        // one (or the flusher) commits it.
        drop(turn);
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CoreError::Unavailable(e)),
            Err(_) => Err(CoreError::Unavailable(
                "the write group ended without an answer".into(),
            )),
        }
    }

    /// Undoes this transaction only (the rest of the group stays).
    pub async fn rollback(mut self) -> CoreResult<()> {
        let txn = self.txn.take().expect("not yet ended");
        Ok(txn.rollback().await?)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        self.txn().get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn().execute(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn().execute_unprepared(sql).await
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn().query_one(stmt).await
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn().query_all(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn().support_returning()
    }
}

impl std::ops::Deref for WriteTxn<'_> {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        self.txn()
    }
}
