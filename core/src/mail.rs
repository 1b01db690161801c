//! One account's mail, as a signed-in user reaches it (mox's `store.Account`).
//!
//! [`Core::mail`] turns an account id (which only the core makes, from its
//! rows: a login, a session, a directory lookup) into a [`Mail`] handle;
//! [`Mail::mailbox`] finds a mailbox by name among that account's and hands
//! back an [`OwnedMailbox`], whose fields are private: holding one proves the
//! mailbox was the account's when it was opened. Every message operation is a
//! method of the owned mailbox, so a call with one account and another's
//! mailbox cannot be written. (The storage functions underneath still check
//! the account on each statement: a mailbox deleted or renamed away since it
//! was opened answers "not found", not someone else's rows.)
//!
//! Protocol sessions and pages hold these handles; the id-taking methods on
//! [`Core`] they call are crate-private.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Core;
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, MailboxId, ModSeq, Uid};
use crate::mailbox_index::MailboxIndex;
use crate::mailboxes::{Mailbox, MailboxHead, NewMailbox};
use crate::messages::{FlagChange, FlagOp, FlagSet, Flags, MessageSummary, SortOrder};
use crate::outside_cache::{UnifiedAt, UnifiedPage};
use crate::view::{AttachmentData, MessageView};

impl Core {
    /// The mail of an account. Cheap: a clone of the core's handle and the
    /// account's id.
    pub fn mail(&self, account: AccountId) -> Mail {
        Mail {
            core: self.clone(),
            account,
        }
    }
}

/// One account's mailboxes and what spans them (search, threads, the
/// unified inbox).
#[derive(Clone)]
pub struct Mail {
    core: Core,
    account: AccountId,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("account", &self.account)
            .finish()
    }
}

impl Mail {
    pub fn account(&self) -> AccountId {
        self.account
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Opens a mailbox of this account by name (any case of INBOX).
    pub async fn mailbox(&self, name: &str) -> CoreResult<Option<OwnedMailbox>> {
        Ok(self
            .core
            .mailbox_head(self.account, name)
            .await?
            .map(|head| OwnedMailbox {
                core: self.core.clone(),
                account: self.account,
                head,
            }))
    }

    /// Opens a mailbox that must exist: `NotFound` names it otherwise.
    pub async fn open(&self, name: &str) -> CoreResult<OwnedMailbox> {
        self.mailbox(name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {name}")))
    }

    /// Every mailbox with its counts, by name.
    pub async fn mailboxes(&self) -> CoreResult<Vec<Mailbox>> {
        self.core.list_mailboxes(self.account).await
    }

    /// One mailbox with its counts (IMAP STATUS, the folder list).
    pub async fn mailbox_status(&self, name: &str) -> CoreResult<Option<Mailbox>> {
        self.core.mailbox(self.account, name).await
    }

    pub async fn create_mailbox(&self, name: &str, subscribe: NewMailbox) -> CoreResult<Mailbox> {
        self.core
            .create_mailbox(self.account, name, subscribe)
            .await
    }

    pub async fn rename_mailbox(&self, from: &str, to: &str) -> CoreResult<()> {
        self.core.rename_mailbox(self.account, from, to).await
    }

    pub async fn delete_mailbox(&self, name: &str) -> CoreResult<()> {
        self.core.delete_mailbox(self.account, name).await
    }

    pub async fn set_subscribed(&self, name: &str, on: bool) -> CoreResult<()> {
        self.core.set_subscribed(self.account, name, on).await
    }

    /// Subscriptions whose mailbox does not exist (RFC 9051 §6.3.9).
    pub async fn lone_subscriptions(&self) -> CoreResult<Vec<String>> {
        self.core.lone_subscriptions(self.account).await
    }

    /// Full-text search in one mailbox or all of them, newest first.
    pub async fn search(
        &self,
        mailbox: Option<&OwnedMailbox>,
        query: &str,
        offset: u64,
        limit: u64,
    ) -> CoreResult<(Vec<MessageSummary>, u64)> {
        let mailbox_id = match mailbox {
            Some(m) => Some(m.id_for(self.account)?),
            None => None,
        };
        self.core
            .search(self.account, mailbox_id, query, offset, limit)
            .await
    }

    /// Addresses this account writes to most, for the compose form.
    pub async fn correspondents(&self, limit: usize) -> CoreResult<Vec<String>> {
        self.core.correspondents(self.account, limit).await
    }

    pub async fn thread_len(&self, thread_id: i64) -> CoreResult<u64> {
        self.core.thread_len(self.account, thread_id).await
    }

    pub async fn thread_messages(&self, thread_id: i64) -> CoreResult<Vec<MessageSummary>> {
        self.core.thread_messages(self.account, thread_id).await
    }

    /// The INBOX and every outside account's cached headers, one list.
    pub async fn unified_inbox(
        &self,
        at: &UnifiedAt,
        page_size: u64,
        query: &str,
    ) -> CoreResult<UnifiedPage> {
        self.core
            .unified_inbox(self.account, at, page_size, query)
            .await
    }
}

/// A mailbox opened through its owner's [`Mail`]. Its head (name, ids,
/// UIDVALIDITY) is as of opening; counts and UIDNEXT are read fresh.
#[derive(Clone)]
pub struct OwnedMailbox {
    core: Core,
    account: AccountId,
    head: MailboxHead,
}

impl std::fmt::Debug for OwnedMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedMailbox")
            .field("account", &self.account)
            .field("head", &self.head)
            .finish()
    }
}

