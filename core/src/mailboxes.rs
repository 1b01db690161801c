//! Mailboxes (folders) of an account.
//!
//! Names use `/` as the hierarchy delimiter. `INBOX` is case-insensitive
//! (RFC 9051 §5.1) and always exists. Every account has the RFC 6154
//! special-use mailboxes listed in [`SPECIAL_MAILBOXES`].

use crate::db::InsertCommitted;
use crate::ids::{AccountId, BlobId, MailboxId, ModSeq, Uid};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::entities::{account, lone_subscription, mailbox, message};
use crate::error::{CoreError, CoreResult};
use crate::events::{ChangeEvent, ChangeKind};
use crate::{Core, messages};

pub const INBOX: &str = "INBOX";

/// Created with every account: name and RFC 6154 attribute.
pub const SPECIAL_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

pub const DELIMITER: char = '/';

/// Whether a new mailbox starts subscribed. An IMAP client subscribes
/// what it wants after CREATE itself (RFC 9051 §6.3.4 does not subscribe,
/// and neither does Dovecot); the webmail subscribes the folders it makes,
/// so desktop clients that show only subscribed folders show them too.
/// Either way, a name that was subscribed while it had no mailbox stays
/// subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewMailbox {
    Subscribed,
    Unsubscribed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub id: MailboxId,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub subscribed: bool,
    pub total: i64,
    pub unseen: i64,
    pub size: i64,
}

/// A mailbox's own row, without counts ([`Core::mailbox_head`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxHead {
    pub id: MailboxId,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
}

/// UIDVALIDITY must change whenever a name is reused for a new mailbox
/// (RFC 9051 §2.3.1.1); seconds since 2020 fit 32 bits until 2156.
pub(crate) fn uidvalidity_at(now: i64) -> i64 {
    (now - 1_577_836_800).clamp(1, u32::MAX as i64 - 16)
}

/// Canonical form of a mailbox name, or why it is refused.
pub fn normalize_name(name: &str) -> CoreResult<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(CoreError::invalid("mailbox name must have 1 to 255 bytes"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(CoreError::invalid(
            "mailbox name may not contain control characters, * or %",
        ));
    }
    if name.split(DELIMITER).any(str::is_empty) {
        return Err(CoreError::invalid(
            "mailbox name may not have an empty level (// or a leading or trailing /)",
        ));
    }
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_owned());
    }
    // `inbox/child` keeps the canonical parent name.
    if let Some((head, rest)) = name.split_once(DELIMITER)
        && head.eq_ignore_ascii_case(INBOX)
    {
        return Ok(format!("{INBOX}{DELIMITER}{rest}"));
    }
    Ok(name.to_owned())
}

#[derive(FromQueryResult)]
struct Counts {
    mailbox_id: MailboxId,
    total: i64,
    unseen: i64,
    size: i64,
}

impl Core {
    pub(crate) async fn list_mailboxes(&self, account_id: AccountId) -> CoreResult<Vec<Mailbox>> {
        let rows = mailbox::Entity::find()
            .filter(mailbox::Column::AccountId.eq(account_id))
            .order_by_asc(mailbox::Column::Name)
            .all(self.db())
            .await?;
        let ids: Vec<MailboxId> = rows.iter().map(|m| m.id).collect();
        let counts = message::Entity::find()
            .select_only()
            .column(message::Column::MailboxId)
            .column_as(Expr::col(message::Column::Id).count(), "total")
            .column_as(
                Expr::cust(format!(
                    "SUM(CASE WHEN (flags & {}) = 0 THEN 1 ELSE 0 END)",
                    messages::Flags::SEEN.bits()
                )),
                "unseen",
            )
            // PostgreSQL sums BIGINT into NUMERIC; cast back for one decoder.
            .column_as(Expr::cust("CAST(SUM(size) AS BIGINT)"), "size")
            .filter(message::Column::MailboxId.is_in(ids))
            .group_by(message::Column::MailboxId)
            .into_model::<Counts>()
            .all(self.db())
            .await?;
        let mut out: Vec<Mailbox> = rows
            .into_iter()
            .map(|m| {
                let c = counts.iter().find(|c| c.mailbox_id == m.id);
                Mailbox {
                    id: m.id,
                    name: m.name,
                    special_use: m.special_use,
                    uidvalidity: m.uidvalidity,
                    uidnext: m.uidnext,
                    highest_modseq: m.highest_modseq,
                    subscribed: m.subscribed,
                    total: c.map_or(0, |c| c.total),
                    unseen: c.map_or(0, |c| c.unseen),
                    size: c.map_or(0, |c| c.size),
                }
            })
            .collect();
        // INBOX first, then the special-use folders in their usual order,
        // then the user's own alphabetically: the order every client shows.
        out.sort_by_key(|m| {
            let rank = SPECIAL_MAILBOXES
                .iter()
                .position(|(n, _)| *n == m.name)
                .unwrap_or(SPECIAL_MAILBOXES.len());
            (rank, m.name.to_lowercase())
        });
        Ok(out)
    }

