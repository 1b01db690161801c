//! Messages in a mailbox: listing, raw bytes, flags, copy, move, expunge and
//! append.
//!
//! Each message row points at a content-addressed blob; the blob's refcount
//! counts message rows plus queue rows that use it, and a blob goes when its
//! count reaches zero. Every change bumps the mailbox's HIGHESTMODSEQ and
//! stamps the changed rows with it (RFC 7162 §3.1).

use crate::ids::{AccountId, BlobId, MailboxId, ModSeq, Uid};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;

use crate::Core;
use crate::entities::{account, blob, mailbox, message};
use crate::error::{CoreError, CoreResult};
use crate::events::{ChangeEvent, ChangeKind};
use crate::meta::MessageMeta;

/// IMAP system flags (RFC 9051 §2.3.2) as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(i32);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    const ALL: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub const fn bits(self) -> i32 {
        self.0
    }

    pub const fn from_bits(b: i32) -> Flags {
        Flags(b & 31)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The system flag for an IMAP name such as `\Seen` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }

    pub fn names(self) -> Vec<&'static str> {
        Flags::ALL
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A keyword (RFC 9051 §2.3.2 `flag-keyword`): a user-defined flag such
/// as `$Junk`, `$Forwarded` or a Thunderbird tag. Keywords compare without
/// regard to case and keep the spelling they were first stored with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Keyword(String);

impl Keyword {
    /// Longest keyword stored; Dovecot and mox take about as much.
    pub const MAX_LEN: usize = 100;

