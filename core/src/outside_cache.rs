//! The unified inbox: the local INBOX and every outside account's INBOX in
//! one list, newest first. Outside rows come from a header cache that a
//! background task keeps in step with each provider, so the page renders
//! from the database, never waiting on a slow or absent server.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::Core;
use crate::entities::{outside_account, outside_header};
use crate::error::CoreResult;
use crate::messages::{Flags, SortOrder};
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
    Local { uid: i64 },
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

    /// Page `page` (from 1) of the unified inbox: the local INBOX and the
    /// cached INBOX of each of the owner's outside accounts, newest first;
    /// with `query`, only rows whose sender or subject hold it. Returns the
    /// rows and the total.
    pub async fn unified_inbox(
        &self,
        owner: i32,
        page: u64,
        page_size: u64,
        query: &str,
    ) -> CoreResult<(Vec<UnifiedRow>, u64)> {
        let page = page.max(1);
        let want = page.saturating_mul(page_size);
        let accounts = self.outside_accounts(owner).await?;
        let ids: Vec<i32> = accounts.iter().map(|a| a.id.0).collect();
        let q = query.trim();
        // Case-insensitive on both databases (PostgreSQL's LIKE is not).
        let like = format!("%{}%", q.replace(['%', '_'], "").to_lowercase());

        // Outside: the newest `want` rows over all accounts, by the index.
        let mut outside_q =
            outside_header::Entity::find().filter(outside_header::Column::OutsideId.is_in(ids));
        if !q.is_empty() {
            use sea_orm::sea_query::{Expr, Func};
            let lower = |c: outside_header::Column| Expr::expr(Func::lower(Expr::col(c)));
            outside_q = outside_q.filter(
                sea_orm::Condition::any()
                    .add(lower(outside_header::Column::Subject).like(&like))
                    .add(lower(outside_header::Column::FromName).like(&like)),
            );
        }
        let outside_total = outside_q.clone().count(self.db()).await?;
        let outside_rows = outside_q
            .order_by_desc(outside_header::Column::Date)
            .limit(want)
            .all(self.db())
            .await?;

        // Local: the INBOX, or a search of it.
        let inbox = self.mailbox(owner, crate::mailboxes::INBOX).await?;
        let (local, local_total) = match (&inbox, q.is_empty()) {
            (None, _) => (Vec::new(), 0),
            (Some(ib), true) => {
                self.list_messages(owner, ib.id, 0, want, SortOrder::DateDesc)
                    .await?
            }
            (Some(ib), false) => self.search(owner, Some(ib.id), q, 0, want).await?,
        };

        let address = |id: i32| {
            accounts
                .iter()
                .find(|a| a.id.0 == id)
                .map(|a| a.settings.address.clone())
                .unwrap_or_default()
        };
        let mut rows: Vec<UnifiedRow> = local
            .into_iter()
            .map(|m| UnifiedRow {
                date: m.sent_date.unwrap_or(m.internal_date),
                source: UnifiedSource::Local { uid: m.uid },
                from: m.from,
                subject: m.subject,
                seen: m.flags.contains(Flags::SEEN),
                flagged: m.flags.contains(Flags::FLAGGED),
            })
            .chain(outside_rows.into_iter().map(|h| UnifiedRow {
                date: h.date,
                source: UnifiedSource::Outside {
                    account: OutsideAccountId(h.outside_id),
                    address: address(h.outside_id),
                    key: h.msg_key,
                },
                from: h.from_name,
                subject: h.subject,
                seen: h.seen,
                flagged: h.flagged,
            }))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.date));
        let skip = (page - 1).saturating_mul(page_size) as usize;
        let rows = rows
            .into_iter()
            .skip(skip)
            .take(page_size as usize)
            .collect();
        Ok((rows, local_total.saturating_add(outside_total)))
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
    pub async fn outside_cache_jobs(&self) -> CoreResult<Vec<(i32, OutsideAccountId)>> {
        Ok(outside_account::Entity::find()
            .filter(outside_account::Column::Secret.is_not_null())
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| (m.account_id, OutsideAccountId(m.id)))
            .collect())
    }
}
