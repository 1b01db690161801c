//! What became of each recipient of a message a user sent, for the
//! webmail's Sent folder: stored in a mailbox here, waiting in the queue,
//! retrying (with the last reply and the next attempt), delivered (with
//! the remote host's reply) or bounced (with the reason). It comes from
//! the queue and the delivery log, found by Message-ID, never from parsing
//! bounces. Only rows whose sender the account may send as are shown: a
//! Message-ID copied from someone else's mail shows nothing of theirs.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::directory::AccountRef;
use crate::entities::{delivery_log, queue_entry};
use crate::queue::LogOutcome;
use crate::routing::Route;
use crate::{Core, CoreResult};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptState {
    /// Stored in a mailbox on this server.
    Local,
    /// In the queue, not tried yet. `waiting` when its destination is
    /// known not to answer: the reason, and when it is tried next.
    Queued {
        since: i64,
        waiting: Option<(String, i64)>,
    },
    /// Tried and deferred.
    Retrying {
        attempts: i32,
        last_reply: String,
        next_attempt_at: i64,
    },
    Delivered {
        host: String,
        reply: String,
        at: i64,
    },
    /// Refused for good, or given up on.
    Bounced { reason: String, at: i64 },
    /// Taken out of the queue by the postmaster.
    Removed { at: i64 },
    /// Nothing on record (sent before the log was kept, or pruned).
    Unknown,
}

impl RcptState {
    /// One word for lists: `delivered`, `pending`, `bounced`, `unknown`.
    pub fn class(&self) -> &'static str {
        match self {
            RcptState::Local | RcptState::Delivered { .. } => "delivered",
            RcptState::Queued { .. } | RcptState::Retrying { .. } => "pending",
            RcptState::Bounced { .. } | RcptState::Removed { .. } => "bounced",
            RcptState::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptStatus {
    pub rcpt: String,
    pub state: RcptState,
}

/// A message's recipients counted by [`RcptState::class`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SentSummary {
    pub delivered: usize,
    pub pending: usize,
    pub bounced: usize,
}

impl SentSummary {
    /// `delivered`, `pending`, `bounced` or `partly bounced`; None with
    /// nothing on record.
    pub fn word(&self) -> Option<&'static str> {
        match (self.delivered, self.pending, self.bounced) {
            (0, 0, 0) => None,
            (_, 0, 0) => Some("delivered"),
            (0, 0, _) => Some("bounced"),
            (_, 0, _) => Some("partly bounced"),
            (_, _, 0) => Some("pending"),
            _ => Some("pending, partly bounced"),
        }
    }
}

impl Core {
    /// Each recipient of the message `message_id` (without angle
    /// brackets) that `account` sent: the header's `recipients` (To, Cc),
    /// and any others the queue or the log knows (Bcc), in that order.
    pub async fn delivery_status(
        &self,
        account: &AccountRef,
        message_id: &str,
        recipients: &[String],
    ) -> CoreResult<Vec<RcptStatus>> {
        let mut known = self.remote_states(account, &[message_id]).await?;
        let remote = known.remove(message_id).unwrap_or_default();
        let mut out: Vec<RcptStatus> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in recipients {
            let key = r.to_ascii_lowercase();
            if !seen.insert(key.clone()) {
                continue;
            }
            let state = match remote.iter().find(|(a, _)| a.eq_ignore_ascii_case(r)) {
                Some((_, s)) => s.clone(),
                None => match self.route(r).await? {
                    Route::Account(_) | Route::Alias { .. } | Route::Catchall { .. } => {
                        RcptState::Local
                    }
                    _ => RcptState::Unknown,
                },
            };
            out.push(RcptStatus {
                rcpt: r.clone(),
                state,
            });
        }
        for (rcpt, state) in remote {
            if seen.insert(rcpt.to_ascii_lowercase()) {
                out.push(RcptStatus { rcpt, state });
            }
        }
        Ok(out)
    }

