//! The unified inbox: the local INBOX and every outside account's INBOX in
//! one list, newest first. Outside rows come from a header cache that a
//! background task keeps in step with each provider, so the page renders
//! from the database, never waiting on a slow or absent server.

use crate::ids::{AccountId, Uid};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::Core;
use crate::entities::{message, outside_account, outside_header};
use crate::error::CoreResult;
use crate::messages::Flags;
use crate::outside::OutsideAccountId;

/// One cached outside header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedHeader {
    pub key: String,
    /// Unix seconds, from the Date: header (0 when it has none).
    pub date: i64,
    pub from: String,
    pub subject: String,
    pub size: i64,
    pub seen: bool,
    pub flagged: bool,
}

/// Where a unified row lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnifiedSource {
    /// The local INBOX, by UID.
    Local { uid: Uid },
    /// An outside account's INBOX, by its message key there.
    Outside {
        account: OutsideAccountId,
        address: String,
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedRow {
    pub source: UnifiedSource,
    pub date: i64,
    pub from: String,
    pub subject: String,
    pub seen: bool,
    pub flagged: bool,
}

/// A row's place in the unified order. Rows are shown newest first: by
/// date, then (at one date) local rows by UID before outside rows by
/// account and key. The derived order is ascending, so it is read
/// backwards; `Outside` is declared first so it sorts below `Local`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnifiedKey {
    pub date: i64,
    pub at: UnifiedSlot,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnifiedSlot {
    Outside { account: i32, key: String },
    Local { uid: Uid },
}

/// Longest key a page link may carry (a POP3 UIDL is at most 70 bytes).
const MAX_KEY_TEXT: usize = 128;

impl UnifiedKey {
    /// The form a page link carries: `date.lUID` or `date.oACCOUNT.KEY`.
    pub fn encode(&self) -> String {
        match &self.at {
            UnifiedSlot::Local { uid } => format!("{}.l{uid}", self.date),
            UnifiedSlot::Outside { account, key } => format!("{}.o{account}.{key}", self.date),
        }
    }

    /// Reads [`UnifiedKey::encode`]'s form back; None for anything else
    /// (a link is client input).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_KEY_TEXT {
            return None;
        }
        let (date, rest) = s.split_once('.')?;
        let date = date.parse().ok()?;
        let at = if let Some(uid) = rest.strip_prefix('l') {
            UnifiedSlot::Local {
                uid: uid.parse().ok()?,
            }
        } else {
            let (account, key) = rest.strip_prefix('o')?.split_once('.')?;
            UnifiedSlot::Outside {
                account: account.parse().ok()?,
                key: key.to_owned(),
            }
        };
        Some(UnifiedKey { date, at })
    }
}

