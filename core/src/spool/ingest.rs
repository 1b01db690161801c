//! The ingest worker: moves spooled messages into the mail store, many per
//! transaction, each record in its own savepoint.
//!
//! - Idempotent: the first statement for a record inserts its id into
//!   `spool_ingested` (`ON CONFLICT DO NOTHING`); a record already there
//!   was stored before a crash and is skipped. The row commits with the
//!   delivery, so a record is stored exactly once.
//! - Fair: batches alternate the newest and the oldest records
//!   ([`Shared::take_batch`]), so new mail is seen within one batch even
//!   while a backlog of hundreds of thousands drains.
//! - While the store is unavailable the batch goes back to the spool and
//!   the worker retries with a growing pause (at most
//!   [`MAX_BACKOFF`]); when the store returns, the spool drains by itself.
//! - A record that cannot be stored for good (a recipient over quota, an
//!   account removed since RCPT) is delivered to the others and a DSN
//!   (RFC 3464) goes back to the sender: the `250` was a promise to deliver
//!   or to report.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, EntityTrait, Statement, TransactionTrait};
use tokio::sync::watch;

use super::{Pending, Shared, Spool, SpoolRecord};
use crate::Core;
use crate::Priority;
use crate::delivery::{DeliveryReceipt, Envelope};
use crate::error::{CoreError, CoreResult};
use crate::queue::dsn::{self, DsnInput, DsnKind, DsnRecipient};

/// Records per ingest transaction: large enough that one commit covers
/// many messages, small enough that the write turn is never held long.
pub const INGEST_BATCH: usize = 64;
const INGEST_BATCH_BYTES: u64 = 16 * 1024 * 1024;
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// `tern spool stats` reports the ingest rate over this window.
pub const RATE_WINDOW_SECS: i64 = 60;
/// How often spool_ingested rows of deleted segments are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Names this host in DSNs.
    pub hostname: String,
}

