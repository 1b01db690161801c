//! Finishing an attempt: each entry is retired or rescheduled, the
//! delivery log written and any DSN stored, in one transaction, and only
//! for entries whose lease this worker still holds.

use super::claim::{claimable, priority};
use super::*;
use crate::ids::{BlobId, QueueId};

pub(super) fn log_row(
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
pub(super) async fn insert_logs<C: ConnectionTrait>(
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

impl Core {
    /// Commits the result of one attempt: retires or reschedules each entry
    /// (only while this worker still holds its lease), writes the delivery
    /// log and stores any DSN, all in one transaction.
    pub async fn queue_finish(&self, f: Finish) -> CoreResult<()> {
        self.queue_finish_batch(std::slice::from_ref(&f)).await
    }

    /// The results of several attempts (several workers' transactions) in
    /// one commit: a drain of thousands of transactions a second is bound
    /// by commits, not by statements (the runner's finisher gathers what
    /// its workers hand it while the previous batch commits). Each attempt
    /// keeps its own lease check; they all land, or none does.
    pub async fn queue_finish_batch(&self, fs: &[Finish]) -> CoreResult<()> {
        let now = self.now();
        let urgent = fs
            .iter()
            .flat_map(|f| f.results.iter())
            .any(|r| r.entry.lane == Lane::Fresh);
        let lane = if urgent { Lane::Fresh } else { Lane::Retry };
        let txn = self.write_txn_at(priority(lane)).await?;
        let mut receipts = Vec::new();
        let mut released = Vec::new();
        let mut logs = Vec::new();
        for f in fs {
            self.finish_in(&txn, f, now, &mut receipts, &mut released, &mut logs)
                .await?;
        }
        insert_logs(&txn, logs).await?;
        crate::blobs::release_blobs(&txn, &released).await?;
        txn.commit().await?;
        for r in &receipts {
            self.announce(r);
        }
        for f in fs {
            for r in &f.results {
                tracing::info!(
                    queue_id = %r.entry.id,
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
                // The class of what the destination answered, per domain:
                // what a "this destination keeps saying 4xx" alert reads.
                let class = match r.reply.as_bytes().first() {
                    Some(b'2') => "2xx",
                    Some(b'4') => "4xx",
                    Some(b'5') => "5xx",
                    _ => "none",
                };
                metrics::counter!(
                    "tern_delivery_attempts_total",
                    "domain" => r.entry.domain.clone(),
                    "class" => class
                )
                .increment(1);
                if matches!(r.outcome, Outcome::Delivered) {
                    metrics::histogram!("tern_delivery_latency_seconds")
                        .record((now - r.entry.created_at).max(0) as f64);
                }
            }
        }
        Ok(())
    }

    /// One attempt's part of [`Core::queue_finish_batch`], inside its
    /// transaction; the blobs to release and the log rows are gathered
    /// for the batch.
    async fn finish_in(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        f: &Finish,
        now: i64,
        receipts: &mut Vec<crate::delivery::DeliveryReceipt>,
        released: &mut Vec<BlobId>,
        logs: &mut Vec<delivery_log::ActiveModel>,
    ) -> CoreResult<()> {
        // Which entries are still ours? Written as an UPDATE .. RETURNING so
        // that the transaction's first statement is a write (no SQLite lock
        // upgrade later). An entry whose lease ran out and that another
        // worker took is left to that worker; our attempt is still logged.
        let ids: Vec<QueueId> = f.results.iter().map(|r| r.entry.id).collect();
        let owned: std::collections::HashSet<QueueId> = queue_entry::Entity::update_many()
            .col_expr(
                queue_entry::Column::LeaseUntil,
                Expr::col(queue_entry::Column::LeaseUntil).into(),
            )
            .filter(queue_entry::Column::Id.is_in(ids))
            .filter(queue_entry::Column::LockOwner.eq(f.owner.clone()))
            .exec_with_returning(txn)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        for (env, raw) in &f.dsns {
            receipts.push(self.deliver_in(txn, env, raw).await?);
        }

        // One statement per kind of change, not per entry: a transaction
        // to 100 recipients must not hold the write lock for 200 statements.
        let mut retired = Vec::new();
        let mut deferred: std::collections::BTreeMap<(i64, &str, &str, bool), Vec<QueueId>> =
            Default::default();
        for r in &f.results {
            if !owned.contains(&r.entry.id) {
                tracing::warn!(
                    queue_id = %r.entry.id,
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
                .exec(txn)
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
                .exec(txn)
                .await?;
        }
        logs.extend(
            f.results
                .iter()
                .map(|r| log_row(&r.entry, &f.attempt, r.outcome.logged(), &r.reply, now)),
        );
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
            let waiting: Option<QueueId> = queue_entry::Entity::find()
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
    /// change: the destination's own back-off already blocks them, and an
    /// operator's retry of it is answered (Postfix's flush does the same:
    /// a dead destination's entries go back to their own schedule).
    pub async fn queue_defer_destination(
        &self,
        domain: &str,
        next_at: i64,
        reason: &str,
    ) -> CoreResult<u64> {
        let now = self.now();
        let _w = self.sqlite_write_turn(Priority::Bulk).await;
        queue_destination::Entity::update_many()
            .col_expr(
                queue_destination::Column::RetryRequestedAt,
                Expr::value(None::<i64>),
            )
            .filter(queue_destination::Column::Domain.eq(domain))
            .filter(queue_destination::Column::RetryRequestedAt.is_not_null())
            .exec(self.wdb())
            .await?;
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
    pub async fn queue_unclaim(&self, owner: &str, ids: &[QueueId]) -> CoreResult<()> {
        queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LockOwner, Expr::value(None::<String>))
            .col_expr(queue_entry::Column::LeaseUntil, Expr::value(None::<i64>))
            // A claim moved it to the lease's end: due again now.
            .col_expr(queue_entry::Column::NextAttemptAt, Expr::value(self.now()))
            .filter(queue_entry::Column::Id.is_in(ids.iter().copied()))
            .filter(queue_entry::Column::LockOwner.eq(owner))
            .exec(self.wdb())
            .await?;
        Ok(())
    }
}
