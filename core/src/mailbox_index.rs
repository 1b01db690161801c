//! The message index of a mailbox (every message's row, in UID order),
//! kept in memory between readers, the way Dovecot keeps its index file.
//!
//! An IMAP SELECT needs every row of the mailbox. Read from the database
//! each time, a 1,000-message SELECT was most of a busy IMAP server's CPU
//! (each row and each of its values is allocated and crosses from the
//! database thread). Here the rows are kept once per mailbox and shared
//! (`Arc`) with every session that selects it; each use first asks the
//! database for the mailbox's HIGHESTMODSEQ and message count (one row),
//! then reads only the rows changed since the kept copy. So the copy is
//! never stale, also with several nodes on one PostgreSQL: the database
//! stays the truth, this only saves re-reading what did not change.

use crate::ids::{AccountId, MailboxId, ModSeq, Uid};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::Core;
use crate::error::CoreResult;
use crate::messages::MessageSummary;

/// A mailbox's messages as of `highest_modseq`, ascending by UID.
#[derive(Clone, Debug)]
pub struct MailboxIndex {
    pub highest_modseq: ModSeq,
    pub messages: Vec<Arc<MessageSummary>>,
}

/// At most this many rows are kept over all mailboxes (a row is a few
/// hundred bytes); the least recently used mailbox goes first.
const MAX_KEPT_ROWS: usize = 200_000;

/// At most this many expunged UIDs are remembered per mailbox (16 bytes
/// each), and at most this many mailboxes have them.
const MAX_LOGGED_EXPUNGES: usize = 4096;
const MAX_LOGGED_MAILBOXES: usize = 4096;

struct Kept {
    /// A mailbox id can be used again after a delete; its UIDVALIDITY
    /// cannot (RFC 9051 §2.3.1.1), so both name the kept rows.
    uidvalidity: i64,
    /// Shared with the readers: a look at an unchanged mailbox copies a
    /// pointer, not a thousand.
    index: Arc<MailboxIndex>,
    last_used: u64,
}

/// Per mailbox, an async lock that one task holds at a time, with a value
/// that the holders share: work that many sessions would otherwise do at
/// once, for one change (bringing the kept index forward, claiming
/// `\Recent`), done by one while the others wait and use its result.
pub(crate) struct Turns<T> {
    by_mailbox: Mutex<HashMap<MailboxId, Arc<tokio::sync::Mutex<T>>>>,
}

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Turns {
            by_mailbox: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Default> Turns<T> {
    pub(crate) fn turn(&self, mailbox_id: MailboxId) -> Arc<tokio::sync::Mutex<T>> {
        let mut t = self.by_mailbox.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(mailbox_id).or_default().clone()
    }

    /// A deleted mailbox's id may come back: what was kept of it goes.
    pub(crate) fn forget(&self, mailbox_id: MailboxId) {
        self.by_mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&mailbox_id);
    }
}

#[derive(Default)]
pub(crate) struct IndexCache {
    inner: Mutex<CacheInner>,
    /// One reader at a time brings a mailbox's kept index forward; the
    /// others that noticed the same change wait for it and use its work
    /// (with fifty sessions on one mailbox, the changed rows were read
    /// several times per change).
    forwarding: Turns<()>,
}

#[derive(Default)]
struct CacheInner {
    by_mailbox: HashMap<MailboxId, Kept>,
    rows: usize,
    tick: u64,
    /// The expunges this process committed, per mailbox: (the mailbox's
    /// MODSEQ after the expunge, UID), oldest first. A reader that sees
    /// the message count drop learns from here which messages went,
    /// instead of reading every UID of the mailbox. It is a hint: the
    /// count must agree (another node or the CLI may have expunged too,
    /// and old entries are dropped), or the UIDs are read as before.
    expunged: HashMap<MailboxId, VecDeque<(ModSeq, Uid)>>,
}

impl IndexCache {
    fn get(&self, mailbox_id: MailboxId, uidvalidity: i64) -> Option<Arc<MailboxIndex>> {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.tick += 1;
        let tick = c.tick;
        let k = c.by_mailbox.get_mut(&mailbox_id)?;
        if k.uidvalidity != uidvalidity {
            return None;
        }
        k.last_used = tick;
        Some(k.index.clone())
    }

