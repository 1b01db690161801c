//! Delivery of one accepted message: one transaction that stores the bytes
//! once, gives each local account's INBOX a new UID and queues one row per
//! remote recipient. Only after the commit does the caller answer `250`
//! (DESIGN.md rule 1), and only after the commit do subscribers hear of it.

use crate::ids::{AccountId, BlobId, MailboxId, ModSeq, QueueId, Uid};
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use crate::Core;
use crate::address::Address;
use crate::entities::{mailbox, queue_destination, queue_entry};
use crate::error::{CoreError, CoreResult};
use crate::events::{ChangeEvent, ChangeKind};
use crate::mailboxes::INBOX;
use crate::messages::{self, NewMessage};
use crate::meta::MessageMeta;
use crate::queue::{Lane, QueueStatus};

// The envelope lives in its own module, which the queue reads too, so that
// delivery (which queues) and the queue (which delivers) do not import each
// other; its old path stays.
pub use crate::envelope::{Envelope, LocalCopy};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub account_id: AccountId,
    pub mailbox_id: MailboxId,
    pub uid: Uid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// `None` when rules discarded every copy and nothing was kept.
    pub blob_id: Option<BlobId>,
    pub delivered: Vec<Delivered>,
    pub queued: Vec<QueueId>,
}

/// How an accepted message was made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// In the node's spool; the ingest worker stores it.
    Spooled(crate::spool::SpoolId),
    /// Straight into the store (no spool attached).
    Delivered(DeliveryReceipt),
}

impl std::fmt::Display for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::Spooled(id) => write!(f, "{id}"),
            Accepted::Delivered(r) => match r.blob_id {
                Some(b) => write!(f, "blob {b}"),
                None => f.write_str("discarded by the recipient's rules"),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// `452 4.3.1`: the spool is full.
    #[error("{0}")]
    SpoolFull(String),
    /// `552 5.2.2`.
    #[error("mailbox full: quota exceeded")]
    OverQuota,
    /// `451 4.3.0`: nothing was accepted.
    #[error("{0}")]
    Unavailable(String),
}

impl Core {
    /// Accepts one message for its recipients: into the spool when one is
    /// attached (durable when this returns `Ok`, whatever the store's
    /// state), otherwise by [`Core::deliver`]. A recipient known to be over
    /// quota is refused at once when the store can tell; one that goes
    /// over between now and ingest gets a DSN.
    pub async fn accept(&self, env: &Envelope, raw: &[u8]) -> Result<Accepted, AcceptError> {
        let Some(spool) = self.spool() else {
            return match self.deliver(env, raw).await {
                Ok(r) => Ok(Accepted::Delivered(r)),
                Err(CoreError::OverQuota) => Err(AcceptError::OverQuota),
                Err(e) => Err(AcceptError::Unavailable(e.to_string())),
            };
        };
        if env.local.is_empty() && env.remote.is_empty() {
            return Err(AcceptError::Unavailable(
                "a message needs at least one recipient".into(),
            ));
        }
        // The store's answer is advice here: down or not, the message goes
        // to the spool; only a known "over quota" stops it. Right after a
        // failure the store is not asked at all.
        // A current routing copy knows which accounts have a quota at all;
        // the others need no query.
        let copy = self.current_directory_copy();
        if !self.store_recently_down() {
            for c in env.local_copies() {
                if copy
                    .as_ref()
                    .is_some_and(|d| !d.quotas.contains_key(&c.account_id))
                {
                    continue;
                }
                if let Err(CoreError::OverQuota) =
                    messages::check_quota(self.db(), c.account_id, raw.len() as i64).await
                {
                    return Err(AcceptError::OverQuota);
                }
            }
        }
        match spool.append(env, raw, self.now()).await {
            Ok(id) => Ok(Accepted::Spooled(id)),
            Err(e @ crate::spool::SpoolError::Full { .. }) => {
                Err(AcceptError::SpoolFull(e.to_string()))
            }
            Err(e) => Err(AcceptError::Unavailable(e.to_string())),
        }
    }

    /// Delivers one accepted message in one transaction and announces the
    /// new mail after the commit.
    pub async fn deliver(&self, env: &Envelope, raw: &[u8]) -> CoreResult<DeliveryReceipt> {
        let txn = self.write_txn().await?;
        let receipt = self.deliver_one(&txn, env, raw, self.now(), true).await?;
        txn.commit().await?;
        self.announce(&receipt);
        Ok(receipt)
    }