    /// A mailbox's own row by name, without the message counts (those read
    /// every message of the account's mailboxes; an IMAP APPEND spent most
    /// of its time there): what IMAP needs to select, append or copy.
    pub(crate) async fn mailbox_head(
        &self,
        account_id: AccountId,
        name: &str,
    ) -> CoreResult<Option<MailboxHead>> {
        let name = normalize_name(name)?;
        Ok(mailbox::Entity::find()
            .filter(mailbox::Column::AccountId.eq(account_id))
            .filter(mailbox::Column::Name.eq(name))
            .one(self.db())
            .await?
            .map(|m| MailboxHead {
                id: m.id,
                name: m.name,
                special_use: m.special_use,
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                highest_modseq: m.highest_modseq,
            }))
    }

    pub(crate) async fn mailbox(
        &self,
        account_id: AccountId,
        name: &str,
    ) -> CoreResult<Option<Mailbox>> {
        let name = normalize_name(name)?;
        Ok(self
            .list_mailboxes(account_id)
            .await?
            .into_iter()
            .find(|m| m.name == name))
    }

    pub(crate) async fn mailbox_row(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<mailbox::Model> {
        mailbox::Entity::find_by_id(mailbox_id)
            .filter(mailbox::Column::AccountId.eq(account_id))
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {mailbox_id}")))
    }

    /// RFC 3501 §2.3.2 `\Recent`: the first read-write session to see a
    /// message claims it. Moves the mailbox's mark up to `upto` (a UID,
    /// exclusive) and returns where it was, so the caller's recent messages
    /// are those with `old <= uid < upto`. Two sessions racing for the same
    /// messages cannot both win: the update is conditional on the old mark.
    pub(crate) async fn claim_recent(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        upto: Uid,
    ) -> CoreResult<Uid> {
        // The sessions of this process take turns per mailbox, and each
        // turn knows how far this process has claimed already: when new
        // mail arrives, fifty sessions on one mailbox notice it at once,
        // and all but the first would otherwise write to the database
        // only to lose the race. The mark only grows, so a claim this
        // process saw is a floor for the database's too (other nodes may
        // have claimed further; the conditional update below decides).
        let turn = self.inner.recent_claims.turn(mailbox_id);
        let mut known = turn.lock().await;
        if *known >= upto {
            return Ok(upto);
        }
        for _ in 0..8 {
            let old = self.mailbox_row(account_id, mailbox_id).await?.recent_uid;
            if old >= upto {
                *known = old;
                return Ok(upto);
            }
            let n = mailbox::Entity::update_many()
                .col_expr(mailbox::Column::RecentUid, Expr::value(upto))
                .filter(mailbox::Column::Id.eq(mailbox_id))
                .filter(mailbox::Column::RecentUid.eq(old))
                .exec(self.wdb())
                .await?
                .rows_affected;
            if n == 1 {
                *known = upto;
                return Ok(old);
            }
        }
        // Lost every race: others claimed them.
        Ok(upto)
    }

    /// The `\Recent` mark without claiming (EXAMINE, STATUS).
    pub(crate) async fn recent_mark(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
    ) -> CoreResult<Uid> {
        Ok(self.mailbox_row(account_id, mailbox_id).await?.recent_uid)
    }

    /// Creates a mailbox, and the superior names it needs that do not exist
    /// yet (`a/b/c` also makes `a` and `a/b`, as RFC 9051 §6.3.4 says a
    /// server SHOULD).
    pub(crate) async fn create_mailbox(
        &self,
        account_id: AccountId,
        name: &str,
        subscribe: NewMailbox,
    ) -> CoreResult<Mailbox> {
        let name = normalize_name(name)?;
        let existing: Vec<(String, i64)> = mailbox::Entity::find()
            .select_only()
            .column(mailbox::Column::Name)
            .column(mailbox::Column::Uidvalidity)
            .filter(mailbox::Column::AccountId.eq(account_id))
            .into_tuple()
            .all(self.db())
            .await?;
        if existing.iter().any(|(n, _)| *n == name) {
            return Err(CoreError::Conflict(format!("mailbox {name}")));
        }
        // A reused name must get a fresh UIDVALIDITY even within one second,
        // also when the mailbox that had it was deleted.
        let floor: i64 = account::Entity::find_by_id(account_id)
            .select_only()
            .column(account::Column::UidvalidityFloor)
            .into_tuple()
            .one(self.db())
            .await?
            .unwrap_or(0);
        let mut newest = existing
            .iter()
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
            .max(floor);
        let lone = self.lone_subscription_rows(account_id).await?;
        let levels: Vec<usize> = name
            .match_indices(DELIMITER)
            .map(|(i, _)| i)
            .chain([name.len()])
            .collect();
        for end in levels {
            let path = &name[..end];
            if existing.iter().any(|(n, _)| n == path) {
                continue;
            }
            let uidvalidity = uidvalidity_at(self.now()).max(newest + 1);
            newest = uidvalidity;
            let inserted = mailbox::ActiveModel {
                account_id: Set(account_id),
                name: Set(path.to_owned()),
                special_use: Set(None),
                uidvalidity: Set(uidvalidity),
                uidnext: Set(Uid(1)),
                highest_modseq: Set(ModSeq(1)),
                subscribed: Set(subscribe == NewMailbox::Subscribed || lone.contains(path)),
                ..Default::default()
            }
            .insert_committed(self.wdb())
            .await;
            match inserted {
                // The mailbox holds the subscription now.
                Ok(_) if lone.contains(path) => {
                    lone_subscription::Entity::delete_many()
                        .filter(lone_subscription::Column::AccountId.eq(account_id))
                        .filter(lone_subscription::Column::Name.eq(path))
                        .exec(self.wdb())
                        .await?;
                }
                Ok(_) => {}
                // A superior another session made meanwhile is fine.
                Err(CoreError::Conflict(_)) if end < name.len() => {}
                Err(e) => return Err(e),
            }
        }
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: None,
            kind: ChangeKind::MailboxesChanged,
        });
        self.mailbox(account_id, &name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {name}")))
    }

