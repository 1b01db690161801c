//! Fetching an outside account's new mail into the owner's INBOX, on a
//! schedule (the Gmail "check mail from other accounts" gap). The server's
//! fetcher talks to the outside server; this module keeps the schedule,
//! the status the user sees, and exactly-once storage: each fetched
//! message's key (POP3 UIDL, or IMAP UIDVALIDITY and UID) is inserted in
//! the same transaction that stores the message, so a crash between
//! storing and deleting on the server, or in the middle of a batch,
//! neither loses nor duplicates anything.
//!
//! Fetched mail goes straight into the store rather than the spool: the
//! outside server still holds it, so when the database is down the
//! fetcher simply tries again later.

use crate::ids::AccountId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::Core;
use crate::delivery::{Envelope, LocalCopy};
use crate::entities::{outside_account, outside_fetched};
use crate::error::{CoreError, CoreResult};
use crate::outside::{OutsideAccountId, OutsideLogin};

/// What the fetcher does with an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchMode {
    Off,
    /// Fetch, and leave the messages on the server.
    Keep,
    /// Fetch, then delete them on the server (POP3).
    Delete,
}

impl FetchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FetchMode::Off => "",
            FetchMode::Keep => "keep",
            FetchMode::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "off" => Some(FetchMode::Off),
            "keep" => Some(FetchMode::Keep),
            "delete" => Some(FetchMode::Delete),
            _ => None,
        }
    }
}

/// The fetch settings and how the last runs went, as the page shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchState {
    pub mode: FetchMode,
    pub next_at: i64,
    pub failures: i32,
    pub status: Option<String>,
    pub cursor: String,
    pub fetched_total: i64,
}

impl FetchState {
    pub(crate) fn of(m: &outside_account::Model) -> Self {
        FetchState {
            mode: FetchMode::parse(&m.fetch_mode).unwrap_or(FetchMode::Off),
            next_at: m.fetch_next_at,
            failures: m.fetch_failures,
            status: m.fetch_status.clone(),
            cursor: m.fetch_cursor.clone(),
            fetched_total: m.fetched_total,
        }
    }
}

/// One account the fetcher should visit now.
#[derive(Clone, Debug)]
pub struct FetchJob {
    pub id: OutsideAccountId,
    pub owner: AccountId,
    pub owner_address: String,
    pub login: OutsideLogin,
    pub state: FetchState,
}

/// How long to wait after `failures` failed runs in a row: the interval,
/// doubled per failure, at most an hour.
pub fn backoff_secs(interval: i64, failures: i32) -> i64 {
    let shift = failures.clamp(0, 12) as u32;
    interval.max(1).saturating_mul(1 << shift).min(3600)
}