    /// Publishes the change events of a committed delivery and wakes the
    /// queue runner when something was queued.
    pub(crate) fn announce(&self, receipt: &DeliveryReceipt) {
        for d in &receipt.delivered {
            self.publish(ChangeEvent {
                account_id: d.account_id,
                mailbox_id: Some(d.mailbox_id),
                kind: ChangeKind::NewMessages { uids: vec![d.uid] },
            });
        }
        if !receipt.queued.is_empty() {
            self.queue_wake();
        }
    }

    /// The body of [`Core::deliver`] inside a caller's transaction, so the
    /// queue can store a bounce in the same commit that retires the entry
    /// it reports on.
    pub(crate) async fn deliver_in(
        &self,
        txn: &DatabaseTransaction,
        env: &Envelope,
        raw: &[u8],
    ) -> CoreResult<DeliveryReceipt> {
        self.deliver_one(txn, env, raw, self.now(), false).await
    }

    /// [`Core::deliver_in`] with the time the message was accepted, which
    /// becomes its internal date (a spooled message keeps the time of its
    /// `250`, not the time it reached the store).
    pub(crate) async fn deliver_in_at(
        &self,
        txn: &DatabaseTransaction,
        env: &Envelope,
        raw: &[u8],
        received_at: i64,
    ) -> CoreResult<DeliveryReceipt> {
        self.deliver_one(txn, env, raw, received_at, true).await
    }

    /// One message through [`Core::deliver_batch_in`]; `rules`: whether
    /// the recipients' Sieve rules run (not for bounces and the like).
    pub(crate) async fn deliver_one(
        &self,
        txn: &DatabaseTransaction,
        env: &Envelope,
        raw: &[u8],
        received_at: i64,
        rules: bool,
    ) -> CoreResult<DeliveryReceipt> {
        let item = [BatchItem {
            env,
            raw,
            received_at,
            rules,
        }];
        match self.deliver_batch_in(txn, &item).await?.pop() {
            Some(BatchOutcome::Stored(r)) => Ok(r),
            Some(BatchOutcome::Refused(e)) => Err(e),
            None => Err(CoreError::Unavailable(
                "the delivery lost its message".into(),
            )),
        }
    }

    /// Number of queue rows, for tests and the admin overview.
    pub(crate) async fn queue_len(&self) -> CoreResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(queue_entry::Entity::find().count(self.db()).await?)
    }

    /// (number of blobs, number of message rows): storage accounting.
    pub async fn storage_counts(&self) -> CoreResult<(u64, u64)> {
        use crate::entities::{blob, message};
        use sea_orm::PaginatorTrait;
        Ok((
            blob::Entity::find().count(self.db()).await?,
            message::Entity::find().count(self.db()).await?,
        ))
    }
}

/// Destinations known to be unreachable, looked up once per domain for a
/// delivery or a batch: `Some((next attempt, last reply))` when waiting.
type DeadDestinations = std::collections::HashMap<String, Option<(i64, Option<String>)>>;