impl OwnedMailbox {
    pub fn id(&self) -> MailboxId {
        self.head.id
    }

    pub fn name(&self) -> &str {
        &self.head.name
    }

    pub fn head(&self) -> &MailboxHead {
        &self.head
    }

    /// A page of messages and the mailbox's total count.
    pub async fn list(
        &self,
        offset: u64,
        limit: u64,
        order: SortOrder,
    ) -> CoreResult<(Vec<MessageSummary>, u64)> {
        self.core
            .list_messages(self.account, self.id(), offset, limit, order)
            .await
    }

    pub async fn message(&self, uid: Uid) -> CoreResult<MessageSummary> {
        self.core.message(self.account, self.id(), uid).await
    }

    /// The message exactly as received.
    pub async fn raw(&self, uid: Uid) -> CoreResult<Vec<u8>> {
        self.core.message_raw(self.account, self.id(), uid).await
    }

    /// Several messages whole, in the order of `uids` (missing ones left out).
    pub async fn raws(&self, uids: &[Uid]) -> CoreResult<Vec<(Uid, Vec<u8>)>> {
        self.core.messages_raw(self.account, self.id(), uids).await
    }

    /// Several messages' header sections, as [`OwnedMailbox::raws`].
    pub async fn headers(&self, uids: &[Uid]) -> CoreResult<Vec<(Uid, Vec<u8>)>> {
        self.core
            .messages_headers(self.account, self.id(), uids)
            .await
    }

    /// The FETCH digests kept with the bytes (ENVELOPE, BODYSTRUCTURE).
    pub async fn fetch_cache(&self, uids: &[Uid]) -> CoreResult<HashMap<Uid, Vec<u8>>> {
        self.core
            .messages_fetch_cache(self.account, self.id(), uids)
            .await
    }

    /// The message parsed for display.
    pub async fn view(&self, uid: Uid) -> CoreResult<MessageView> {
        self.core.message_view(self.account, self.id(), uid).await
    }

    pub async fn attachment(&self, uid: Uid, index: u32) -> CoreResult<AttachmentData> {
        self.core
            .message_attachment(self.account, self.id(), uid, index)
            .await
    }

    /// Changes system flags; returns (uid, flags now, modseq) per message.
    pub async fn set_flags(
        &self,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
    ) -> CoreResult<Vec<(Uid, Flags, ModSeq)>> {
        self.core
            .set_flags(self.account, self.id(), uids, op, flags)
            .await
    }

