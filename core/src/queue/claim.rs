//! Claiming work: a worker takes the oldest due entry of its lane with
//! its siblings (same message, sender and destination) under a lease, so
//! that N workers on N nodes never hold one row at once (see the module
//! above for how each database makes the claim atomic).

use super::*;
use std::collections::HashMap;

use crate::ids::{BlobId, QueueId};

/// Fresh mail is urgent; the retry and bounce lanes are background work.
pub(super) fn priority(lane: Lane) -> Priority {
    match lane {
        Lane::Fresh => Priority::Urgent,
        Lane::Retry | Lane::Bounce => Priority::Bulk,
    }
}

pub(super) fn claimable(now: i64) -> Condition {
    claimable_after_retry(now, None)
}

/// [`claimable`], for a destination an operator asked to retry at
/// `retry_requested_at`: entries last tried before then (or never) are
/// due too. Entries in flight are not: their claim's lease still holds.
pub(super) fn claimable_after_retry(now: i64, retry_requested_at: Option<i64>) -> Condition {
    let due = match retry_requested_at {
        None => Condition::all().add(queue_entry::Column::NextAttemptAt.lte(now)),
        Some(at) => Condition::any()
            .add(queue_entry::Column::NextAttemptAt.lte(now))
            .add(queue_entry::Column::LastAttemptAt.is_null())
            // The clock has whole seconds: an entry tried in the second of
            // the request counts as tried before it.
            .add(queue_entry::Column::LastAttemptAt.lte(at)),
    };
    Condition::all()
        .add(queue_entry::Column::Status.eq(QueueStatus::Queued.as_str()))
        .add(due)
        .add(
            Condition::any()
                .add(queue_entry::Column::LeaseUntil.is_null())
                .add(queue_entry::Column::LeaseUntil.lte(now)),
        )
}

/// Domains the runner must skip: held by an operator, or unreachable until
/// a time still in the future.
pub(super) fn blocked_domains(now: i64) -> sea_orm::sea_query::SelectStatement {
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

/// A lane's claimable entries in due order (no columns chosen yet). The
/// due-order indexes (migration 000018) give the order without a sort,
/// however long the backlog.
fn due_order(spec: &ClaimSpec<'_>, now: i64) -> sea_orm::Select<queue_entry::Entity> {
    let mut q = queue_entry::Entity::find()
        .select_only()
        .filter(spec.claimable(now))
        .filter(queue_entry::Column::Lane.eq(spec.lane.as_str()))
        .filter(queue_entry::Column::Domain.is_not_in(spec.exclude.iter().cloned()))
        .filter(queue_entry::Column::Domain.not_in_subquery(blocked_domains(now)));
    if let Some(d) = spec.domain {
        q = q.filter(queue_entry::Column::Domain.eq(d));
    }
    q.order_by_asc(queue_entry::Column::NextAttemptAt)
        .order_by_asc(queue_entry::Column::Id)
}

/// The retry lane's destination of the turn, with its operator retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryTurn {
    pub domain: String,
    pub retry_requested_at: Option<i64>,
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
    /// The destination's operator retry ([`Destination::retry_requested_at`]),
    /// with `domain` set: its entries last tried before then are due.
    pub retry_requested_at: Option<i64>,
}

impl ClaimSpec<'_> {
    fn claimable(&self, now: i64) -> Condition {
        match self.domain {
            Some(_) => claimable_after_retry(now, self.retry_requested_at),
            None => claimable(now),
        }
    }
}