    fn put(&self, mailbox_id: MailboxId, uidvalidity: i64, index: Arc<MailboxIndex>) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = c.by_mailbox.remove(&mailbox_id) {
            c.rows -= old.index.messages.len();
        }
        let n = index.messages.len();
        if n > MAX_KEPT_ROWS {
            return;
        }
        while c.rows + n > MAX_KEPT_ROWS {
            let Some((&lru, _)) = c.by_mailbox.iter().min_by_key(|(_, k)| k.last_used) else {
                break;
            };
            if let Some(gone) = c.by_mailbox.remove(&lru) {
                c.rows -= gone.index.messages.len();
            }
        }
        c.tick += 1;
        let last_used = c.tick;
        c.rows += n;
        c.by_mailbox.insert(
            mailbox_id,
            Kept {
                uidvalidity,
                index,
                last_used,
            },
        );
    }

    pub(crate) fn forget(&self, mailbox_id: MailboxId) {
        self.forwarding.forget(mailbox_id);
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = c.by_mailbox.remove(&mailbox_id) {
            c.rows -= old.index.messages.len();
        }
        c.expunged.remove(&mailbox_id);
    }

    pub(crate) fn note_expunged(&self, mailbox_id: MailboxId, modseq: ModSeq, uids: &[Uid]) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !c.expunged.contains_key(&mailbox_id) && c.expunged.len() >= MAX_LOGGED_MAILBOXES {
            // Rare (thousands of mailboxes expunging): start over; readers
            // fall back to reading UIDs.
            c.expunged.clear();
        }
        let log = c.expunged.entry(mailbox_id).or_default();
        log.extend(uids.iter().map(|&u| (modseq, u)));
        while log.len() > MAX_LOGGED_EXPUNGES {
            log.pop_front();
        }
    }

    /// UIDs this process expunged from the mailbox at a MODSEQ in
    /// `(after, upto]`.
    pub(crate) fn expunged_between(
        &self,
        mailbox_id: MailboxId,
        after: ModSeq,
        upto: ModSeq,
    ) -> Vec<Uid> {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.expunged.get(&mailbox_id).map_or_else(Vec::new, |log| {
            log.iter()
                .filter(|(m, _)| *m > after && *m <= upto)
                .map(|(_, u)| *u)
                .collect()
        })
    }

    /// How many mailboxes and rows are kept (for tests and metrics).
    pub(crate) fn size(&self) -> (usize, usize) {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (c.by_mailbox.len(), c.rows)
    }
}

/// `kept` brought forward with `changed` (rows with a MODSEQ above the
/// kept one, read after `count` was) and `expunged` (UIDs known to be
/// gone since), or None when another kept message may be gone and the
/// UIDs must be read. `count` and `modseq` are one moment: the messages
/// present then are at least the kept ones that remain plus the new ones
/// in `changed` with a MODSEQ up to `modseq`, so a count equal to (kept
/// less the known-gone) + those new ones means no other kept one is gone.
fn bring_forward(
    kept: &MailboxIndex,
    changed: Vec<MessageSummary>,
    expunged: &[Uid],
    modseq: ModSeq,
    count: u64,
) -> Option<MailboxIndex> {
    let max_kept = kept.messages.last().map_or(Uid(0), |m| m.uid);
    let new_then = changed
        .iter()
        .filter(|m| m.uid > max_kept && m.modseq <= modseq)
        .count();
    let gone: std::collections::HashSet<Uid> = expunged.iter().copied().collect();
    let left = kept
        .messages
        .iter()
        .filter(|m| !gone.contains(&m.uid))
        .count();
    if (left as u64).checked_add(new_then as u64) != Some(count) {
        return None;
    }
    let mut messages = kept.messages.clone();
    messages.retain(|m| !gone.contains(&m.uid));
    let mut new: Vec<Arc<MessageSummary>> = Vec::new();
    for m in changed {
        if m.uid > max_kept {
            new.push(Arc::new(m));
        } else if let Ok(i) = messages.binary_search_by_key(&m.uid, |x| x.uid)
            && messages[i].modseq <= m.modseq
        {
            messages[i] = Arc::new(m);
        }
        // A changed row below max_kept that is not kept was appended
        // and expunged between two looks; the count check said it is
        // gone again.
    }
    new.sort_by_key(|m| m.uid);
    messages.extend(new);
    Some(MailboxIndex {
        highest_modseq: modseq,
        messages,
    })
}