pub struct IngestHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl IngestHandle {
    /// Lets the batch in progress finish, then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Inserts the record's id; false when it was already there (stored).
async fn mark(c: &DatabaseTransaction, node: &str, p: &Pending, now: i64) -> CoreResult<bool> {
    let backend = c.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO spool_ingested (node, segment, record_offset, ingested_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        }
        _ => {
            "INSERT INTO spool_ingested (node, segment, record_offset, ingested_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    let res = c
        .execute(Statement::from_sql_and_values(
            backend,
            sql,
            [
                node.into(),
                (p.id.segment as i64).into(),
                (p.id.offset as i64).into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Inserts the ids of `batch` in one statement; returns those that were
/// not there yet (the others were stored before a crash).
async fn mark_many(
    c: &DatabaseTransaction,
    node: &str,
    batch: &[&Pending],
    now: i64,
) -> CoreResult<std::collections::HashSet<super::SpoolId>> {
    let backend = c.get_database_backend();
    let mut sql = String::from(
        "INSERT INTO spool_ingested (node, segment, record_offset, ingested_at) VALUES ",
    );
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(batch.len() * 4);
    for (i, p) in batch.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        match backend {
            sea_orm::DbBackend::Postgres => {
                let n = i * 4;
                sql.push_str(&format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
            }
            _ => sql.push_str("(?, ?, ?, ?)"),
        }
        values.push(node.into());
        values.push((p.id.segment as i64).into());
        values.push((p.id.offset as i64).into());
        values.push(now.into());
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING segment, record_offset");
    let rows = c
        .query_all(Statement::from_sql_and_values(backend, &sql, values))
        .await?;
    let mut fresh = std::collections::HashSet::with_capacity(rows.len());
    for r in rows {
        let segment: i64 = r.try_get_by_index(0)?;
        let offset: i64 = r.try_get_by_index(1)?;
        fresh.insert(super::SpoolId {
            segment: segment as u64,
            offset: offset as u64,
        });
    }
    Ok(fresh)
}

/// Takes a record's id back out (it was refused and is stored recipient by
/// recipient afterwards, which marks it again).
async fn unmark(c: &DatabaseTransaction, node: &str, p: &Pending) -> CoreResult<()> {
    let backend = c.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "DELETE FROM spool_ingested WHERE node = $1 AND segment = $2 AND record_offset = $3"
        }
        _ => "DELETE FROM spool_ingested WHERE node = ? AND segment = ? AND record_offset = ?",
    };
    c.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [
            node.into(),
            (p.id.segment as i64).into(),
            (p.id.offset as i64).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The DSN status and diagnostic for an error that will not go away.
fn permanent_reason(e: &CoreError) -> (&'static str, String) {
    match e {
        CoreError::OverQuota => ("5.2.2", "552 5.2.2 Mailbox full: quota exceeded".into()),
        CoreError::NotFound(_) => ("5.1.1", "550 5.1.1 No such user here".into()),
        other => ("5.3.0", format!("554 5.3.0 {other}")),
    }
}

impl Core {
    /// Makes this core accept mail through `spool` and starts the ingest
    /// worker that drains it into the store.
    pub fn start_ingest(&self, spool: Spool, cfg: IngestConfig) -> IngestHandle {
        self.attach_spool(spool.clone());
        let (stop, mut stopped) = watch::channel(false);
        let core = self.clone();
        let task = tokio::spawn(async move {
            let shared = spool.shared().clone();
            let mut backoff = Duration::from_millis(100);
            let mut outage_logged = false;
            let mut last_prune = tokio::time::Instant::now();
            loop {
                if *stopped.borrow() {
                    break;
                }
                let batch = shared.take_batch(INGEST_BATCH, INGEST_BATCH_BYTES);
                if batch.is_empty() {
                    tokio::select! {
                        _ = shared.ingest_wake.notified() => {}
                        _ = stopped.changed() => {}
                        // A wake-up is never lost (Notify keeps one permit);
                        // the tick is for pruning on a quiet node.
                        _ = tokio::time::sleep(PRUNE_EVERY) => {}
                    }
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = tokio::time::Instant::now();
                        if let Err(e) = core.prune_ingested(&shared).await {
                            tracing::debug!(error = %e, "spool: prune deferred");
                        }
                    }
                    continue;
                }
                match core.ingest_batch(&shared, &batch, &cfg).await {
                    Ok(stored) => {
                        metrics::counter!("tern_spool_ingested_total").increment(stored as u64);
                        if outage_logged {
                            tracing::info!("spool: the mail store is back; ingest resumed");
                            outage_logged = false;
                        }
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        shared.untake(&batch);
                        if !outage_logged {
                            tracing::warn!(error = %e, "spool: the mail store refused a batch; mail stays spooled and is retried");
                            outage_logged = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stopped.changed() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
        IngestHandle { stop, task }
    }

    /// Makes `accept` write to `spool` (the first spool attached stays).
    pub fn attach_spool(&self, spool: Spool) {
        let _ = self.inner.spool.set(spool);
    }

    /// The spool this core accepts into, when one is attached.
    /// Mail accepted for `account` on this node and not stored yet: how
    /// many messages, and when the oldest arrived. Another node's spool
    /// is not seen here.
    pub fn mail_held_for(&self, account: crate::AccountId) -> Option<(u64, i64)> {
        self.spool()?.held_for(account)
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.inner.spool.get()
    }

    /// Stores one batch; on `Err` nothing of it counts as stored and the
    /// caller gives it back. Returns how many records were stored now.
    async fn ingest_batch(
        &self,
        shared: &Arc<Shared>,
        batch: &[Pending],
        cfg: &IngestConfig,
    ) -> CoreResult<usize> {
        let mut recs: Vec<(Pending, SpoolRecord)> = Vec::with_capacity(batch.len());
        let mut damaged = Vec::new();
        for p in batch {
            match shared.read(p) {
                Ok(r) => recs.push((*p, r)),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Checked when written or scanned, so damage here is
                    // the disk's doing: keep the bytes aside for an
                    // operator rather than retry forever.
                    shared.quarantine(p);
                    tracing::error!(record = %p.id, error = %e, "spool: damaged record set aside");
                    damaged.push(*p);
                }
                Err(e) => return Err(CoreError::Unavailable(format!("spool read: {e}"))),
            }
        }
        let node = shared.node.clone();
        let now = self.now();
        let (receipts, refused) = {
            let _turn = self.sqlite_write_turn(Priority::Urgent).await;
            match self.ingest_together(&node, &recs, now).await {
                Ok(done) => done,
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) => {
                    // Something the up-front checks did not foresee: store
                    // the batch again record by record, each in its own
                    // savepoint, so one bad record cannot hold the others.
                    tracing::warn!(error = %e, "spool: batch refused; storing its records one by one");
                    self.ingest_one_by_one(&node, &recs, now).await?
                }
            }
        };
        let refused: Vec<(Pending, SpoolRecord, CoreError)> = {
            let mut by_index: std::collections::HashMap<usize, CoreError> =
                refused.into_iter().collect();
            recs.into_iter()
                .enumerate()
                .filter_map(|(i, (p, r))| by_index.remove(&i).map(|e| (p, r, e)))
                .collect()
        };
        let stored = receipts.len();
        for rc in &receipts {
            self.announce(rc);
        }
        // Records refused as a whole are stored recipient by recipient,
        // each in its own transaction; one that meets an outage goes back.
        let mut back = Vec::new();
        for (p, r, e) in refused {
            if let Err(err) = self.ingest_split(&node, &p, &r, &e, cfg).await {
                tracing::warn!(record = %p.id, error = %err, "spool: per-recipient delivery deferred");
                back.push(p);
            }
        }
        let done: Vec<Pending> = batch
            .iter()
            .filter(|p| !back.iter().any(|b| b.id == p.id))
            .copied()
            .collect();
        shared.done(&done);
        if !back.is_empty() {
            shared.untake(&back);
        }
        Ok(stored)
    }

    /// The usual way: one transaction, the ids marked in one statement and
    /// the messages stored by [`Core::deliver_batch_in`]. Returns the
    /// receipts and the indexes (into `recs`) of records refused for good,
    /// whose marks are taken back in the same transaction.
    async fn ingest_together(
        &self,
        node: &str,
        recs: &[(Pending, SpoolRecord)],
        now: i64,
    ) -> CoreResult<(Vec<DeliveryReceipt>, Vec<(usize, CoreError)>)> {
        use crate::delivery::{BatchItem, BatchOutcome};
        let txn = self.wdb().begin().await?;
        let ids: Vec<&Pending> = recs.iter().map(|(p, _)| p).collect();
        let fresh = if ids.is_empty() {
            Default::default()
        } else {
            mark_many(&txn, node, &ids, now).await?
        };
        let todo: Vec<usize> = (0..recs.len())
            .filter(|i| fresh.contains(&recs[*i].0.id))
            .collect();
        let items: Vec<BatchItem<'_>> = todo
            .iter()
            .map(|i| BatchItem {
                env: &recs[*i].1.envelope,
                raw: &recs[*i].1.raw,
                received_at: recs[*i].1.received_at,
                rules: true,
            })
            .collect();
        let outcomes = self.deliver_batch_in(&txn, &items).await?;
        let mut receipts = Vec::with_capacity(outcomes.len());
        let mut refused = Vec::new();
        for (i, outcome) in todo.into_iter().zip(outcomes) {
            match outcome {
                BatchOutcome::Stored(rc) => receipts.push(rc),
                BatchOutcome::Refused(e) => {
                    unmark(&txn, node, &recs[i].0).await?;
                    refused.push((i, e));
                }
            }
        }
        txn.commit().await?;
        Ok((receipts, refused))
    }

    /// The careful way, for a batch [`Core::ingest_together`] could not
    /// store: each record in its own savepoint.
    async fn ingest_one_by_one(
        &self,
        node: &str,
        recs: &[(Pending, SpoolRecord)],
        now: i64,
    ) -> CoreResult<(Vec<DeliveryReceipt>, Vec<(usize, CoreError)>)> {
        let mut receipts = Vec::new();
        let mut refused = Vec::new();
        let txn = self.wdb().begin().await?;
        for (i, (p, r)) in recs.iter().enumerate() {
            let sp = txn.begin().await?;
            if !mark(&sp, node, p, now).await? {
                sp.rollback().await?;
                continue;
            }
            match self
                .deliver_in_savepoint(sp, &r.envelope, &r.raw, r.received_at)
                .await?
            {
                Ok(rc) => receipts.push(rc),
                Err(e) => refused.push((i, e)),
            }
        }
        txn.commit().await?;
        Ok((receipts, refused))
    }

    /// Delivers inside savepoint `sp` and releases it; a refusal for good
    /// rolls the savepoint back and comes back as `Ok(Err(_))`, an outage
    /// as `Err` (the caller abandons the whole transaction).
    async fn deliver_in_savepoint(
        &self,
        sp: DatabaseTransaction,
        env: &Envelope,
        raw: &[u8],
        received_at: i64,
    ) -> CoreResult<Result<DeliveryReceipt, CoreError>> {
        match self.deliver_in_at(&sp, env, raw, received_at).await {
            Ok(rc) => {
                sp.commit().await?;
                Ok(Ok(rc))
            }
            Err(e) if e.is_temporary() => Err(e),
            Err(e) => {
                sp.rollback().await?;
                Ok(Err(e))
            }
        }
    }

    /// Delivers a record one recipient at a time; those that fail for good
    /// are reported to the sender in one DSN, in the same transaction.
    async fn ingest_split(
        &self,
        node: &str,
        p: &Pending,
        r: &SpoolRecord,
        why: &CoreError,
        cfg: &IngestConfig,
    ) -> CoreResult<()> {
        let env = &r.envelope;
        let dsn_to = if env.mail_from.is_empty() {
            None
        } else {
            crate::queue::runner::dsn_envelope(self, &env.mail_from).await?
        };
        let mut parts: Vec<(String, Envelope)> = Vec::new();
        for copy in env.local_copies() {
            let name = if copy.delivered_to.is_empty() {
                let id = copy.account_id;
                crate::entities::account::Entity::find_by_id(id)
                    .one(self.db())
                    .await?
                    .map_or_else(|| format!("account {id}"), |a| a.address)
            } else {
                copy.delivered_to.clone()
            };
            parts.push((
                name,
                Envelope {
                    require_tls: false,
                    mail_from: env.mail_from.clone(),
                    local: vec![copy],
                    remote: Vec::new(),
                },
            ));
        }
        if !env.remote.is_empty() {
            let names = env
                .remote
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            parts.push((
                names,
                Envelope {
                    require_tls: false,
                    mail_from: env.mail_from.clone(),
                    local: Vec::new(),
                    remote: env.remote.clone(),
                },
            ));
        }
        let now = self.now();
        let mut receipts = Vec::new();
        let mut failed = Vec::new();
        {
            let _turn = self.sqlite_write_turn(Priority::Urgent).await;
            let txn = self.wdb().begin().await?;
            if !mark(&txn, node, p, now).await? {
                txn.rollback().await?;
                return Ok(());
            }
            for (name, part) in &parts {
                let sp = txn.begin().await?;
                match self
                    .deliver_in_savepoint(sp, part, &r.raw, r.received_at)
                    .await?
                {
                    Ok(rc) => receipts.push(rc),
                    Err(e) => {
                        let (status, diagnostic) = permanent_reason(&e);
                        tracing::warn!(record = %p.id, rcpt = %name, error = %e, "spool: recipient refused at ingest");
                        failed.push(DsnRecipient {
                            rcpt: name.clone(),
                            diagnostic,
                            remote_mta: None,
                            status: status.to_owned(),
                        });
                    }
                }
            }
            if !failed.is_empty() {
                match &dsn_to {
                    Some(to) => {
                        let raw = dsn::build(&DsnInput {
                            kind: DsnKind::Failed,
                            reporting_mta: &cfg.hostname,
                            sender: &env.mail_from,
                            arrival_date: r.received_at,
                            now,
                            retry_until: None,
                            recipients: &failed,
                            original: &r.raw,
                        });
                        receipts.push(self.deliver_in(&txn, to, &raw).await?);
                    }
                    None => tracing::warn!(
                        record = %p.id, first_error = %why,
                        "spool: recipients refused and no one to tell (null or unknown sender)"
                    ),
                }
            }
            txn.commit().await?;
        }
        for rc in &receipts {
            self.announce(rc);
        }
        Ok(())
    }

    /// Deletes this node's idempotence rows for segments it has deleted:
    /// numbers only grow, so every segment below the oldest live one is
    /// gone for good (its deletion was synced to the directory).
    async fn prune_ingested(&self, shared: &Shared) -> CoreResult<()> {
        let below = shared.oldest_live_segment() as i64;
        let backend = self.db().get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => {
                "DELETE FROM spool_ingested WHERE node = $1 AND segment < $2 AND ingested_at < $3"
            }
            _ => "DELETE FROM spool_ingested WHERE node = ? AND segment < ? AND ingested_at < ?",
        };
        let _turn = self.sqlite_write_turn(Priority::Bulk).await;
        let txn = self.wdb().begin().await?;
        txn.execute(Statement::from_sql_and_values(
            backend,
            sql,
            // Rows of the last minutes stay a while longer: they are how
            // `tern spool stats` tells the ingest rate.
            [
                shared.node.clone().into(),
                below.into(),
                (self.now() - 2 * RATE_WINDOW_SECS).into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// What `tern spool stats` prints, read from the spool directory and the
/// store (no server needs to run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolReport {
    pub node: Option<String>,
    /// Records on disk not yet stored (all of them on disk when the store
    /// cannot be asked).
    pub records: u64,
    pub bytes: u64,
    pub oldest: Option<i64>,
    pub segments: u64,
    /// Records this node stored in the last [`RATE_WINDOW_SECS`].
    pub ingested_last_window: Option<u64>,
    pub store_reachable: bool,
    /// Torn tails found (a running server cuts them when it starts).
    pub torn: Vec<String>,
}

impl SpoolReport {
    /// The records on disk, without asking the store.
    pub fn from_disk(dir: &std::path::Path) -> std::io::Result<SpoolReport> {
        Self::tally(dir, &Default::default())
    }

    fn tally(
        dir: &std::path::Path,
        stored: &std::collections::HashSet<(u64, u64)>,
    ) -> std::io::Result<SpoolReport> {
        let (on_disk, torn) = super::scan_dir(dir)?;
        let mut report = SpoolReport {
            node: super::read_node_id(dir),
            torn,
            ..Default::default()
        };
        let mut segs = std::collections::BTreeSet::new();
        for (id, received_at, len) in on_disk {
            segs.insert(id.segment);
            if stored.contains(&(id.segment, id.offset)) {
                continue;
            }
            report.records += 1;
            report.bytes += len;
            report.oldest = Some(report.oldest.map_or(received_at, |o| o.min(received_at)));
        }
        report.segments = segs.len() as u64;
        Ok(report)
    }
}

impl Core {
    /// The spool in `dir` as the store sees it: records on disk whose ids
    /// are not in `spool_ingested` yet.
    pub async fn spool_report(&self, dir: &std::path::Path) -> std::io::Result<SpoolReport> {
        let Some(node) = super::read_node_id(dir) else {
            return SpoolReport::from_disk(dir);
        };
        let backend = self.db().get_database_backend();
        let q = match backend {
            sea_orm::DbBackend::Postgres => {
                "SELECT segment, record_offset, ingested_at FROM spool_ingested WHERE node = $1"
            }
            _ => "SELECT segment, record_offset, ingested_at FROM spool_ingested WHERE node = ?",
        };
        let rows = self
            .db()
            .query_all(Statement::from_sql_and_values(backend, q, [node.into()]))
            .await;
        let Ok(rows) = rows else {
            return SpoolReport::from_disk(dir);
        };
        let since = self.now() - RATE_WINDOW_SECS;
        let mut recent = 0u64;
        let mut stored = std::collections::HashSet::new();
        for r in rows {
            let seg: i64 = r.try_get_by_index(0).unwrap_or(-1);
            let off: i64 = r.try_get_by_index(1).unwrap_or(-1);
            let at: i64 = r.try_get_by_index(2).unwrap_or(0);
            if at >= since {
                recent += 1;
            }
            stored.insert((seg as u64, off as u64));
        }
        let mut report = SpoolReport::tally(dir, &stored)?;
        report.store_reachable = true;
        report.ingested_last_window = Some(recent);
        Ok(report)
    }
}