    /// Renames a mailbox and its children (`a` -> `b` also moves `a/x`).
    pub(crate) async fn rename_mailbox(
        &self,
        account_id: AccountId,
        from: &str,
        to: &str,
    ) -> CoreResult<()> {
        let from = normalize_name(from)?;
        let to = normalize_name(to)?;
        if from == INBOX {
            return Err(CoreError::invalid("INBOX cannot be renamed"));
        }
        if to == INBOX || to.starts_with(&format!("{from}{DELIMITER}")) {
            return Err(CoreError::invalid(format!("cannot rename {from} to {to}")));
        }
        let all = mailbox::Entity::find()
            .filter(mailbox::Column::AccountId.eq(account_id))
            .all(self.db())
            .await?;
        if !all.iter().any(|m| m.name == from) {
            return Err(CoreError::NotFound(format!("mailbox {from}")));
        }
        if all.iter().any(|m| m.name == to) {
            return Err(CoreError::Conflict(format!("mailbox {to}")));
        }
        let prefix = format!("{from}{DELIMITER}");
        let txn = self.write_txn().await?;
        for m in all
            .into_iter()
            .filter(|m| m.name == from || m.name.starts_with(&prefix))
        {
            let new_name = format!("{to}{}", &m.name[from.len()..]);
            let mut am: mailbox::ActiveModel = m.into();
            am.name = Set(new_name);
            am.update(&txn).await?;
        }
        txn.commit().await?;
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: None,
            kind: ChangeKind::MailboxesChanged,
        });
        Ok(())
    }

    /// Deletes a mailbox and its messages. Children stay (RFC 9051 §6.3.5).
    pub(crate) async fn delete_mailbox(&self, account_id: AccountId, name: &str) -> CoreResult<()> {
        let name = normalize_name(name)?;
        if name == INBOX {
            return Err(CoreError::invalid("INBOX cannot be deleted"));
        }
        let m = self
            .mailbox(account_id, &name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {name}")))?;
        let txn = self.write_txn().await?;
        let msgs = message::Entity::find()
            .filter(message::Column::MailboxId.eq(m.id))
            .all(&txn)
            .await?;
        let freed: i64 = msgs.iter().map(|r| r.size).sum();
        let blob_ids: Vec<BlobId> = msgs.iter().map(|r| r.blob_id).collect();
        message::Entity::delete_many()
            .filter(message::Column::MailboxId.eq(m.id))
            .exec(&txn)
            .await?;
        crate::blobs::release_blobs(&txn, &blob_ids).await?;
        messages::add_usage(&txn, account_id, -freed).await?;
        mailbox::Entity::delete_by_id(m.id).exec(&txn).await?;
        // The next mailbox made under this name needs a greater UIDVALIDITY.
        account::Entity::update_many()
            .col_expr(
                account::Column::UidvalidityFloor,
                Expr::value(m.uidvalidity),
            )
            .filter(account::Column::Id.eq(account_id))
            .filter(account::Column::UidvalidityFloor.lt(m.uidvalidity))
            .exec(&txn)
            .await?;
        // RFC 9051 §6.3.7: the subscription outlives the mailbox.
        if m.subscribed {
            keep_lone_subscription(&txn, account_id, &name).await?;
        }
        txn.commit().await?;
        self.inner.index_cache.forget(m.id);
        self.inner.recent_claims.forget(m.id);
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: None,
            kind: ChangeKind::MailboxesChanged,
        });
        Ok(())
    }

    /// SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8). A name with
    /// no mailbox may be subscribed too (Dovecot allows it; a client may
    /// subscribe before it creates), and unsubscribing a name that was
    /// never subscribed is `NotFound`.
    pub(crate) async fn set_subscribed(
        &self,
        account_id: AccountId,
        name: &str,
        on: bool,
    ) -> CoreResult<()> {
        let name = normalize_name(name)?;
        let res = mailbox::Entity::update_many()
            .col_expr(mailbox::Column::Subscribed, Expr::value(on))
            .filter(mailbox::Column::AccountId.eq(account_id))
            .filter(mailbox::Column::Name.eq(name.clone()))
            .exec(self.wdb())
            .await?;
        let lone = lone_subscription::Entity::find()
            .filter(lone_subscription::Column::AccountId.eq(account_id))
            .filter(lone_subscription::Column::Name.eq(name.clone()));
        match (on, res.rows_affected) {
            (true, 0) => keep_lone_subscription(self.wdb(), account_id, &name).await?,
            (true, _) => {}
            (false, n) => {
                let had_lone = lone.clone().one(self.db()).await?.is_some();
                if had_lone {
                    lone_subscription::Entity::delete_many()
                        .filter(lone_subscription::Column::AccountId.eq(account_id))
                        .filter(lone_subscription::Column::Name.eq(name.clone()))
                        .exec(self.wdb())
                        .await?;
                }
                if n == 0 && !had_lone {
                    return Err(CoreError::NotFound(format!("subscription {name}")));
                }
            }
        }
        Ok(())
    }

    /// Subscribed names that have no mailbox (deleted since, or not made
    /// yet), for LSUB and LIST (SUBSCRIBED).
    pub(crate) async fn lone_subscriptions(
        &self,
        account_id: AccountId,
    ) -> CoreResult<Vec<String>> {
        let mut names: Vec<String> = self
            .lone_subscription_rows(account_id)
            .await?
            .into_iter()
            .collect();
        let boxes = self.list_mailboxes(account_id).await?;
        // A mailbox made since under that name holds the subscription now.
        names.retain(|n| !boxes.iter().any(|b| b.name == *n));
        names.sort();
        Ok(names)
    }
}