impl Core {
    /// Every message of a mailbox, ascending by UID, as of now. The rows
    /// are shared with other readers; see the module doc.
    pub(crate) async fn mailbox_index(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<Arc<MailboxIndex>> {
        let (mut modseq, mut count, uidvalidity) =
            self.mailbox_moment(account_id, mailbox_id).await?;
        let cache = &self.inner.index_cache;
        // Current at this moment, or brought past it by another reader
        // since (checked at its own moment).
        let current = |k: &MailboxIndex, modseq: ModSeq, count: u64| {
            k.highest_modseq > modseq
                || (k.highest_modseq == modseq && k.messages.len() as u64 == count)
        };
        if let Some(kept) = cache.get(mailbox_id, uidvalidity)
            && current(&kept, modseq, count)
        {
            return Ok(kept);
        }
        // One reader at a time brings the index forward (or reads it
        // whole); the others that noticed the same change wait and use
        // its work.
        let turn = cache.forwarding.turn(mailbox_id);
        let _turn = match turn.try_lock() {
            Ok(t) => t,
            Err(_) => {
                let t = turn.lock().await;
                if let Some(kept) = cache.get(mailbox_id, uidvalidity)
                    && kept.highest_modseq >= modseq
                {
                    return Ok(kept);
                }
                // A fresh moment: the rows read next must be read right
                // after it. Against a moment long past, more mail has come
                // and gone than the count can account for, and the whole
                // mailbox would be read again.
                (modseq, count, _) = self.mailbox_moment(account_id, mailbox_id).await?;
                if let Some(kept) = cache.get(mailbox_id, uidvalidity)
                    && current(&kept, modseq, count)
                {
                    return Ok(kept);
                }
                t
            }
        };
        let kept = cache.get(mailbox_id, uidvalidity);
        if let Some(k) = &kept
            && current(k, modseq, count)
        {
            return Ok(k.clone());
        }
        if let Some(kept) = kept
            && kept.highest_modseq < modseq
        {
            // The moment query checked the mailbox is the account's.
            let changed = self.changed_rows(mailbox_id, kept.highest_modseq).await?;
            let gone = cache.expunged_between(mailbox_id, kept.highest_modseq, modseq);
            if let Some(index) = bring_forward(&kept, changed, &gone, modseq, count) {
                let index = Arc::new(index);
                cache.put(mailbox_id, uidvalidity, index.clone());
                return Ok(index);
            }
        }
        // Read after (modseq, count): these rows are at least as new as
        // `modseq`, so keeping them under it only means the next look
        // reads a few of them again.
        let rows = self.changed_rows(mailbox_id, ModSeq(i64::MIN)).await?;
        let index = Arc::new(MailboxIndex {
            highest_modseq: modseq,
            messages: rows.into_iter().map(Arc::new).collect(),
        });
        cache.put(mailbox_id, uidvalidity, index.clone());
        Ok(index)
    }

    pub(crate) fn note_expunged(&self, mailbox_id: MailboxId, modseq: ModSeq, uids: &[Uid]) {
        self.inner
            .index_cache
            .note_expunged(mailbox_id, modseq, uids);
    }

    /// How many mailboxes and rows the index cache keeps.
    pub fn mailbox_index_cache_size(&self) -> (usize, usize) {
        self.inner.index_cache.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flags;

    fn m(uid: i64, modseq: i64) -> MessageSummary {
        MessageSummary {
            id: uid as i32,
            mailbox_id: mb(1),
            uid: Uid(uid),
            flags: Flags::empty(),
            keywords: Vec::new(),
            modseq: ModSeq(modseq),
            internal_date: 0,
            size: 10,
            from: String::new(),
            to: String::new(),
            subject: format!("m{uid}"),
            sent_date: None,
            message_id: String::new(),
            thread_id: 0,
            snippet: String::new(),
            has_attachments: false,
        }
    }

    fn mb(n: i32) -> MailboxId {
        MailboxId::from_row(n)
    }

    fn uids(ns: &[i64]) -> Vec<Uid> {
        ns.iter().map(|&n| Uid(n)).collect()
    }

    /// `bring_forward` with plain numbers.
    fn fwd(
        kept: &MailboxIndex,
        changed: Vec<MessageSummary>,
        expunged: &[i64],
        modseq: i64,
        count: u64,
    ) -> Option<MailboxIndex> {
        bring_forward(kept, changed, &uids(expunged), ModSeq(modseq), count)
    }

    fn kept(uids: &[i64]) -> MailboxIndex {
        MailboxIndex {
            highest_modseq: ModSeq(10),
            messages: uids.iter().map(|&u| Arc::new(m(u, 5))).collect(),
        }
    }

    #[test]
    fn flag_changes_and_new_mail_are_brought_forward() {
        let k = kept(&[1, 2, 3]);
        let mut seen = m(2, 11);
        seen.flags = Flags::SEEN;
        let got = fwd(&k, vec![m(4, 12), seen], &[], 12, 4).unwrap();
        let got_uids: Vec<i64> = got.messages.iter().map(|m| m.uid.get()).collect();
        assert_eq!(got_uids, [1, 2, 3, 4]);
        assert_eq!(got.messages[1].flags, Flags::SEEN);
        assert_eq!(got.highest_modseq, ModSeq(12));
        // The untouched rows are the same allocations, not copies.
        assert!(Arc::ptr_eq(&got.messages[0], &k.messages[0]));
    }

    /// A row read back older than the one kept (kept rows can be newer
    /// than their index's MODSEQ) does not replace it: a MODSEQ never goes
    /// back.
    #[test]
    fn an_older_row_does_not_replace_a_newer_one() {
        let mut k = kept(&[1, 2]);
        let mut newer = m(2, 15);
        newer.flags = Flags::FLAGGED;
        k.messages[1] = Arc::new(newer);
        let got = fwd(&k, vec![m(2, 12)], &[], 12, 2).unwrap();
        assert_eq!(got.messages[1].modseq, ModSeq(15));
        assert_eq!(got.messages[1].flags, Flags::FLAGGED);
    }

    #[test]
    fn an_expunge_is_noticed_by_the_count() {
        let k = kept(&[1, 2, 3]);
        // 2 expunged: the count is one short.
        assert!(fwd(&k, vec![], &[], 11, 2).is_none());
        // 2 expunged and 4 arrived: the new row is counted, the count is
        // still one short of kept + new.
        assert!(fwd(&k, vec![m(4, 12)], &[], 12, 3).is_none());
        // 4 arrived before the count and its flags changed after it: it
        // is not counted as new then, so the UIDs are read (the safe way).
        assert!(fwd(&k, vec![m(4, 14)], &[], 12, 4).is_none());
    }

    #[test]
    fn a_logged_expunge_is_taken_when_the_count_agrees() {
        let k = kept(&[1, 2, 3]);
        // 2 expunged here (logged) and 4 arrived: no UIDs need reading.
        let got = fwd(&k, vec![m(4, 12)], &[2], 12, 3).unwrap();
        let got_uids: Vec<i64> = got.messages.iter().map(|m| m.uid.get()).collect();
        assert_eq!(got_uids, [1, 3, 4]);
        // 2 logged, but 3 went too (another node): the count disagrees.
        assert!(fwd(&k, vec![], &[2], 12, 1).is_none());
        // A logged UID the index never had changes nothing.
        assert!(fwd(&k, vec![], &[9], 12, 3).is_some());
        assert!(fwd(&k, vec![], &[9], 12, 2).is_none());
    }

    #[test]
    fn the_expunge_log_is_bounded_and_ranged() {
        let c = IndexCache::default();
        c.note_expunged(mb(1), ModSeq(5), &uids(&[10, 11]));
        c.note_expunged(mb(1), ModSeq(7), &uids(&[12]));
        assert_eq!(
            c.expunged_between(mb(1), ModSeq(4), ModSeq(7)),
            uids(&[10, 11, 12])
        );
        assert_eq!(c.expunged_between(mb(1), ModSeq(5), ModSeq(7)), uids(&[12]));
        assert_eq!(
            c.expunged_between(mb(1), ModSeq(4), ModSeq(6)),
            uids(&[10, 11])
        );
        assert!(c.expunged_between(mb(2), ModSeq(0), ModSeq(100)).is_empty());
        let many: Vec<Uid> = (100..100 + MAX_LOGGED_EXPUNGES as i64 + 10)
            .map(Uid)
            .collect();
        c.note_expunged(mb(1), ModSeq(9), &many);
        let all = c.expunged_between(mb(1), ModSeq(0), ModSeq(100));
        assert_eq!(all.len(), MAX_LOGGED_EXPUNGES);
        assert_eq!(all.last(), many.last());
        c.forget(mb(1));
        assert!(c.expunged_between(mb(1), ModSeq(0), ModSeq(100)).is_empty());
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_rows() {
        let c = IndexCache::default();
        let big = MailboxIndex {
            highest_modseq: ModSeq(1),
            messages: (1..=(MAX_KEPT_ROWS as i64 / 2))
                .map(|u| Arc::new(m(u, 1)))
                .collect(),
        };
        c.put(mb(1), 7, Arc::new(big.clone()));
        c.put(mb(2), 7, Arc::new(big.clone()));
        assert_eq!(c.size(), (2, MAX_KEPT_ROWS));
        assert!(c.get(mb(1), 7).is_some());
        // Another UIDVALIDITY is another mailbox under a reused id.
        assert!(c.get(mb(1), 8).is_none());
        // 3 pushes out the least recently used, which is 2.
        c.put(mb(3), 7, Arc::new(kept(&[1])));
        assert!(c.get(mb(2), 7).is_none());
        assert!(c.get(mb(1), 7).is_some() && c.get(mb(3), 7).is_some());
        assert_eq!(c.size(), (2, MAX_KEPT_ROWS / 2 + 1));
        c.forget(mb(1));
        assert_eq!(c.size(), (1, 1));
    }
}
