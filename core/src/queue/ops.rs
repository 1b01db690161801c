//! What an operator does to the queue (CLI and admin pages): list, count,
//! retry now, hold, release and delete entries or whole destinations.

use super::finish::{insert_logs, log_row};
use crate::ids::{BlobId, QueueId};
use std::collections::HashMap;

use super::*;

pub(super) fn target_cond(t: &Target) -> Condition {
    match t {
        Target::Entry(id) => Condition::all().add(queue_entry::Column::Id.eq(*id)),
        Target::Domain(d) => {
            Condition::all().add(queue_entry::Column::Domain.eq(d.to_ascii_lowercase()))
        }
    }
}

impl Core {
    pub(crate) async fn queue_entry(&self, id: QueueId) -> CoreResult<Option<QueueEntry>> {
        Ok(queue_entry::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(QueueEntry::from))
    }

    /// Entries, oldest first.
    pub(crate) async fn queue_list(&self, f: &QueueFilter) -> CoreResult<Vec<QueueEntry>> {
        let mut q = queue_entry::Entity::find();
        if let Some(d) = &f.domain {
            q = q.filter(queue_entry::Column::Domain.eq(d.to_ascii_lowercase()));
        }
        if let Some(l) = f.lane {
            q = q.filter(queue_entry::Column::Lane.eq(l.as_str()));
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        // Oldest first by id (ids grow with insertion): the primary key's
        // order, where ordering by created_at sorted the whole queue for
        // every page.
        Ok(q.order_by_asc(queue_entry::Column::Id)
            .offset(f.offset)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(QueueEntry::from)
            .collect())
    }

    /// The numbers an operator needs first ("how many, where, since
    /// when"): counts by status, lane and destination, and the oldest entry's age:
    /// what `tern queue stats`, the admin queue page and `/metrics` show.
    /// One pass over the `(status, lane, domain, ..)` index, in its order
    /// (nothing sorted, no table row read), and one lookup by id: under
    /// 100 ms at 340,000 entries, where a count per lane, a GROUP BY
    /// domain and a MIN over an unindexed column took 140 ms.
    pub(crate) async fn queue_stats(&self) -> CoreResult<QueueStats> {
        let db = self.db();
        let groups: Vec<(String, String, String, i64)> = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Status)
            .column(queue_entry::Column::Lane)
            .column(queue_entry::Column::Domain)
            .column_as(queue_entry::Column::Id.count(), "n")
            .group_by(queue_entry::Column::Status)
            .group_by(queue_entry::Column::Lane)
            .group_by(queue_entry::Column::Domain)
            .into_tuple()
            .all(db)
            .await?;
        let mut total = 0u64;
        let mut held = 0u64;
        let mut lanes: HashMap<String, u64> = HashMap::new();
        let mut domains: HashMap<String, u64> = HashMap::new();
        for (status, lane, domain, n) in groups {
            let n = u64::try_from(n).unwrap_or(0);
            total += n;
            if status == QueueStatus::Held.as_str() {
                held += n;
            }
            *lanes.entry(lane).or_default() += n;
            *domains.entry(domain).or_default() += n;
        }
        let by_lane = Lane::ALL
            .into_iter()
            .map(|l| {
                (
                    l.as_str().to_owned(),
                    lanes.get(l.as_str()).copied().unwrap_or(0),
                )
            })
            .collect();
        let mut by_domain: Vec<(String, u64)> = domains.into_iter().collect();
        by_domain.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        // Ids grow with insertion, so the lowest id is the oldest entry
        // (across nodes, to within their clocks' skew): a primary-key
        // lookup instead of a scan for MIN(created_at).
        let oldest_created_at: Option<i64> = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::CreatedAt)
            .order_by_asc(queue_entry::Column::Id)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        Ok(QueueStats {
            total,
            held,
            by_lane,
            by_domain,
            oldest_created_at,
        })
    }

    /// Makes entries due now. For a domain this also forgets that it was
    /// unreachable, so the runner tries it at once. A domain's retry lane
    /// is not rewritten: the destination records the request and the
    /// claims honour it (migration 000019), so retrying 340,000 entries is
    /// one small write. Its fresh and bounce entries (few: an unreachable
    /// destination's fresh mail moves to the retry lane) are made due one
    /// by one as before. Returns how many entries the request covers.
    pub(crate) async fn queue_retry(&self, t: &Target) -> CoreResult<u64> {
        let now = self.now();
        let txn = self.write_txn_at(Priority::Urgent).await?;
        let mut cond = target_cond(t);
        if let Target::Domain(_) = t {
            cond = cond.add(queue_entry::Column::Lane.ne(Lane::Retry.as_str()));
        }
        let mut n = queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::NextAttemptAt, Expr::value(now))
            .filter(cond)
            .exec(&txn)
            .await?
            .rows_affected;
        if let Target::Domain(d) = t {
            let domain = d.to_ascii_lowercase();
            queue_destination::Entity::insert(queue_destination::ActiveModel {
                domain: Set(domain.clone()),
                held: Set(false),
                concurrency: Set(0),
                ceiling: Set(None),
                failures: Set(0),
                last_reply: Set(None),
                last_attempt_at: Set(None),
                next_attempt_at: Set(0),
                updated_at: Set(now),
                retry_requested_at: Set(Some(now)),
            })
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(queue_destination::Column::Domain)
                    .update_columns([
                        queue_destination::Column::NextAttemptAt,
                        queue_destination::Column::Failures,
                        queue_destination::Column::UpdatedAt,
                        queue_destination::Column::RetryRequestedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            n += queue_entry::Entity::find()
                .filter(queue_entry::Column::Domain.eq(domain))
                .filter(queue_entry::Column::Lane.eq(Lane::Retry.as_str()))
                .count(&txn)
                .await?;
        }
        txn.commit().await?;
        self.queue_wake_everywhere().await;
        Ok(n)
    }

    /// Holds entries: the runner leaves them alone until released. Holding
    /// a domain also holds mail queued for it later.
    pub(crate) async fn queue_hold(&self, t: &Target) -> CoreResult<u64> {
        match t {
            Target::Entry(_) => self.set_status(t, QueueStatus::Held.as_str()).await,
            Target::Domain(d) => {
                self.set_destination_held(d, true).await?;
                self.count_target(t).await
            }
        }
    }

    pub(crate) async fn queue_release(&self, t: &Target) -> CoreResult<u64> {
        let n = match t {
            Target::Entry(_) => self.set_status(t, QueueStatus::Queued.as_str()).await?,
            Target::Domain(d) => {
                self.set_destination_held(d, false).await?;
                // Entries held one by one stay held: releasing the domain
                // undoes the domain hold only.
                self.count_target(t).await?
            }
        };
        self.queue_wake_everywhere().await;
        Ok(n)
    }

    /// Deletes entries without a DSN (an operator's decision), logging each.
    pub(crate) async fn queue_delete(&self, t: &Target) -> CoreResult<u64> {
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
        let ids: Vec<QueueId> = rows.iter().map(|r| r.id).collect();
        let blobs: Vec<BlobId> = rows.iter().map(|r| r.blob_id).collect();
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
}