    /// IMAP STORE with keywords.
    pub async fn store_flags(
        &self,
        uids: &[Uid],
        op: FlagOp,
        change: &FlagSet,
    ) -> CoreResult<Vec<FlagChange>> {
        self.core
            .store_flags(self.account, self.id(), uids, op, change)
            .await
    }

    /// Copies into `to`, another mailbox of the same account; returns
    /// (source uid, new uid) pairs.
    pub async fn copy_to(&self, uids: &[Uid], to: &OwnedMailbox) -> CoreResult<Vec<(Uid, Uid)>> {
        let to = to.id_for(self.account)?;
        self.core
            .copy_messages(self.account, self.id(), uids, to)
            .await
    }

    /// Moves into `to` (RFC 6851): copies, then expunges here.
    pub async fn move_to(&self, uids: &[Uid], to: &OwnedMailbox) -> CoreResult<Vec<(Uid, Uid)>> {
        let to = to.id_for(self.account)?;
        self.core
            .move_messages(self.account, self.id(), uids, to)
            .await
    }

    /// Removes these messages for good.
    pub async fn destroy(&self, uids: &[Uid]) -> CoreResult<Vec<Uid>> {
        self.core.destroy(self.account, self.id(), uids).await
    }

    /// The UIDs just older and just newer than `uid`.
    pub async fn neighbours(&self, uid: Uid) -> CoreResult<(Option<Uid>, Option<Uid>)> {
        self.core.neighbour_uids(self.account, self.id(), uid).await
    }

    /// Removes `\Deleted` messages (only those of `only`, when given).
    pub async fn expunge(&self, only: Option<&[Uid]>) -> CoreResult<Vec<Uid>> {
        self.core.expunge(self.account, self.id(), only).await
    }

    pub async fn append(
        &self,
        raw: &[u8],
        flags: Flags,
        internal_date: Option<i64>,
    ) -> CoreResult<Uid> {
        self.core
            .append(self.account, self.id(), raw, flags, internal_date)
            .await
    }

    /// IMAP APPEND with keywords.
    pub async fn append_flagged(
        &self,
        raw: &[u8],
        flags: &FlagSet,
        internal_date: Option<i64>,
    ) -> CoreResult<Uid> {
        self.core
            .append_flagged(self.account, self.id(), raw, flags, internal_date)
            .await
    }

    pub async fn uidnext(&self) -> CoreResult<Uid> {
        self.core.mailbox_uidnext(self.account, self.id()).await
    }

    pub async fn modseq(&self) -> CoreResult<ModSeq> {
        self.core.mailbox_modseq(self.account, self.id()).await
    }

    /// Every UID, ascending.
    pub async fn uids(&self) -> CoreResult<Vec<Uid>> {
        self.core.mailbox_uids(self.account, self.id()).await
    }

    /// Every message's row, shared with other readers (see `mailbox_index`).
    pub async fn index(&self) -> CoreResult<Arc<MailboxIndex>> {
        self.core.mailbox_index(self.account, self.id()).await
    }

    /// Claims `\Recent` up to `upto` (exclusive); returns the old mark.
    pub async fn claim_recent(&self, upto: Uid) -> CoreResult<Uid> {
        self.core.claim_recent(self.account, self.id(), upto).await
    }

    pub async fn recent_mark(&self) -> CoreResult<Uid> {
        self.core.recent_mark(self.account, self.id()).await
    }

    /// For SEARCH BODY: UIDs that may hold each word start (see the core).
    pub async fn body_search_candidates(
        &self,
        starts: &[String],
    ) -> CoreResult<Option<std::collections::HashSet<Uid>>> {
        self.core
            .body_search_candidates(self.account, self.id(), starts)
            .await
    }

    /// This mailbox's id, if it is `account`'s: a mailbox handed in from
    /// another account's `Mail` is "not found", as a foreign id always was.
    fn id_for(&self, account: AccountId) -> CoreResult<MailboxId> {
        if self.account == account {
            Ok(self.id())
        } else {
            Err(CoreError::NotFound(format!("mailbox {}", self.head.name)))
        }
    }
}