impl Core {
    /// Claims the oldest claimable entry of a lane together with its
    /// siblings (same message, sender and destination), so that one SMTP
    /// transaction carries all of a message's recipients at one domain.
    /// Returns an empty list when nothing is due.
    pub async fn queue_claim(&self, spec: &ClaimSpec<'_>) -> CoreResult<Vec<QueueEntry>> {
        let now = self.now();
        // The oldest due entry of the lane, as a query for one column.
        let head_of = |col: queue_entry::Column| due_order(spec, now).column(col).limit(1);
        let head = head_of(queue_entry::Column::Id);
        // Look before taking the write lock: most passes over an idle lane
        // find nothing, and they must not queue behind busy writers.
        let found: Option<(QueueId, BlobId, String, String, bool)> = head
            .clone()
            .column(queue_entry::Column::BlobId)
            .column(queue_entry::Column::MailFrom)
            .column(queue_entry::Column::Domain)
            .column(queue_entry::Column::RequireTls)
            .into_tuple()
            .one(self.db())
            .await?;
        let Some((_, blob_id, mail_from, domain, require_tls)) = found else {
            return Ok(Vec::new());
        };
        if self.backend() == Backend::Sqlite {
            // One statement for the head's whole group: one commit per
            // claim, not two. SQLite has one writer, and one dispatcher
            // claims for a lane, so the group read above is still there
            // (the UPDATE checks each row is claimable all the same). The
            // group's columns go in as values, not subqueries, so the
            // planner takes the (blob, domain, lane, status) index: with
            // subqueries it walked every entry of the domain (migration
            // 000017).
            let group = queue_entry::Entity::find()
                .select_only()
                .column(queue_entry::Column::Id)
                .filter(spec.claimable(now))
                .filter(queue_entry::Column::Lane.eq(spec.lane.as_str()))
                .filter(queue_entry::Column::BlobId.eq(blob_id))
                .filter(queue_entry::Column::MailFrom.eq(mail_from))
                .filter(queue_entry::Column::Domain.eq(domain))
                .filter(queue_entry::Column::RequireTls.eq(require_tls))
                .order_by_asc(queue_entry::Column::Id)
                .limit(spec.max_rcpts.max(1));
            let mut group = self.claim_ids(group, spec, now).await?;
            group.sort_by_key(|e| e.id);
            return Ok(group);
        }
        let first = self.claim_ids(head, spec, now).await?;
        let Some(first) = first.into_iter().next() else {
            return Ok(Vec::new());
        };
        let siblings = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Id)
            .filter(spec.claimable(now))
            .filter(queue_entry::Column::Lane.eq(spec.lane.as_str()))
            .filter(queue_entry::Column::BlobId.eq(first.blob_id))
            .filter(queue_entry::Column::MailFrom.eq(first.mail_from.clone()))
            .filter(queue_entry::Column::Domain.eq(first.domain.clone()))
            .filter(queue_entry::Column::RequireTls.eq(first.require_tls))
            .order_by_asc(queue_entry::Column::Id)
            .limit(spec.max_rcpts.saturating_sub(1));
        let mut group = vec![first];
        if spec.max_rcpts > 1 {
            group.extend(self.claim_ids(siblings, spec, now).await?);
        }
        group.sort_by_key(|e| e.id);
        Ok(group)
    }

    /// Up to `groups` transactions' worth of a lane at once (each a group
    /// as [`Core::queue_claim`] makes), for a dispatcher with that many
    /// free workers: a backlog drains at the pace of its claims, and one
    /// statement for many groups is one write instead of many. On SQLite
    /// the lane's next due entries are read in due order and grouped by
    /// message, sender and destination (siblings are queued together, so
    /// they come in runs; a group split by the read is just two smaller
    /// transactions), then taken in one UPDATE that checks each row is
    /// still claimable. On PostgreSQL each group is its own `SKIP LOCKED`
    /// claim, so nodes claiming at once still never wait for each other.
    pub async fn queue_claim_groups(
        &self,
        spec: &ClaimSpec<'_>,
        groups: usize,
    ) -> CoreResult<Vec<Vec<QueueEntry>>> {
        if groups <= 1 || self.backend() != Backend::Sqlite {
            let mut out = Vec::new();
            for _ in 0..groups.max(1) {
                let g = self.queue_claim(spec).await?;
                if g.is_empty() {
                    break;
                }
                out.push(g);
            }
            return Ok(out);
        }
        let now = self.now();
        let max_rcpts = spec.max_rcpts.max(1);
        let rows: Vec<(QueueId, BlobId, String, String, bool)> = due_order(spec, now)
            .column(queue_entry::Column::Id)
            .column(queue_entry::Column::BlobId)
            .column(queue_entry::Column::MailFrom)
            .column(queue_entry::Column::Domain)
            .column(queue_entry::Column::RequireTls)
            .limit(max_rcpts.saturating_mul(groups as u64))
            .into_tuple()
            .all(self.db())
            .await?;
        // REQUIRETLS is part of the group: identical bytes (one blob)
        // queued once with it and once without are two transactions.
        type Key = (BlobId, String, String, bool);
        let mut plan: Vec<(Key, Vec<QueueId>)> = Vec::new();
        for (id, blob, from, domain, require_tls) in rows {
            let key = (blob, from, domain, require_tls);
            match plan.iter().position(|(k, _)| *k == key) {
                Some(i) if (plan[i].1.len() as u64) < max_rcpts => plan[i].1.push(id),
                Some(_) => {}
                None if plan.len() < groups => plan.push((key, vec![id])),
                None => {}
            }
        }
        let ids: Vec<QueueId> = plan
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let select = queue_entry::Entity::find()
            .select_only()
            .column(queue_entry::Column::Id)
            .filter(spec.claimable(now))
            .filter(queue_entry::Column::Id.is_in(ids));
        let mut claimed: HashMap<QueueId, QueueEntry> = self
            .claim_ids(select, spec, now)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        Ok(plan
            .into_iter()
            .map(|(_, ids)| {
                let mut g: Vec<QueueEntry> =
                    ids.iter().filter_map(|id| claimed.remove(id)).collect();
                g.sort_by_key(|e| e.id);
                g
            })
            .filter(|g| !g.is_empty())
            .collect())
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
        // The next attempt moves to the lease's end too: a claimed entry
        // leaves the head of the due order, so the next claim's index range
        // (`next_attempt_at <= now`) starts past every entry in flight
        // instead of stepping over thousands of them (on PostgreSQL, each
        // a heap fetch to read its lease). If the worker dies, the entry
        // is due again exactly when its lease runs out; a finish sets the
        // real next attempt, and giving an entry back makes it due now.
        let rows = queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LockOwner, Expr::value(spec.owner))
            .col_expr(
                queue_entry::Column::LeaseUntil,
                Expr::value(now + spec.lease_secs),
            )
            .col_expr(
                queue_entry::Column::NextAttemptAt,
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
    /// A destination's operator retry whose entries have all been tried is
    /// forgotten here.
    pub async fn queue_next_retry_domain(
        &self,
        after: &str,
        exclude: &[String],
    ) -> CoreResult<Option<RetryTurn>> {
        let now = self.now();
        let mut blocked = std::collections::HashSet::new();
        let mut requested = HashMap::new();
        let rows: Vec<(String, bool, i64, Option<i64>)> = queue_destination::Entity::find()
            .select_only()
            .column(queue_destination::Column::Domain)
            .column(queue_destination::Column::Held)
            .column(queue_destination::Column::NextAttemptAt)
            .column(queue_destination::Column::RetryRequestedAt)
            .filter(
                Condition::any()
                    .add(queue_destination::Column::Held.eq(true))
                    .add(queue_destination::Column::NextAttemptAt.gt(now))
                    .add(queue_destination::Column::RetryRequestedAt.is_not_null()),
            )
            .into_tuple()
            .all(self.db())
            .await?;
        for (domain, held, next_at, retry_at) in rows {
            if held || next_at > now {
                blocked.insert(domain);
            } else if let Some(at) = retry_at {
                requested.insert(domain, at);
            }
        }
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
                let retry_requested_at = requested.get(&d).copied();
                let due: Option<QueueId> = queue_entry::Entity::find()
                    .select_only()
                    .column(queue_entry::Column::Id)
                    .filter(claimable_after_retry(now, retry_requested_at))
                    .filter(queue_entry::Column::Lane.eq(Lane::Retry.as_str()))
                    .filter(queue_entry::Column::Domain.eq(d.as_str()))
                    .order_by_asc(queue_entry::Column::NextAttemptAt)
                    .limit(1)
                    .into_tuple()
                    .one(self.db())
                    .await?;
                if due.is_some() {
                    return Ok(Some(RetryTurn {
                        domain: d,
                        retry_requested_at,
                    }));
                }
                if let Some(at) = retry_requested_at {
                    // Every entry has been tried since (or is in flight,
                    // and its lease covers it): the request is answered.
                    // Kept, each turn would walk the whole destination.
                    self.forget_retry_request(&d, at).await?;
                }
            }
            if wrapped && d.as_str() == after {
                return Ok(None);
            }
            cursor = d;
        }
    }

    /// Clears a destination's operator retry, unless a newer one came in.
    pub(super) async fn forget_retry_request(&self, domain: &str, at: i64) -> CoreResult<()> {
        let _w = self.sqlite_write_turn(Priority::Bulk).await;
        queue_destination::Entity::update_many()
            .col_expr(
                queue_destination::Column::RetryRequestedAt,
                Expr::value(None::<i64>),
            )
            .filter(queue_destination::Column::Domain.eq(domain))
            .filter(queue_destination::Column::RetryRequestedAt.eq(at))
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    /// The stored bytes of a queued message.
    pub async fn queue_message_bytes(&self, blob_id: BlobId) -> CoreResult<Vec<u8>> {
        use crate::entities::blob;
        let b = blob::Entity::find_by_id(blob_id)
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("blob {blob_id}")))?;
        Ok(b.bytes)
    }
}