    /// For a page of Sent: each message's remote recipients counted by
    /// state. Local recipients are not counted (they are delivered when
    /// the message is accepted); a message with only local ones has no
    /// entry.
    pub async fn sent_summaries(
        &self,
        account: &AccountRef,
        message_ids: &[&str],
    ) -> CoreResult<HashMap<String, SentSummary>> {
        let states = self.remote_states(account, message_ids).await?;
        Ok(states
            .into_iter()
            .map(|(id, rcpts)| {
                let mut s = SentSummary::default();
                for (_, st) in rcpts {
                    match st.class() {
                        "delivered" => s.delivered += 1,
                        "pending" => s.pending += 1,
                        "bounced" => s.bounced += 1,
                        _ => {}
                    }
                }
                (id, s)
            })
            .collect())
    }

    /// Message-ID -> (recipient, state) for the remote recipients on
    /// record: a queue entry wins (the mail is still on its way), else the
    /// log's last word.
    async fn remote_states(
        &self,
        account: &AccountRef,
        message_ids: &[&str],
    ) -> CoreResult<HashMap<String, Vec<(String, RcptState)>>> {
        let ids: Vec<String> = message_ids
            .iter()
            .filter(|m| !m.is_empty())
            .map(|m| m.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let entries = queue_entry::Entity::find()
            .filter(queue_entry::Column::MessageId.is_in(ids.clone()))
            .order_by_asc(queue_entry::Column::Id)
            .all(self.db())
            .await?;
        let log = delivery_log::Entity::find()
            .filter(delivery_log::Column::MessageId.is_in(ids))
            .order_by_asc(delivery_log::Column::Id)
            .all(self.db())
            .await?;
        // Whose mail it is: asked once per sender address.
        let mut mine: HashMap<String, bool> = HashMap::new();
        for from in entries
            .iter()
            .map(|e| &e.mail_from)
            .chain(log.iter().map(|l| &l.mail_from))
        {
            if !mine.contains_key(from) {
                let ok = !from.is_empty() && self.may_send_as(account, from).await?;
                mine.insert(from.clone(), ok);
            }
        }
        let mut out: HashMap<String, Vec<(String, RcptState)>> = HashMap::new();
        let mut set = |mid: &str, rcpt: &str, state: RcptState, replace: bool| {
            let v = out.entry(mid.to_owned()).or_default();
            match v.iter_mut().find(|(r, _)| r.eq_ignore_ascii_case(rcpt)) {
                Some(slot) if replace => slot.1 = state,
                Some(_) => {}
                None => v.push((rcpt.to_owned(), state)),
            }
        };
        for l in log.iter().filter(|l| mine[&l.mail_from]) {
            let state = match LogOutcome::parse(&l.outcome) {
                Some(LogOutcome::Delivered) => RcptState::Delivered {
                    host: l.remote_host.clone().unwrap_or_default(),
                    reply: l.reply.clone(),
                    at: l.created_at,
                },
                Some(LogOutcome::Failed | LogOutcome::Expired) => RcptState::Bounced {
                    reason: l.reply.clone(),
                    at: l.created_at,
                },
                Some(LogOutcome::Deleted) => RcptState::Removed { at: l.created_at },
                // A deferral alone: the entry that follows says more.
                _ => continue,
            };
            set(&l.message_id, &l.rcpt_to, state, true);
        }
        for e in entries.iter().filter(|e| mine[&e.mail_from]) {
            let state = if e.attempts == 0 {
                RcptState::Queued {
                    since: e.created_at,
                    waiting: e.last_error.clone().map(|r| (r, e.next_attempt_at)),
                }
            } else {
                RcptState::Retrying {
                    attempts: e.attempts,
                    last_reply: e.last_error.clone().unwrap_or_default(),
                    next_attempt_at: e.next_attempt_at,
                }
            };
            set(&e.message_id, &e.rcpt_to, state, true);
        }
        Ok(out)
    }
}