/// Which page of the unified inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnifiedAt {
    Newest,
    /// The rows just older than this one.
    Older(UnifiedKey),
    /// The rows just newer than this one.
    Newer(UnifiedKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedPage {
    /// Newest first.
    pub rows: Vec<UnifiedRow>,
    /// Rows in the whole list (local search hits are counted up to
    /// [`crate::search::COUNT_CAP`]).
    pub total: u64,
    pub has_newer: bool,
    pub has_older: bool,
}

impl UnifiedRow {
    pub fn key(&self) -> UnifiedKey {
        let at = match &self.source {
            UnifiedSource::Local { uid } => UnifiedSlot::Local { uid: *uid },
            UnifiedSource::Outside { account, key, .. } => UnifiedSlot::Outside {
                account: account.0,
                key: key.clone(),
            },
        };
        UnifiedKey {
            date: self.date,
            at,
        }
    }
}

/// Outside rows of `account` past `k`: older than it, or with `newer`,
/// newer than it (see [`UnifiedKey`] for the order).
fn outside_past(
    k: &UnifiedKey,
    account: i32,
    newer: bool,
    backend: sea_orm::DbBackend,
) -> sea_orm::Condition {
    use outside_header::Column as C;
    use sea_orm::Condition;
    let d = k.date;
    match (&k.at, newer) {
        // Every outside row at `d` sorts below a local one.
        (UnifiedSlot::Local { .. }, false) => Condition::all().add(C::Date.lte(d)),
        (UnifiedSlot::Local { .. }, true) => Condition::all().add(C::Date.gt(d)),
        (UnifiedSlot::Outside { account: a, .. }, false) if account < *a => {
            Condition::all().add(C::Date.lte(d))
        }
        (UnifiedSlot::Outside { account: a, .. }, false) if account > *a => {
            Condition::all().add(C::Date.lt(d))
        }
        (UnifiedSlot::Outside { account: a, .. }, true) if account < *a => {
            Condition::all().add(C::Date.gt(d))
        }
        (UnifiedSlot::Outside { account: a, .. }, true) if account > *a => {
            Condition::all().add(C::Date.gte(d))
        }
        // `date <= d AND (date < d OR key < k)`: the first part bounds
        // the index range, the second skips the rows already shown.
        (UnifiedSlot::Outside { key, .. }, false) => Condition::all().add(C::Date.lte(d)).add(
            Condition::any()
                .add(C::Date.lt(d))
                .add(key_order(backend).lt(key.as_str())),
        ),
        (UnifiedSlot::Outside { key, .. }, true) => Condition::all().add(C::Date.gte(d)).add(
            Condition::any()
                .add(C::Date.gt(d))
                .add(key_order(backend).gt(key.as_str())),
        ),
    }
}

/// An outside row's key as the unified order compares it: byte by byte,
/// as Rust's merge does. SQLite compares text that way already; a
/// PostgreSQL database's collation may not (it can skip punctuation, which
/// POP3 UIDLs may hold), so there the comparison names the "C" collation.
fn key_order(backend: sea_orm::DbBackend) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::Expr;
    match backend {
        sea_orm::DbBackend::Postgres => Expr::expr(Expr::cust(r#""msg_key" COLLATE "C""#)),
        _ => Expr::col(outside_header::Column::MsgKey),
    }
}

/// Local rows past `k`, as [`outside_past`].
fn local_past(k: &UnifiedKey, newer: bool) -> sea_orm::Condition {
    use message::Column as C;
    use sea_orm::Condition;
    let d = k.date;
    match (&k.at, newer) {
        // Every local row at `d` sorts above an outside one.
        (UnifiedSlot::Outside { .. }, false) => Condition::all().add(C::InternalDate.lt(d)),
        (UnifiedSlot::Outside { .. }, true) => Condition::all().add(C::InternalDate.gte(d)),
        (UnifiedSlot::Local { uid }, false) => Condition::all().add(C::InternalDate.lte(d)).add(
            Condition::any()
                .add(C::InternalDate.lt(d))
                .add(C::Uid.lt(*uid)),
        ),
        (UnifiedSlot::Local { uid }, true) => Condition::all().add(C::InternalDate.gte(d)).add(
            Condition::any()
                .add(C::InternalDate.gt(d))
                .add(C::Uid.gt(*uid)),
        ),
    }
}

/// Largest subject or name kept in the cache.
const MAX_TEXT: usize = 300;

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

impl Core {
    /// The cached keys of an account, with the UIDVALIDITY they belong to.
    pub async fn outside_cached_keys(
        &self,
        id: OutsideAccountId,
    ) -> CoreResult<Vec<(String, i64)>> {
        Ok(outside_header::Entity::find()
            .filter(outside_header::Column::OutsideId.eq(id.0))
            .select_only()
            .column(outside_header::Column::MsgKey)
            .column(outside_header::Column::Validity)
            .into_tuple::<(String, i64)>()
            .all(self.db())
            .await?)
    }

    /// Brings an account's cache in step: `add` upserted (flags updated),
    /// `remove` deleted; all under `validity` (a different one drops every
    /// older row first: those UIDs name other messages now).
    pub async fn update_outside_cache(
        &self,
        id: OutsideAccountId,
        validity: i64,
        add: &[CachedHeader],
        remove: &[String],
    ) -> CoreResult<()> {
        let txn = self.write_txn().await?;
        outside_header::Entity::delete_many()
            .filter(outside_header::Column::OutsideId.eq(id.0))
            .filter(outside_header::Column::Validity.ne(validity))
            .exec(&txn)
            .await?;
        for chunk in remove.chunks(500) {
            outside_header::Entity::delete_many()
                .filter(outside_header::Column::OutsideId.eq(id.0))
                .filter(outside_header::Column::MsgKey.is_in(chunk.iter().cloned()))
                .exec(&txn)
                .await?;
        }
        // Multi-row upserts, a few hundred rows per statement (parameter
        // limits of both databases stay far away).
        for chunk in add.chunks(200) {
            let rows = chunk.iter().map(|h| outside_header::ActiveModel {
                outside_id: Set(id.0),
                msg_key: Set(h.key.clone()),
                validity: Set(validity),
                date: Set(h.date),
                from_name: Set(clip(&h.from)),
                subject: Set(clip(&h.subject)),
                size: Set(h.size),
                seen: Set(h.seen),
                flagged: Set(h.flagged),
            });
            outside_header::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        outside_header::Column::OutsideId,
                        outside_header::Column::MsgKey,
                    ])
                    .update_columns([
                        outside_header::Column::Seen,
                        outside_header::Column::Flagged,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// One page of the unified inbox: the local INBOX and the cached INBOX
    /// of each of the owner's outside accounts, newest first; with
    /// `query`, only rows whose sender or subject hold it (local rows:
    /// the full-text index). Paged by key, never by offset, so page 400
    /// costs what page 1 costs: each source reads at most `page_size + 1`
    /// rows past the anchor, through its index.
    pub(crate) async fn unified_inbox(
        &self,
        owner: AccountId,
        at: &UnifiedAt,
        page_size: u64,
        query: &str,
    ) -> CoreResult<UnifiedPage> {
        use sea_orm::sea_query::{Expr, Func};
        let n = page_size.max(1);
        let want = n.saturating_add(1);
        let (anchor, newer) = match at {
            UnifiedAt::Newest => (None, false),
            UnifiedAt::Older(k) => (Some(k), false),
            UnifiedAt::Newer(k) => (Some(k), true),
        };
        let accounts = self.outside_accounts(owner).await?;
        let q = query.trim();
        // Case-insensitive on both databases (PostgreSQL's LIKE is not).
        let like = format!("%{}%", q.replace(['%', '_'], "").to_lowercase());
        let matching = || {
            let lower = |c: outside_header::Column| Expr::expr(Func::lower(Expr::col(c)));
            sea_orm::Condition::any()
                .add(lower(outside_header::Column::Subject).like(&like))
                .add(lower(outside_header::Column::FromName).like(&like))
        };

        let backend = self.db().get_database_backend();
        let mut rows: Vec<UnifiedRow> = Vec::new();
        let ids: Vec<i32> = accounts.iter().map(|a| a.id.0).collect();
        let mut count_q =
            outside_header::Entity::find().filter(outside_header::Column::OutsideId.is_in(ids));
        if !q.is_empty() {
            count_q = count_q.filter(matching());
        }
        let outside_total = count_q.count(self.db()).await?;
        // Outside: one query per account, each walking its
        // (account, date, key) index from the anchor.
        for acct in &accounts {
            let mut sel = outside_header::Entity::find()
                .filter(outside_header::Column::OutsideId.eq(acct.id.0));
            if !q.is_empty() {
                sel = sel.filter(matching());
            }
            if let Some(k) = anchor {
                sel = sel.filter(outside_past(k, acct.id.0, newer, backend));
            }
            sel = if newer {
                sel.order_by_asc(outside_header::Column::Date)
                    .order_by(key_order(backend), sea_orm::Order::Asc)
            } else {
                sel.order_by_desc(outside_header::Column::Date)
                    .order_by(key_order(backend), sea_orm::Order::Desc)
            };
            let address = acct.settings.address.clone();
            rows.extend(
                sel.limit(want)
                    .all(self.db())
                    .await?
                    .into_iter()
                    .map(|h| UnifiedRow {
                        date: h.date,
                        source: UnifiedSource::Outside {
                            account: OutsideAccountId(h.outside_id),
                            address: address.clone(),
                            key: h.msg_key,
                        },
                        from: h.from_name,
                        subject: h.subject,
                        seen: h.seen,
                        flagged: h.flagged,
                    }),
            );
        }

        // Local: the INBOX, or its matches in the full-text index.
        let mut local_total = 0;
        if let Some(ib) = self.mailbox(owner, crate::mailboxes::INBOX).await? {
            let sel = if q.is_empty() {
                local_total = u64::try_from(ib.total).unwrap_or(0);
                Some(message::Entity::find().filter(message::Column::MailboxId.eq(ib.id)))
            } else {
                let sel = self.search_select(owner, Some(ib.id), q).await?;
                if let Some(sel) = &sel {
                    local_total = self.count_capped(sel.clone()).await?;
                }
                sel
            };
            if let Some(mut sel) = sel {
                if let Some(k) = anchor {
                    sel = sel.filter(local_past(k, newer));
                }
                sel = if newer {
                    sel.order_by_asc(message::Column::InternalDate)
                        .order_by_asc(message::Column::Uid)
                } else {
                    sel.order_by_desc(message::Column::InternalDate)
                        .order_by_desc(message::Column::Uid)
                };
                rows.extend(sel.limit(want).all(self.db()).await?.into_iter().map(|m| {
                    UnifiedRow {
                        date: m.internal_date,
                        source: UnifiedSource::Local { uid: m.uid },
                        from: m.from_addr,
                        subject: m.subject,
                        seen: Flags::from_bits(m.flags).contains(Flags::SEEN),
                        flagged: Flags::from_bits(m.flags).contains(Flags::FLAGGED),
                    }
                }));
            }
        }

        // Merge: the `n` nearest the anchor in its direction, then newest
        // first; one more tells whether the list goes on that way.
        rows.sort_by_key(UnifiedRow::key);
        if !newer {
            rows.reverse();
        }
        let more = rows.len() as u64 > n;
        rows.truncate(n as usize);
        if newer {
            rows.reverse();
        }
        let (has_newer, has_older) = match at {
            UnifiedAt::Newest => (false, more),
            UnifiedAt::Older(_) => (true, more),
            UnifiedAt::Newer(_) => (more, true),
        };
        Ok(UnifiedPage {
            rows,
            total: local_total.saturating_add(outside_total),
            has_newer,
            has_older,
        })
    }

    /// After the webmail moved, deleted or flagged an outside INBOX
    /// message: the cache follows at once instead of at the next refresh.
    /// `gone`: the row goes; otherwise the flags given are set.
    pub async fn touch_outside_cached(
        &self,
        id: OutsideAccountId,
        key: &str,
        gone: bool,
        seen: Option<bool>,
        flagged: Option<bool>,
    ) -> CoreResult<()> {
        let q = outside_header::Entity::find()
            .filter(outside_header::Column::OutsideId.eq(id.0))
            .filter(outside_header::Column::MsgKey.eq(key));
        if gone {
            outside_header::Entity::delete_many()
                .filter(outside_header::Column::OutsideId.eq(id.0))
                .filter(outside_header::Column::MsgKey.eq(key))
                .exec(self.wdb())
                .await?;
            return Ok(());
        }
        let Some(row) = q.one(self.db()).await? else {
            return Ok(());
        };
        let mut am: outside_header::ActiveModel = row.into();
        if let Some(s) = seen {
            am.seen = Set(s);
        }
        if let Some(f) = flagged {
            am.flagged = Set(f);
        }
        sea_orm::ActiveModelTrait::update(am, self.wdb()).await?;
        Ok(())
    }

    /// The outside accounts whose cache a background task keeps fresh:
    /// those with a stored password.
    pub async fn outside_cache_jobs(&self) -> CoreResult<Vec<(AccountId, OutsideAccountId)>> {
        Ok(outside_account::Entity::find()
            .filter(outside_account::Column::Secret.is_not_null())
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| (m.account_id, OutsideAccountId(m.id)))
            .collect())
    }
}