impl Core {
    /// Turns fetching on or off for one of the owner's accounts; on, the
    /// first run is due at once. Only a stored password can be used by a
    /// fetch that runs while nobody is signed in.
    pub async fn set_outside_fetch(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
        mode: FetchMode,
    ) -> CoreResult<()> {
        let row = outside_account::Entity::find_by_id(id.0)
            .filter(outside_account::Column::AccountId.eq(owner))
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("outside account {id}")))?;
        if mode != FetchMode::Off && row.secret.is_none() {
            return Err(CoreError::invalid(
                "fetching runs while you are away, so it needs the password stored: \
                 add the account again with \"Remember the password\"",
            ));
        }
        if mode == FetchMode::Delete && row.protocol != "pop3" {
            return Err(CoreError::invalid(
                "delete after fetching is for POP3; IMAP mail stays on the server",
            ));
        }
        let mut am: outside_account::ActiveModel = row.into();
        am.fetch_mode = Set(mode.as_str().to_owned());
        am.fetch_next_at = Set(0);
        am.fetch_failures = Set(0);
        am.fetch_status = Set(None);
        am.update(self.wdb()).await?;
        Ok(())
    }

    /// The accounts whose fetch is due at `now`, with their logins. An
    /// account whose stored password no longer opens is skipped and says
    /// so in its status.
    pub async fn outside_fetch_due(&self, now: i64) -> CoreResult<Vec<FetchJob>> {
        let rows = outside_account::Entity::find()
            .filter(outside_account::Column::FetchMode.ne(""))
            .filter(outside_account::Column::FetchNextAt.lte(now))
            .all(self.db())
            .await?;
        let mut jobs = Vec::new();
        for row in rows {
            let id = OutsideAccountId(row.id);
            let owner = row.account_id;
            let Some(owner_acct) = self.account_by_id(owner).await? else {
                continue;
            };
            match self.outside_login(owner, id, "").await {
                Ok(Some(login)) => jobs.push(FetchJob {
                    id,
                    owner,
                    owner_address: owner_acct.address,
                    login,
                    state: FetchState::of(&row),
                }),
                Ok(None) => {}
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) => {
                    self.finish_outside_fetch(id, Err(e.to_string()), now, 3600)
                        .await?;
                }
            }
        }
        Ok(jobs)
    }

    /// Which of `keys` this account has fetched already.
    pub async fn outside_fetched_keys(
        &self,
        id: OutsideAccountId,
        keys: &[String],
    ) -> CoreResult<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        // In chunks: a maildrop of 10,000s must not become one statement
        // with more parameters than the database takes.
        for chunk in keys.chunks(500) {
            let rows = outside_fetched::Entity::find()
                .filter(outside_fetched::Column::OutsideId.eq(id.0))
                .filter(outside_fetched::Column::MsgKey.is_in(chunk.iter().cloned()))
                .all(self.db())
                .await?;
            out.extend(rows.into_iter().map(|r| r.msg_key));
        }
        Ok(out)
    }

    /// Stores one fetched message in the owner's INBOX, once: `Ok(false)`
    /// when `key` was fetched before (nothing is stored again).
    pub async fn store_fetched(&self, job: &FetchJob, key: &str, raw: &[u8]) -> CoreResult<bool> {
        let txn = self.write_txn().await?;
        let inserted = outside_fetched::Entity::insert(outside_fetched::ActiveModel {
            outside_id: Set(job.id.0),
            msg_key: Set(key.to_owned()),
            fetched_at: Set(self.now()),
        })
        .on_conflict(
            OnConflict::columns([
                outside_fetched::Column::OutsideId,
                outside_fetched::Column::MsgKey,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![LocalCopy::new(job.owner, job.owner_address.clone())],
            remote: vec![],
        };
        let receipt = self.deliver_in(&txn, &env, raw).await?;
        // Counted in the same commit, so the number the page shows is
        // right after a crash too.
        outside_account::Entity::update_many()
            .col_expr(
                outside_account::Column::FetchedTotal,
                sea_orm::sea_query::Expr::col(outside_account::Column::FetchedTotal).add(1),
            )
            .filter(outside_account::Column::Id.eq(job.id.0))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.announce(&receipt);
        Ok(true)
    }

    /// Records a run: how many messages it brought, the cursor it reached
    /// (IMAP), or why it failed; and when the next run is due.
    pub async fn finish_outside_fetch(
        &self,
        id: OutsideAccountId,
        result: Result<(u64, Option<String>), String>,
        now: i64,
        interval: i64,
    ) -> CoreResult<()> {
        let Some(row) = outside_account::Entity::find_by_id(id.0)
            .one(self.db())
            .await?
        else {
            return Ok(());
        };
        let failures = row.fetch_failures;
        let mut am: outside_account::ActiveModel = row.into();
        match result {
            Ok((_, cursor)) => {
                am.fetch_failures = Set(0);
                am.fetch_status = Set(None);
                if let Some(c) = cursor {
                    am.fetch_cursor = Set(c);
                }
                am.fetch_next_at = Set(now + interval.max(1));
            }
            Err(e) => {
                let failures = failures.saturating_add(1);
                am.fetch_failures = Set(failures);
                am.fetch_status = Set(Some(e.chars().take(500).collect()));
                am.fetch_next_at = Set(now + backoff_secs(interval, failures));
            }
        }
        am.update(self.wdb()).await?;
        Ok(())
    }

    /// Saves the IMAP cursor as a run goes, so a crash resumes near where
    /// it stopped (the keys make a repeat harmless either way).
    pub async fn save_outside_cursor(&self, id: OutsideAccountId, cursor: &str) -> CoreResult<()> {
        outside_account::Entity::update_many()
            .col_expr(
                outside_account::Column::FetchCursor,
                sea_orm::sea_query::Expr::value(cursor.to_owned()),
            )
            .filter(outside_account::Column::Id.eq(id.0))
            .exec(self.wdb())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_to_an_hour() {
        assert_eq!(backoff_secs(60, 0), 60);
        assert_eq!(backoff_secs(60, 1), 120);
        assert_eq!(backoff_secs(60, 3), 480);
        assert_eq!(backoff_secs(60, 50), 3600);
        assert_eq!(FetchMode::parse("delete"), Some(FetchMode::Delete));
        assert_eq!(FetchMode::parse("x"), None);
    }
}