/// Queues one row per remote recipient.
async fn queue_remote(
    txn: &DatabaseTransaction,
    env: &Envelope,
    remote: &[Address],
    blob_id: BlobId,
    meta: &MessageMeta,
    now: i64,
    dead: &mut DeadDestinations,
) -> CoreResult<Vec<QueueId>> {
    // Bounces travel in their own lane so a flood of them can neither
    // delay nor be delayed by ordinary mail (issue: queue lanes).
    let lane = if env.mail_from.is_empty() {
        Lane::Bounce
    } else {
        Lane::Fresh
    };
    let mut queued = Vec::with_capacity(remote.len());
    for rcpt in remote {
        // Mail for a destination already known to be unreachable waits
        // in the retry lane from the start, with the reason, rather than
        // sitting in the fresh lane looking as if nobody had tried.
        let domain = rcpt.domain().to_owned();
        if !dead.contains_key(&domain) {
            let d = queue_destination::Entity::find_by_id(domain.clone())
                .one(txn)
                .await?
                .filter(|d| d.next_attempt_at > now)
                .map(|d| (d.next_attempt_at, d.last_reply));
            dead.insert(domain.clone(), d);
        }
        let (lane, next_attempt_at, last_error) = match (&dead[&domain], lane) {
            (Some((next, why)), Lane::Fresh) => (Lane::Retry, *next, why.clone()),
            _ => (lane, now, None),
        };
        let row = queue_entry::Entity::insert(queue_entry::ActiveModel {
            blob_id: Set(blob_id),
            mail_from: Set(env.mail_from.clone()),
            rcpt_to: Set(rcpt.to_string()),
            domain: Set(domain),
            lane: Set(lane.as_str().to_owned()),
            status: Set(QueueStatus::Queued.as_str().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(next_attempt_at),
            lock_owner: Set(None),
            lease_until: Set(None),
            last_error: Set(last_error),
            created_at: Set(now),
            message_id: Set(meta.message_id.clone()),
            delayed_dsn_sent: Set(false),
            last_attempt_at: Set(None),
            require_tls: Set(env.require_tls),
            ..Default::default()
        })
        .exec(txn)
        .await?;
        queued.push(row.last_insert_id);
    }
    Ok(queued)
}

/// One message of a batch delivery ([`Core::deliver_batch_in`]).
pub(crate) struct BatchItem<'a> {
    pub env: &'a Envelope,
    pub raw: &'a [u8],
    /// Becomes the internal date (the time of the `250`).
    pub received_at: i64,
    /// Run the recipients' Sieve rules (`rules`).
    pub rules: bool,
}

/// What a batch did with one item.
#[derive(Debug)]
pub(crate) enum BatchOutcome {
    Stored(DeliveryReceipt),
    /// Refused for good before any of it was written (a recipient over
    /// quota, an account or INBOX gone): the caller decides per recipient.
    Refused(CoreError),
}

/// Each account's Junk folder (special-use `\Junk`, RFC 6154), for those
/// that have one.
async fn junk_boxes(
    txn: &DatabaseTransaction,
    accounts: &[AccountId],
) -> CoreResult<std::collections::HashMap<AccountId, MailboxId>> {
    use sea_orm::QuerySelect;
    Ok(mailbox::Entity::find()
        .select_only()
        .column(mailbox::Column::AccountId)
        .column(mailbox::Column::Id)
        .filter(mailbox::Column::AccountId.is_in(accounts.iter().copied()))
        .filter(mailbox::Column::SpecialUse.eq("\\Junk"))
        .into_tuple::<(AccountId, MailboxId)>()
        .all(txn)
        .await?
        .into_iter()
        .collect())
}