    /// A keyword when `name` is an IMAP atom (RFC 9051 §9: no `( ) { % *
    /// " \ ]`, space or control characters) of at most [`Self::MAX_LEN`]
    /// octets; system flags (`\Seen`) are not keywords.
    pub fn parse(name: &str) -> Option<Keyword> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|c| (0x21..0x7f).contains(&c) && !b"(){%*\"\\]".contains(&c));
        ok.then(|| Keyword(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same keyword, whatever the case.
    pub fn same(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many keywords one message may carry; one more is refused (IMAP
/// `NO [LIMIT]`), so a client cannot grow a row without bound.
pub const MAX_KEYWORDS_PER_MESSAGE: usize = 64;

/// Everything IMAP calls a message's flags: the system flags and the
/// keywords, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagSet {
    pub system: Flags,
    pub keywords: Vec<Keyword>,
}

impl FlagSet {
    pub fn system(system: Flags) -> FlagSet {
        FlagSet {
            system,
            keywords: Vec::new(),
        }
    }

    pub fn has_keyword(&self, name: &str) -> bool {
        self.keywords.iter().any(|k| k.same(name))
    }

    /// Adds keywords not already here (by case-insensitive name).
    pub fn add_keywords<'a>(&mut self, more: impl IntoIterator<Item = &'a Keyword>) {
        for k in more {
            if !self.has_keyword(k.as_str()) {
                self.keywords.push(k.clone());
            }
        }
    }

    /// The set after STORE's `+FLAGS`, `-FLAGS` or `FLAGS` (RFC 9051 §6.4.6).
    pub fn apply(&self, op: FlagOp, change: &FlagSet) -> FlagSet {
        match op {
            FlagOp::Add => {
                let mut out = self.clone();
                out.system = out.system.union(change.system);
                out.add_keywords(&change.keywords);
                out
            }
            FlagOp::Remove => FlagSet {
                system: self.system.without(change.system),
                keywords: self
                    .keywords
                    .iter()
                    .filter(|k| !change.has_keyword(k.as_str()))
                    .cloned()
                    .collect(),
            },
            FlagOp::Replace => {
                let mut out = FlagSet::system(change.system);
                out.add_keywords(&change.keywords);
                out
            }
        }
    }

    fn from_row(flags: i32, keywords: &str) -> FlagSet {
        FlagSet {
            system: Flags::from_bits(flags),
            keywords: keywords
                .split_whitespace()
                .filter_map(Keyword::parse)
                .collect(),
        }
    }

    fn keywords_column(&self) -> String {
        keywords_column(&self.keywords)
    }

    fn check_limit(&self) -> CoreResult<()> {
        if self.keywords.len() > MAX_KEYWORDS_PER_MESSAGE {
            return Err(CoreError::Limit(format!(
                "at most {MAX_KEYWORDS_PER_MESSAGE} keywords per message"
            )));
        }
        Ok(())
    }
}

/// The `keywords` column: names separated by single spaces (an atom never
/// holds one).
fn keywords_column(keywords: &[Keyword]) -> String {
    let names: Vec<&str> = keywords.iter().map(Keyword::as_str).collect();
    names.join(" ")
}

/// One message's flags after a change, and the MODSEQ that change got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: Uid,
    pub flags: FlagSet,
    pub modseq: ModSeq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Newest first: the webmail list.
    DateDesc,
    DateAsc,
    /// IMAP sequence order.
    UidAsc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSummary {
    pub id: i32,
    pub mailbox_id: MailboxId,
    pub uid: Uid,
    pub flags: Flags,
    pub keywords: Vec<Keyword>,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub size: i64,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub sent_date: Option<i64>,
    pub message_id: String,
    pub thread_id: i64,
    pub snippet: String,
    pub has_attachments: bool,
}

impl MessageSummary {
    /// A row for a message that is in no mailbox (UID 1, MODSEQ 1, mailbox
    /// id 0, which no mailbox has): for rendering FETCH items in fuzzing
    /// and benchmarks without a store.
    pub fn unstored(size: i64, flags: Flags) -> MessageSummary {
        MessageSummary {
            id: 0,
            mailbox_id: MailboxId::from_row(0),
            uid: Uid(1),
            flags,
            keywords: Vec::new(),
            modseq: ModSeq(1),
            internal_date: 0,
            size,
            from: String::new(),
            to: String::new(),
            subject: String::new(),
            sent_date: None,
            message_id: String::new(),
            thread_id: 0,
            snippet: String::new(),
            has_attachments: false,
        }
    }
}

impl From<message::Model> for MessageSummary {
    fn from(m: message::Model) -> Self {
        MessageSummary {
            id: m.id,
            mailbox_id: m.mailbox_id,
            uid: m.uid,
            flags: Flags::from_bits(m.flags),
            keywords: FlagSet::from_row(m.flags, &m.keywords).keywords,
            modseq: m.modseq,
            internal_date: m.internal_date,
            size: m.size,
            from: m.from_addr,
            to: m.to_addr,
            subject: m.subject,
            sent_date: m.sent_date,
            message_id: m.message_id_header,
            thread_id: m.thread_id,
            snippet: m.snippet,
            has_attachments: m.has_attachments,
        }
    }
}

/// These UIDs' rows of a mailbox, joined to their blobs, and only when
/// the mailbox is the account's: one statement for a run of messages, the
/// ownership check included. The caller picks the columns.
fn owned_rows(
    account_id: AccountId,
    mailbox_id: MailboxId,
    uids: &[Uid],
) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .from(message::Entity)
        .inner_join(
            blob::Entity,
            Expr::col((blob::Entity, blob::Column::Id))
                .equals((message::Entity, message::Column::BlobId)),
        )
        .inner_join(
            mailbox::Entity,
            Expr::col((mailbox::Entity, mailbox::Column::Id))
                .equals((message::Entity, message::Column::MailboxId)),
        )
        .and_where(Expr::col((message::Entity, message::Column::MailboxId)).eq(mailbox_id))
        .and_where(Expr::col((mailbox::Entity, mailbox::Column::AccountId)).eq(account_id))
        .and_where(Expr::col((message::Entity, message::Column::Uid)).is_in(uids.iter().copied()))
        .to_owned()
}

/// How much of each message [`Core::read_messages`] reads.
#[derive(Clone, Copy)]
enum Extent {
    Whole,
    /// Up to where the body starts, when that is known; else whole.
    Header,
}

impl Extent {
    fn column(self, backend: sea_orm::DbBackend) -> sea_orm::sea_query::SimpleExpr {
        match (self, backend) {
            (Extent::Whole, _) => Expr::col((blob::Entity, blob::Column::Bytes)).into(),
            (Extent::Header, sea_orm::DbBackend::Postgres) => Expr::cust(
                "CASE WHEN blobs.header_len IS NULL THEN blobs.bytes \
                 ELSE substring(blobs.bytes from 1 for blobs.header_len::int) END",
            ),
            (Extent::Header, _) => Expr::cust(
                "CASE WHEN blobs.header_len IS NULL THEN blobs.bytes \
                 ELSE substr(blobs.bytes, 1, blobs.header_len) END",
            ),
        }
    }
}

pub(crate) async fn add_usage<C: ConnectionTrait>(
    db: &C,
    account_id: AccountId,
    delta: i64,
) -> CoreResult<()> {
    if delta != 0 {
        account::Entity::update_many()
            .col_expr(
                account::Column::UsedBytes,
                Expr::col(account::Column::UsedBytes).add(delta),
            )
            .filter(account::Column::Id.eq(account_id))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Takes `count` UIDs and one new modseq from a mailbox in a single atomic
/// UPDATE, which is what keeps UIDs strictly increasing when two deliveries
/// race on PostgreSQL (the row lock orders them). Returns (first uid, modseq).
pub(crate) async fn allocate_uids<C: ConnectionTrait>(
    db: &C,
    mailbox_id: MailboxId,
    count: i64,
) -> CoreResult<(Uid, ModSeq)> {
    let rows = mailbox::Entity::update_many()
        .col_expr(
            mailbox::Column::Uidnext,
            Expr::col(mailbox::Column::Uidnext).add(count),
        )
        .col_expr(
            mailbox::Column::HighestModseq,
            Expr::col(mailbox::Column::HighestModseq).add(1),
        )
        .filter(mailbox::Column::Id.eq(mailbox_id))
        .exec_with_returning(db)
        .await?;
    let m = rows
        .into_iter()
        .next()
        .ok_or_else(|| CoreError::NotFound(format!("mailbox {mailbox_id}")))?;
    Ok((Uid(m.uidnext.get() - count), m.highest_modseq))
}

/// Bumps HIGHESTMODSEQ for a change that allocates no UID.
async fn bump_modseq<C: ConnectionTrait>(db: &C, mailbox_id: MailboxId) -> CoreResult<ModSeq> {
    allocate_uids(db, mailbox_id, 0).await.map(|(_, m)| m)
}

/// Checks the quota of an account for `extra` more bytes.
pub(crate) async fn check_quota<C: ConnectionTrait>(
    db: &C,
    account_id: AccountId,
    extra: i64,
) -> CoreResult<()> {
    let a = account::Entity::find_by_id(account_id)
        .one(db)
        .await?
        .ok_or_else(|| CoreError::NotFound(format!("account {account_id}")))?;
    if a.quota_bytes > 0 && a.used_bytes + extra > a.quota_bytes {
        return Err(CoreError::OverQuota);
    }
    Ok(())
}

/// The `Delivered-To:` value a row keeps: the address without control
/// characters, so a recipient can never break the header block it is put
/// in front of.
pub(crate) fn trace_header_value(delivered_to: &str) -> String {
    delivered_to.chars().filter(|c| !c.is_control()).collect()
}

/// How many bytes the `Delivered-To:` line for `value` adds to a message.
pub(crate) fn trace_header_len(value: &str) -> i64 {
    if value.is_empty() {
        0
    } else {
        (TRACE_NAME.len() + value.len() + 2) as i64
    }
}

const TRACE_NAME: &str = "Delivered-To: ";

/// The message as a reader sees it: the row's `Delivered-To:` line (RFC
/// 9228 §3: a trace field, at the top like `Received:`) in front of the
/// stored bytes, which every copy of a delivery shares.
fn with_trace_header(delivered_to: &str, blob: Vec<u8>) -> Vec<u8> {
    if delivered_to.is_empty() {
        return blob;
    }
    let mut out = Vec::with_capacity(blob.len() + trace_header_len(delivered_to) as usize);
    out.extend_from_slice(TRACE_NAME.as_bytes());
    out.extend_from_slice(delivered_to.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&blob);
    out
}

pub(crate) struct NewMessage<'a> {
    pub mailbox_id: MailboxId,
    pub uid: Uid,
    pub modseq: ModSeq,
    pub blob_id: BlobId,
    pub flags: Flags,
    pub keywords: &'a [Keyword],
    pub internal_date: i64,
    pub size: i64,
    pub meta: &'a MessageMeta,
    pub thread_id: i64,
    /// Empty but for delivered mail (see [`with_trace_header`]); `size`
    /// counts its line.
    pub delivered_to: &'a str,
}

pub(crate) async fn insert_message<C: ConnectionTrait>(
    db: &C,
    n: NewMessage<'_>,
) -> CoreResult<i32> {
    let new_thread = n.thread_id == 0;
    let id = insert_message_row(db, n).await?;
    if new_thread {
        root_threads(db, &[id]).await?;
    }
    Ok(id)
}

/// Makes each of `ids` (rows inserted with thread 0) the root of its own
/// thread, in one statement however many there are.
pub(crate) async fn root_threads<C: ConnectionTrait>(db: &C, ids: &[i32]) -> CoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    message::Entity::update_many()
        .col_expr(
            message::Column::ThreadId,
            Expr::col(message::Column::Id).into(),
        )
        .filter(message::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Inserts the row as given; a thread id of 0 stays 0 until
/// [`root_threads`] (a batch roots all its new threads at once).
pub(crate) async fn insert_message_row<C: ConnectionTrait>(
    db: &C,
    n: NewMessage<'_>,
) -> CoreResult<i32> {
    let m = message::ActiveModel {
        mailbox_id: Set(n.mailbox_id),
        uid: Set(n.uid),
        blob_id: Set(n.blob_id),
        flags: Set(n.flags.bits()),
        keywords: Set(keywords_column(n.keywords)),
        modseq: Set(n.modseq),
        internal_date: Set(n.internal_date),
        size: Set(n.size),
        from_addr: Set(n.meta.from.clone()),
        to_addr: Set(n.meta.to.clone()),
        subject: Set(n.meta.subject.clone()),
        sent_date: Set(n.meta.sent_date),
        message_id_header: Set(n.meta.message_id.clone()),
        in_reply_to: Set(n.meta.in_reply_to.clone()),
        thread_id: Set(n.thread_id),
        snippet: Set(n.meta.snippet.clone()),
        has_attachments: Set(n.meta.has_attachments),
        delivered_to: Set(n.delivered_to.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(m.id)
}

/// The thread a message joins: that of any message of the same account it
/// refers to by In-Reply-To or References, else 0 (a new thread).
pub(crate) async fn find_thread<C: ConnectionTrait>(
    db: &C,
    account_id: AccountId,
    meta: &MessageMeta,
) -> CoreResult<i64> {
    let mut ids: Vec<String> = meta.references.clone();
    if !meta.in_reply_to.is_empty() {
        ids.push(meta.in_reply_to.clone());
    }
    if ids.is_empty() {
        return Ok(0);
    }
    let boxes = crate::mailboxes::mailbox_ids(db, account_id).await?;
    // A row whose thread is still 0 was inserted earlier in this batch and
    // is rooted at commit: it is its own root, so its id is the thread.
    Ok(message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::ThreadId)
        .filter(message::Column::MailboxId.is_in(boxes))
        .filter(message::Column::MessageIdHeader.is_in(ids))
        .into_tuple::<(i32, i64)>()
        .one(db)
        .await?
        .map_or(
            0,
            |(id, thread)| if thread == 0 { id as i64 } else { thread },
        ))
}

impl Core {
    /// A page of a mailbox's messages and the mailbox's total count.
    pub(crate) async fn list_messages(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        offset: u64,
        limit: u64,
        order: SortOrder,
    ) -> CoreResult<(Vec<MessageSummary>, u64)> {
        self.mailbox_row(account_id, mailbox_id).await?;
        let q = message::Entity::find().filter(message::Column::MailboxId.eq(mailbox_id));
        let total = q.clone().count(self.db()).await?;
        let q = match order {
            SortOrder::DateDesc => q
                .order_by_desc(message::Column::InternalDate)
                .order_by_desc(message::Column::Uid),
            SortOrder::DateAsc => q
                .order_by_asc(message::Column::InternalDate)
                .order_by_asc(message::Column::Uid),
            SortOrder::UidAsc => q.order_by_asc(message::Column::Uid),
        };
        let rows = q.offset(offset).limit(limit).all(self.db()).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    pub(crate) async fn message(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uid: Uid,
    ) -> CoreResult<MessageSummary> {
        self.mailbox_row(account_id, mailbox_id).await?;
        message::Entity::find()
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(message::Column::Uid.eq(uid))
            .one(self.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| CoreError::NotFound(format!("message uid {uid}")))
    }

    /// The UID the next message will get (UIDNEXT): everything below it
    /// that is not in the mailbox was expunged (QRESYNC's VANISHED).
    pub(crate) async fn mailbox_uidnext(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<Uid> {
        Ok(self.mailbox_row(account_id, mailbox_id).await?.uidnext)
    }

    /// The mailbox's change counter (its HIGHESTMODSEQ): every delivery,
    /// flag change, copy or expunge raises it, so a session that remembers
    /// it can tell "nothing changed" with one row read.
    pub(crate) async fn mailbox_modseq(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<ModSeq> {
        Ok(self
            .mailbox_row(account_id, mailbox_id)
            .await?
            .highest_modseq)
    }

    /// HIGHESTMODSEQ, message count and UIDVALIDITY in one statement.
    pub(crate) async fn mailbox_moment(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<(ModSeq, u64, i64)> {
        let backend = self.db().get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => {
                "SELECT m.highest_modseq, (SELECT COUNT(*) FROM messages WHERE mailbox_id = m.id), \
                 m.uidvalidity FROM mailboxes m WHERE m.id = $1 AND m.account_id = $2"
            }
            _ => {
                "SELECT m.highest_modseq, (SELECT COUNT(*) FROM messages WHERE mailbox_id = m.id), \
                 m.uidvalidity FROM mailboxes m WHERE m.id = ? AND m.account_id = ?"
            }
        };
        let row = self
            .db()
            .query_one(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [mailbox_id.into(), account_id.into()],
            ))
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {mailbox_id}")))?;
        let modseq: i64 = row.try_get_by_index(0)?;
        let count: i64 = row.try_get_by_index(1)?;
        let uidvalidity: i64 = row.try_get_by_index(2)?;
        Ok((ModSeq(modseq), count.max(0) as u64, uidvalidity))
    }

    /// Messages whose MODSEQ is above `since`: new ones and ones whose
    /// flags changed, in UID order, through the (mailbox, modseq) index.
    /// The caller has checked the mailbox is the account's (the kept
    /// index's moment query does).
    pub(crate) async fn changed_rows(
        &self,
        mailbox_id: MailboxId,
        since: ModSeq,
    ) -> CoreResult<Vec<MessageSummary>> {
        Ok(message::Entity::find()
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(message::Column::Modseq.gt(since))
            .order_by_asc(message::Column::Uid)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The UIDs of a mailbox, ascending: one column, for noticing expunges.
    pub(crate) async fn mailbox_uids(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<Vec<Uid>> {
        self.mailbox_row(account_id, mailbox_id).await?;
        Ok(message::Entity::find()
            .select_only()
            .column(message::Column::Uid)
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .order_by_asc(message::Column::Uid)
            .into_tuple()
            .all(self.db())
            .await?)
    }

    /// The message exactly as received (RFC 5322 bytes).
    pub(crate) async fn message_raw(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uid: Uid,
    ) -> CoreResult<Vec<u8>> {
        self.mailbox_row(account_id, mailbox_id).await?;
        let row = message::Entity::find()
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(message::Column::Uid.eq(uid))
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("message uid {uid}")))?;
        let b = blob::Entity::find_by_id(row.blob_id)
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::Unavailable(format!("blob {} missing", row.blob_id)))?;
        Ok(with_trace_header(&row.delivered_to, b.bytes))
    }

    /// Several messages exactly as received, in the order of `uids`; a UID
    /// not in the mailbox is left out. One query whatever the count (a
    /// second only when nothing matched, to tell a foreign mailbox apart):
    /// an IMAP FETCH of bodies or a SEARCH of text reads a run of messages,
    /// and one query per message was most of its cost. The caller bounds
    /// the run (by the sizes it knows) so the bytes held stay small.
    pub(crate) async fn messages_raw(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
    ) -> CoreResult<Vec<(Uid, Vec<u8>)>> {
        self.read_messages(account_id, mailbox_id, uids, Extent::Whole)
            .await
    }

    /// Several messages' headers (up to and with the empty line), as
    /// [`Core::messages_raw`] gives whole messages: only the header's bytes
    /// leave the database. A message stored before header lengths were
    /// kept comes whole; the reader finds its header itself.
    pub(crate) async fn messages_headers(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
    ) -> CoreResult<Vec<(Uid, Vec<u8>)>> {
        self.read_messages(account_id, mailbox_id, uids, Extent::Header)
            .await
    }

    /// The FETCH digests ([`crate::FetchDigest`]) of these messages, by UID,
    /// in one query; a message without one is left out (stored before, or
    /// by a process that made none).
    pub(crate) async fn messages_fetch_cache(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
    ) -> CoreResult<HashMap<Uid, Vec<u8>>> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let q = owned_rows(account_id, mailbox_id, uids)
            .column((message::Entity, message::Column::Uid))
            .column((blob::Entity, blob::Column::FetchCache))
            .and_where(Expr::col((blob::Entity, blob::Column::FetchCache)).is_not_null())
            .to_owned();
        let stmt = self.db().get_database_backend().build(&q);
        let mut out = HashMap::new();
        for r in self.db().query_all(stmt).await? {
            let uid: Uid = r.try_get_by_index(0)?;
            let cache: Vec<u8> = r.try_get_by_index(1)?;
            out.insert(uid, cache);
        }
        Ok(out)
    }

    async fn read_messages(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
        extent: Extent,
    ) -> CoreResult<Vec<(Uid, Vec<u8>)>> {
        if uids.is_empty() {
            self.mailbox_row(account_id, mailbox_id).await?;
            return Ok(Vec::new());
        }
        // One statement: the rows, their bytes and the ownership check
        // (each statement is a round trip to the database's thread, the
        // main cost of a FETCH of bodies).
        let q = owned_rows(account_id, mailbox_id, uids)
            .column((message::Entity, message::Column::Uid))
            .column((message::Entity, message::Column::BlobId))
            .column((message::Entity, message::Column::DeliveredTo))
            .expr(extent.column(self.db().get_database_backend()))
            .to_owned();
        let stmt = self.db().get_database_backend().build(&q);
        let found = self.db().query_all(stmt).await?;
        if found.is_empty() {
            // None of these UIDs, or not this account's mailbox: say which.
            self.mailbox_row(account_id, mailbox_id).await?;
            return Ok(Vec::new());
        }
        let mut rows: Vec<(Uid, BlobId, String)> = Vec::with_capacity(found.len());
        let mut blobs: HashMap<BlobId, Vec<u8>> = HashMap::new();
        for r in found {
            let uid: Uid = r.try_get_by_index(0)?;
            let blob_id: BlobId = r.try_get_by_index(1)?;
            let delivered_to: String = r.try_get_by_index(2)?;
            let bytes: Vec<u8> = r.try_get_by_index(3)?;
            rows.push((uid, blob_id, delivered_to));
            blobs.entry(blob_id).or_insert(bytes);
        }
        let by_uid: HashMap<Uid, (BlobId, String)> =
            rows.into_iter().map(|(u, b, d)| (u, (b, d))).collect();
        // Two copies of one message in a mailbox share a blob: each use
        // but the last clones it.
        let mut uses: HashMap<BlobId, usize> = HashMap::new();
        for (b, _) in by_uid.values() {
            *uses.entry(*b).or_default() += 1;
        }
        let mut out = Vec::with_capacity(by_uid.len());
        for &uid in uids {
            let Some((blob_id, delivered_to)) = by_uid.get(&uid) else {
                continue;
            };
            let left = uses.entry(*blob_id).or_default();
            *left = left.saturating_sub(1);
            let bytes = if *left == 0 {
                blobs.remove(blob_id)
            } else {
                blobs.get(blob_id).cloned()
            }
            .ok_or_else(|| CoreError::Unavailable(format!("blob {blob_id} missing")))?;
            out.push((uid, with_trace_header(delivered_to, bytes)));
        }
        Ok(out)
    }

    /// Adds, removes or replaces system flags on the given UIDs and returns
    /// the new state of each changed message.
    pub(crate) async fn set_flags(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
    ) -> CoreResult<Vec<(Uid, Flags, ModSeq)>> {
        let changes = self
            .store_flags(account_id, mailbox_id, uids, op, &FlagSet::system(flags))
            .await?;
        Ok(changes
            .into_iter()
            .map(|c| (c.uid, c.flags.system, c.modseq))
            .collect())
    }

    /// STORE (RFC 9051 §6.4.6): adds, removes or replaces system flags and
    /// keywords on the given UIDs; returns the new state of each message
    /// that changed. A change that would leave a message with more than
    /// [`MAX_KEYWORDS_PER_MESSAGE`] keywords changes nothing.
    pub(crate) async fn store_flags(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        change: &FlagSet,
    ) -> CoreResult<Vec<FlagChange>> {
        let txn = self.write_txn().await?;
        // The account check is part of the read (one statement less on
        // every STORE); finding nothing, the mailbox is looked up to tell
        // "not yours" (NotFound) from "no such messages".
        let owner = match txn.get_database_backend() {
            sea_orm::DbBackend::Postgres => "$1",
            _ => "?",
        };
        let rows = message::Entity::find()
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(Expr::cust_with_values(
                format!("mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = {owner})"),
                [account_id],
            ))
            .filter(message::Column::Uid.is_in(uids.iter().copied()))
            .all(&txn)
            .await?;
        if rows.is_empty() {
            txn.rollback().await?;
            self.mailbox_row(account_id, mailbox_id).await?;
            return Ok(Vec::new());
        }
        let mut changes: Vec<(message::Model, FlagSet)> = Vec::new();
        for r in rows {
            let old = FlagSet::from_row(r.flags, &r.keywords);
            let new = old.apply(op, change);
            if new != old {
                new.check_limit()?;
                changes.push((r, new));
            }
        }
        let mut out = Vec::new();
        if !changes.is_empty() {
            let modseq = bump_modseq(&txn, mailbox_id).await?;
            for (r, new) in changes {
                let uid = r.uid;
                let mut am: message::ActiveModel = r.into();
                am.flags = Set(new.system.bits());
                am.keywords = Set(new.keywords_column());
                am.modseq = Set(modseq);
                am.update(&txn).await?;
                out.push(FlagChange {
                    uid,
                    flags: new,
                    modseq,
                });
            }
        }
        txn.commit().await?;
        if !out.is_empty() {
            self.publish(ChangeEvent {
                account_id,
                mailbox_id: Some(mailbox_id),
                kind: ChangeKind::FlagsChanged {
                    uids: out.iter().map(|c| c.uid).collect(),
                },
            });
        }
        Ok(out)
    }

    /// Copies messages to another mailbox of the same account. Returns
    /// (source uid, new uid) pairs in UID order, as COPYUID wants them
    /// (RFC 4315 §3).
    pub(crate) async fn copy_messages(
        &self,
        account_id: AccountId,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> CoreResult<Vec<(Uid, Uid)>> {
        self.copy_inner(account_id, from, uids, to, false).await
    }

    /// Moves messages (RFC 6851): copy, then remove from the source whatever
    /// its flags.
    pub(crate) async fn move_messages(
        &self,
        account_id: AccountId,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> CoreResult<Vec<(Uid, Uid)>> {
        self.copy_inner(account_id, from, uids, to, true).await
    }

    async fn copy_inner(
        &self,
        account_id: AccountId,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
        remove_source: bool,
    ) -> CoreResult<Vec<(Uid, Uid)>> {
        self.mailbox_row(account_id, from).await?;
        self.mailbox_row(account_id, to).await?;
        // A MOVE within one mailbox is allowed (Dovecot does it too): the
        // messages get new UIDs at the end, and the old ones are expunged.
        let txn = self.write_txn().await?;
        let rows = message::Entity::find()
            .filter(message::Column::MailboxId.eq(from))
            .filter(message::Column::Uid.is_in(uids.iter().copied()))
            .order_by_asc(message::Column::Uid)
            .all(&txn)
            .await?;
        if rows.is_empty() {
            txn.rollback().await?;
            return Ok(Vec::new());
        }
        let added: i64 = rows.iter().map(|r| r.size).sum();
        if !remove_source {
            check_quota(&txn, account_id, added).await?;
        }
        let (first, modseq) = allocate_uids(&txn, to, rows.len() as i64).await?;
        let mut pairs = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let new_uid = Uid(first.0 + i as i64);
            let mut am: message::ActiveModel = r.clone().into();
            am.id = sea_orm::ActiveValue::NotSet;
            am.mailbox_id = Set(to);
            am.uid = Set(new_uid);
            am.modseq = Set(modseq);
            am.insert(&txn).await?;
            pairs.push((r.uid, new_uid));
        }
        let mut source_modseq = None;
        if remove_source {
            message::Entity::delete_many()
                .filter(message::Column::Id.is_in(rows.iter().map(|r| r.id)))
                .exec(&txn)
                .await?;
            source_modseq = Some(bump_modseq(&txn, from).await?);
        } else {
            let ids: Vec<BlobId> = rows.iter().map(|r| r.blob_id).collect();
            crate::blobs::adjust_refcounts(&txn, &ids, 1).await?;
            add_usage(&txn, account_id, added).await?;
        }
        txn.commit().await?;
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: Some(to),
            kind: ChangeKind::NewMessages {
                uids: pairs.iter().map(|p| p.1).collect(),
            },
        });
        if let Some(m) = source_modseq {
            let gone: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
            self.note_expunged(from, m, &gone);
        }
        if remove_source {
            self.publish(ChangeEvent {
                account_id,
                mailbox_id: Some(from),
                kind: ChangeKind::Expunged {
                    uids: pairs.iter().map(|p| p.0).collect(),
                },
            });
        }
        Ok(pairs)
    }

    /// Removes these messages for good (the webmail's delete in Trash, a
    /// replaced draft): flags them `\Deleted` and expunges just them.
    pub(crate) async fn destroy(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uids: &[Uid],
    ) -> CoreResult<Vec<Uid>> {
        self.set_flags(account_id, mailbox_id, uids, FlagOp::Add, Flags::DELETED)
            .await?;
        self.expunge(account_id, mailbox_id, Some(uids)).await
    }

    /// The UIDs just below and just above `uid` in a mailbox (older and
    /// newer neighbours, for next/previous), two indexed lookups instead of
    /// reading every UID.
    pub(crate) async fn neighbour_uids(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uid: Uid,
    ) -> CoreResult<(Option<Uid>, Option<Uid>)> {
        self.mailbox_row(account_id, mailbox_id).await?;
        let base = || {
            message::Entity::find()
                .select_only()
                .column(message::Column::Uid)
                .filter(message::Column::MailboxId.eq(mailbox_id))
        };
        let older = base()
            .filter(message::Column::Uid.lt(uid))
            .order_by_desc(message::Column::Uid)
            .into_tuple::<Uid>()
            .one(self.db())
            .await?;
        let newer = base()
            .filter(message::Column::Uid.gt(uid))
            .order_by_asc(message::Column::Uid)
            .into_tuple::<Uid>()
            .one(self.db())
            .await?;
        Ok((older, newer))
    }

    /// Removes messages flagged `\Deleted`; with `only` set, just those UIDs
    /// among them (UID EXPUNGE, RFC 4315 §2.1). Returns the removed UIDs.
    pub(crate) async fn expunge(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        only: Option<&[Uid]>,
    ) -> CoreResult<Vec<Uid>> {
        self.mailbox_row(account_id, mailbox_id).await?;
        let txn = self.write_txn().await?;
        let mut q = message::Entity::find()
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(Expr::cust(format!(
                "(flags & {}) <> 0",
                Flags::DELETED.bits()
            )));
        if let Some(uids) = only {
            q = q.filter(message::Column::Uid.is_in(uids.iter().copied()));
        }
        let rows = q.order_by_asc(message::Column::Uid).all(&txn).await?;
        if rows.is_empty() {
            txn.rollback().await?;
            return Ok(Vec::new());
        }
        message::Entity::delete_many()
            .filter(message::Column::Id.is_in(rows.iter().map(|r| r.id)))
            .exec(&txn)
            .await?;
        let blob_ids: Vec<BlobId> = rows.iter().map(|r| r.blob_id).collect();
        crate::blobs::release_blobs(&txn, &blob_ids).await?;
        add_usage(&txn, account_id, -rows.iter().map(|r| r.size).sum::<i64>()).await?;
        let modseq = bump_modseq(&txn, mailbox_id).await?;
        txn.commit().await?;
        let uids: Vec<Uid> = rows.iter().map(|r| r.uid).collect();
        self.note_expunged(mailbox_id, modseq, &uids);
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: Some(mailbox_id),
            kind: ChangeKind::Expunged { uids: uids.clone() },
        });
        Ok(uids)
    }

    /// Adds a message to a mailbox (a Sent copy, a draft).
    pub(crate) async fn append(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        raw: &[u8],
        flags: Flags,
        internal_date: Option<i64>,
    ) -> CoreResult<Uid> {
        self.append_flagged(
            account_id,
            mailbox_id,
            raw,
            &FlagSet::system(flags),
            internal_date,
        )
        .await
    }

    /// IMAP APPEND (RFC 9051 §6.3.12): the message with its system flags
    /// and keywords.
    pub(crate) async fn append_flagged(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        raw: &[u8],
        flags: &FlagSet,
        internal_date: Option<i64>,
    ) -> CoreResult<Uid> {
        flags.check_limit()?;
        self.mailbox_row(account_id, mailbox_id).await?;
        let meta = self.message_meta(raw);
        let size = raw.len() as i64;
        let txn = self.write_txn().await?;
        let blob_id = crate::blobs::put_blob(&txn, raw, 1, &meta).await?;
        check_quota(&txn, account_id, size).await?;
        let (uid, modseq) = allocate_uids(&txn, mailbox_id, 1).await?;
        let thread_id = find_thread(&txn, account_id, &meta).await?;
        insert_message(
            &txn,
            NewMessage {
                mailbox_id,
                uid,
                modseq,
                blob_id,
                flags: flags.system,
                keywords: &flags.keywords,
                internal_date: internal_date.unwrap_or_else(|| self.now()),
                size,
                meta: &meta,
                thread_id,
                delivered_to: "",
            },
        )
        .await?;
        add_usage(&txn, account_id, size).await?;
        txn.commit().await?;
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: Some(mailbox_id),
            kind: ChangeKind::NewMessages { uids: vec![uid] },
        });
        Ok(uid)
    }
}

