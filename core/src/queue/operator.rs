//! The queue as operators and pages see it: [`Core::queue`].
//!
//! What the CLI (`tern queue ...`), the admin queue pages and `/metrics`
//! ask of the outbound queue, in one place: entries, counts, the delivery
//! log, destinations, and the operator commands. The runner's own work
//! (claiming, finishing, leases) stays on [`Core`]: it is the runner's
//! protocol with the store, not something an operator calls.

use super::{Destination, LogEntry, LogQuery, QueueEntry, QueueFilter, QueueStats, Target};
use crate::Core;
use crate::error::CoreResult;
use crate::ids::QueueId;

impl Core {
    /// The outbound queue's operator view.
    pub fn queue(&self) -> Queue<'_> {
        Queue { core: self }
    }
}

/// See the module doc.
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    core: &'a Core,
}

impl Queue<'_> {
    /// One entry, or None if it is not (or no longer) queued.
    pub async fn entry(&self, id: QueueId) -> CoreResult<Option<QueueEntry>> {
        self.core.queue_entry(id).await
    }

    /// A page of entries, by id.
    pub async fn list(&self, f: &QueueFilter) -> CoreResult<Vec<QueueEntry>> {
        self.core.queue_list(f).await
    }

    /// Counts per lane and status, the oldest entry, the busiest domains.
    pub async fn stats(&self) -> CoreResult<QueueStats> {
        self.core.queue_stats().await
    }

    /// How many entries there are (every lane and status).
    pub async fn len(&self) -> CoreResult<u64> {
        self.core.queue_len().await
    }

    /// True when nothing is queued.
    pub async fn is_empty(&self) -> CoreResult<bool> {
        Ok(self.len().await? == 0)
    }

    /// One message's attempts and what is still queued of it, by queue
    /// id or Message-ID.
    pub async fn trace(&self, key: &str) -> CoreResult<super::Trace> {
        self.core.delivery_trace(key).await
    }

    /// Attempts of the delivery log, newest first.
    pub async fn log(&self, q: &LogQuery) -> CoreResult<Vec<LogEntry>> {
        self.core.delivery_log(q).await
    }

    /// What is known of one destination (concurrency, ceiling, failures).
    pub async fn destination(&self, domain: &str) -> CoreResult<Option<Destination>> {
        self.core.queue_destination(domain).await
    }

    pub async fn destinations(&self) -> CoreResult<Vec<Destination>> {
        self.core.queue_destinations().await
    }

    /// Due now: the next attempt is moved to this moment.
    pub async fn retry(&self, t: &Target) -> CoreResult<u64> {
        self.core.queue_retry(t).await
    }

    /// Held entries are not delivered until released.
    pub async fn hold(&self, t: &Target) -> CoreResult<u64> {
        self.core.queue_hold(t).await
    }

    pub async fn release(&self, t: &Target) -> CoreResult<u64> {
        self.core.queue_release(t).await
    }

    /// Removed without a bounce.
    pub async fn delete(&self, t: &Target) -> CoreResult<u64> {
        self.core.queue_delete(t).await
    }
}