impl Core {
    /// Delivers many messages in the caller's transaction, with the
    /// per-account and per-mailbox work done once for the batch: one read
    /// of the accounts (quota, usage) and their INBOXes, one UID and modseq
    /// allocation per INBOX, one usage update per account and one statement
    /// rooting every new thread. What is left per message is the blob, its
    /// index row and one row per copy (and a thread lookup for a reply).
    /// On the ingest path each statement costs a hand-off to the database
    /// driver and back, which was most of the time per message.
    ///
    /// Which items are refused is decided before anything is written, in
    /// order, so no savepoints are needed. An `Err` means the transaction
    /// must be abandoned; `Unavailable` ones are outages.
    pub(crate) fn deliver_batch_in<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        items: &'a [BatchItem<'a>],
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = CoreResult<Vec<BatchOutcome>>> + Send + 'a>,
    > {
        // Boxed: the messages rules send (forwards, replies) are delivered
        // by the same function, one level down and without rules.
        Box::pin(self.deliver_batch_inner(txn, items))
    }

    async fn deliver_batch_inner(
        &self,
        txn: &DatabaseTransaction,
        items: &[BatchItem<'_>],
    ) -> CoreResult<Vec<BatchOutcome>> {
        use crate::entities::account;
        use crate::rules::Place;
        use sea_orm::QuerySelect;
        use std::collections::{BTreeMap, HashMap};

        let copies: Vec<Vec<LocalCopy>> = items.iter().map(|i| i.env.local_copies()).collect();
        // Each copy's places: the default one, unless the account's rules
        // say otherwise (a folder, flags, several folders, or none).
        let plans = if items.iter().any(|i| i.rules) {
            let with_rules: Vec<Vec<LocalCopy>> = items
                .iter()
                .zip(&copies)
                .map(|(i, cs)| if i.rules { cs.clone() } else { Vec::new() })
                .collect();
            let its: Vec<(&Envelope, &[u8])> = items.iter().map(|i| (i.env, i.raw)).collect();
            self.plan_rules(txn, &its, &with_rules).await?
        } else {
            items.iter().map(|_| Default::default()).collect()
        };
        let places: Vec<Vec<Vec<Place>>> = plans
            .iter()
            .zip(&copies)
            .map(|(p, cs)| match &p.places {
                Some(ps) => ps.clone(),
                None => cs.iter().map(|_| vec![Place::default_place()]).collect(),
            })
            .collect();
        let ids: std::collections::BTreeSet<AccountId> =
            copies.iter().flatten().map(|c| c.account_id).collect();
        let (accounts, inboxes): (
            HashMap<AccountId, (i64, i64)>,
            HashMap<AccountId, MailboxId>,
        ) = if ids.is_empty() {
            Default::default()
        } else {
            let accounts = account::Entity::find()
                .select_only()
                .column(account::Column::Id)
                .column(account::Column::QuotaBytes)
                .column(account::Column::UsedBytes)
                .filter(account::Column::Id.is_in(ids.iter().copied()))
                .into_tuple::<(AccountId, i64, i64)>()
                .all(txn)
                .await?
                .into_iter()
                .map(|(id, quota, used)| (id, (quota, used)))
                .collect();
            let inboxes = mailbox::Entity::find()
                .select_only()
                .column(mailbox::Column::AccountId)
                .column(mailbox::Column::Id)
                .filter(mailbox::Column::AccountId.is_in(ids.iter().copied()))
                .filter(mailbox::Column::Name.eq(INBOX))
                .into_tuple::<(AccountId, MailboxId)>()
                .all(txn)
                .await?
                .into_iter()
                .collect();
            (accounts, inboxes)
        };

        // Quarantined copies go to the account's Junk folder (INBOX when
        // the user deleted it).
        let junk_ids: Vec<AccountId> = copies
            .iter()
            .flatten()
            .filter(|c| c.junk)
            .map(|c| c.account_id)
            .collect();
        let junk = if junk_ids.is_empty() {
            HashMap::new()
        } else {
            junk_boxes(txn, &junk_ids).await?
        };
        let target = |c: &LocalCopy, p: &Place| -> Option<MailboxId> {
            if let Some(m) = p.mailbox {
                return Some(m);
            }
            if c.junk
                && let Some(j) = junk.get(&c.account_id)
            {
                return Some(*j);
            }
            inboxes.get(&c.account_id).copied()
        };

        // Decide, in arrival order, counting what earlier items add.
        let mut used: HashMap<AccountId, i64> =
            accounts.iter().map(|(id, (_, u))| (*id, *u)).collect();
        let mut refusals: Vec<Option<CoreError>> = Vec::with_capacity(items.len());
        let mut per_box: BTreeMap<MailboxId, i64> = BTreeMap::new();
        for ((item, cs), ps) in items.iter().zip(&copies).zip(&places) {
            let refusal = (|| {
                if cs.is_empty() && item.env.remote.is_empty() {
                    return Some(CoreError::invalid(
                        "a delivery needs at least one recipient",
                    ));
                }
                let mut after = Vec::with_capacity(cs.len());
                for (c, cp) in cs.iter().zip(ps) {
                    let id = c.account_id;
                    let Some((quota, _)) = accounts.get(&id) else {
                        return Some(CoreError::NotFound(format!("account {id}")));
                    };
                    if !inboxes.contains_key(&id) {
                        return Some(CoreError::NotFound(format!("INBOX of account {id}")));
                    }
                    let size = item.raw.len() as i64
                        + messages::trace_header_len(&messages::trace_header_value(
                            &c.delivered_to,
                        ));
                    let now_used = used[&id] + size * cp.len() as i64;
                    if *quota > 0 && now_used > *quota && !cp.is_empty() {
                        return Some(CoreError::OverQuota);
                    }
                    after.push((id, now_used, cp.iter().map(|p| target(c, p))));
                }
                for (id, u, mailboxes) in after {
                    used.insert(id, u);
                    for m in mailboxes.flatten() {
                        *per_box.entry(m).or_default() += 1;
                    }
                }
                None
            })();
            refusals.push(refusal);
        }

        // UIDs and one modseq per INBOX, in mailbox order so two nodes'
        // batches lock rows in the same order on PostgreSQL.
        let mut next_uid: HashMap<MailboxId, (Uid, ModSeq)> = HashMap::new();
        for (mailbox_id, n) in &per_box {
            next_uid.insert(
                *mailbox_id,
                messages::allocate_uids(txn, *mailbox_id, *n).await?,
            );
        }

        let mut out = Vec::with_capacity(items.len());
        let mut roots = Vec::new();
        let mut usage: BTreeMap<AccountId, i64> = BTreeMap::new();
        let mut dead = DeadDestinations::default();
        for ((((item, cs), ps), refusal), plan) in items
            .iter()
            .zip(&copies)
            .zip(&places)
            .zip(refusals)
            .zip(plans)
        {
            if let Some(e) = refusal {
                out.push(BatchOutcome::Refused(e));
                continue;
            }
            let meta = self.message_meta(item.raw);
            let mut remote = item.env.remote.clone();
            remote.dedup();
            let n_places: usize = ps.iter().map(Vec::len).sum();
            let refs = (n_places + remote.len()) as i64;
            // Rules may have discarded every copy: then nothing is kept.
            let blob_id = if refs > 0 {
                Some(crate::blobs::put_blob(txn, item.raw, refs, &meta).await?)
            } else {
                None
            };
            let mut delivered = Vec::with_capacity(n_places);
            for (c, cp) in cs.iter().zip(ps) {
                let (Some(blob_id), false) = (blob_id, cp.is_empty()) else {
                    continue;
                };
                let delivered_to = messages::trace_header_value(&c.delivered_to);
                let size = item.raw.len() as i64 + messages::trace_header_len(&delivered_to);
                let thread_id = messages::find_thread(txn, c.account_id, &meta).await?;
                for p in cp {
                    let inbox = target(c, p)
                        .ok_or_else(|| CoreError::Unavailable("the batch lost a mailbox".into()))?;
                    let slot = next_uid
                        .get_mut(&inbox)
                        .ok_or_else(|| CoreError::Unavailable("UID plan lost a mailbox".into()))?;
                    let (uid, modseq) = *slot;
                    slot.0 = slot.0.next();
                    let id = messages::insert_message_row(
                        txn,
                        NewMessage {
                            mailbox_id: inbox,
                            uid,
                            modseq,
                            blob_id,
                            flags: p.flags,
                            keywords: &p.keywords,
                            internal_date: item.received_at,
                            size,
                            meta: &meta,
                            thread_id,
                            delivered_to: &delivered_to,
                        },
                    )
                    .await?;
                    if thread_id == 0 {
                        roots.push(id);
                    }
                    *usage.entry(c.account_id).or_default() += size;
                    delivered.push(Delivered {
                        account_id: c.account_id,
                        mailbox_id: inbox,
                        uid,
                    });
                }
            }
            let queued = match blob_id {
                Some(blob_id) => {
                    queue_remote(
                        txn,
                        item.env,
                        &remote,
                        blob_id,
                        &meta,
                        item.received_at,
                        &mut dead,
                    )
                    .await?
                }
                None => Vec::new(),
            };
            tracing::info!(
                message_id = %meta.message_id,
                size = item.raw.len(),
                local = delivered.len(),
                queued = queued.len(),
                "delivered"
            );
            let mut receipt = DeliveryReceipt {
                blob_id,
                delivered,
                queued,
            };
            self.remember_rule_keys(txn, &plan.remember).await?;
            if !plan.followups.is_empty() {
                let follow: Vec<BatchItem<'_>> = plan
                    .followups
                    .iter()
                    .map(|(env, raw)| BatchItem {
                        env,
                        raw,
                        received_at: item.received_at,
                        rules: false,
                    })
                    .collect();
                for o in self.deliver_batch_in(txn, &follow).await? {
                    match o {
                        BatchOutcome::Stored(r) => {
                            receipt.delivered.extend(r.delivered);
                            receipt.queued.extend(r.queued);
                        }
                        // A reply to a full mailbox is not worth a bounce.
                        BatchOutcome::Refused(e) => {
                            tracing::info!(error = %e, "sieve: a rule's message was not stored")
                        }
                    }
                }
            }
            out.push(BatchOutcome::Stored(receipt));
        }
        messages::root_threads(txn, &roots).await?;
        for (account_id, delta) in usage {
            messages::add_usage(txn, account_id, delta).await?;
        }
        Ok(out)
    }
}