#[cfg(test)]
mod keyword_tests {
    use super::*;

    fn kw(names: &[&str]) -> Vec<Keyword> {
        names.iter().map(|n| Keyword::parse(n).unwrap()).collect()
    }

    #[test]
    fn keywords_are_atoms() {
        for good in ["$Junk", "$label1", "NonJunk", "a.b-c_d", "~x"] {
            assert!(Keyword::parse(good).is_some(), "{good}");
        }
        for bad in [
            "", "\\Seen", "a b", "a]", "(x", "x*", "50%", "q\"", "{3}", "é",
        ] {
            assert!(Keyword::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Keyword::parse(&"k".repeat(Keyword::MAX_LEN)).is_some());
        assert!(Keyword::parse(&"k".repeat(Keyword::MAX_LEN + 1)).is_none());
    }

    #[test]
    fn store_operations_on_keywords() {
        let start = FlagSet {
            system: Flags::SEEN,
            keywords: kw(&["$Junk", "$label1"]),
        };
        let add = FlagSet {
            system: Flags::FLAGGED,
            keywords: kw(&["$JUNK", "$Forwarded"]),
        };
        let added = start.apply(FlagOp::Add, &add);
        assert_eq!(added.system, Flags::SEEN.union(Flags::FLAGGED));
        // The existing spelling stays; the new one is appended once.
        assert_eq!(added.keywords, kw(&["$Junk", "$label1", "$Forwarded"]));
        let removed = added.apply(
            FlagOp::Remove,
            &FlagSet {
                system: Flags::SEEN,
                keywords: kw(&["$LABEL1"]),
            },
        );
        assert_eq!(removed.system, Flags::FLAGGED);
        assert_eq!(removed.keywords, kw(&["$Junk", "$Forwarded"]));
        let replaced = removed.apply(
            FlagOp::Replace,
            &FlagSet {
                system: Flags::empty(),
                keywords: kw(&["a", "A", "b"]),
            },
        );
        assert_eq!(
            replaced,
            FlagSet {
                system: Flags::empty(),
                keywords: kw(&["a", "b"])
            }
        );
        let row = FlagSet::from_row(replaced.system.bits(), &replaced.keywords_column());
        assert_eq!(row, replaced);
    }
}