impl Core {
    async fn lone_subscription_rows(
        &self,
        account_id: AccountId,
    ) -> CoreResult<std::collections::BTreeSet<String>> {
        Ok(lone_subscription::Entity::find()
            .filter(lone_subscription::Column::AccountId.eq(account_id))
            .all(self.db())
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect())
    }
}

/// Records a subscription to a name with no mailbox (once).
async fn keep_lone_subscription<C: sea_orm::ConnectionTrait>(
    db: &C,
    account_id: AccountId,
    name: &str,
) -> CoreResult<()> {
    lone_subscription::Entity::insert(lone_subscription::ActiveModel {
        account_id: Set(account_id),
        name: Set(name.to_owned()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            lone_subscription::Column::AccountId,
            lone_subscription::Column::Name,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The ids of an account's mailboxes: what a query over "all of this
/// account's mail" filters its messages by.
pub(crate) async fn mailbox_ids<C: sea_orm::ConnectionTrait>(
    db: &C,
    account_id: AccountId,
) -> CoreResult<Vec<i32>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    Ok(crate::entities::mailbox::Entity::find()
        .select_only()
        .column(crate::entities::mailbox::Column::Id)
        .filter(crate::entities::mailbox::Column::AccountId.eq(account_id))
        .into_tuple::<i32>()
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize_name("inbox").unwrap(), "INBOX");
        assert_eq!(normalize_name("Inbox/Lists").unwrap(), "INBOX/Lists");
        assert_eq!(normalize_name("Work/2026").unwrap(), "Work/2026");
        for bad in ["", "/x", "x/", "a//b", "a*", "a%b", "a\nb"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
    }
}
