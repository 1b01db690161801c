//! Snooze: a message leaves its folder until a chosen time, then comes
//! back to the top, unread. It waits in the account's `Snoozed` folder
//! (made on first use), so every IMAP client sees it move there and back;
//! a `snoozes` row says when and where to. The scheduler of every node
//! wakes due rows, each under a lease, so a restart loses nothing and two
//! nodes never bring one back twice.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};

use crate::entities::snooze;
use crate::ids::{MailboxId, Uid};
use crate::mail::{Mail, OwnedMailbox};
use crate::mailboxes::NewMailbox;
use crate::{Core, CoreError, CoreResult, Flags};

/// The folder snoozed messages wait in.
pub const SNOOZED: &str = "Snoozed";
const LEASE_SECS: i64 = 120;

impl Mail {
    /// Snoozes `uid` of `from` until `wake_at`: it moves to Snoozed, and
    /// comes back to `from` then. Snoozing a message already in Snoozed
    /// changes its time.
    pub async fn snooze(&self, from: &OwnedMailbox, uid: Uid, wake_at: i64) -> CoreResult<()> {
        let core = self.core();
        if from.name() == SNOOZED {
            let _w = core.sqlite_write_turn(crate::Priority::Urgent).await;
            let r = snooze::Entity::update_many()
                .col_expr(snooze::Column::WakeAt, Expr::value(wake_at))
                .filter(snooze::Column::AccountId.eq(self.account()))
                .filter(snooze::Column::MailboxId.eq(from.id()))
                .filter(snooze::Column::Uid.eq(uid))
                .exec(core.wdb())
                .await?;
            return if r.rows_affected > 0 {
                Ok(())
            } else {
                Err(CoreError::NotFound(format!("snoozed message {uid}")))
            };
        }
        let snoozed = match self.mailbox(SNOOZED).await? {
            Some(m) => m,
            None => {
                self.create_mailbox(SNOOZED, NewMailbox::Subscribed).await?;
                self.open(SNOOZED).await?
            }
        };
        let moved = from.move_to(&[uid], &snoozed).await?;
        let Some((_, new_uid)) = moved.first().copied() else {
            return Err(CoreError::NotFound(format!("message {uid}")));
        };
        let row = snooze::ActiveModel {
            account_id: Set(self.account()),
            mailbox_id: Set(snoozed.id()),
            uid: Set(new_uid),
            return_to: Set(from.name().to_owned()),
            wake_at: Set(wake_at),
            created_at: Set(core.now()),
            lease_until: Set(None),
            ..Default::default()
        };
        let _w = core.sqlite_write_turn(crate::Priority::Urgent).await;
        snooze::Entity::insert(row).exec(core.wdb()).await?;
        Ok(())
    }

    /// When each of these messages of Snoozed comes back.
    pub async fn snoozed_until(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> CoreResult<Vec<(Uid, i64)>> {
        Ok(snooze::Entity::find()
            .filter(snooze::Column::AccountId.eq(self.account()))
            .filter(snooze::Column::MailboxId.eq(mailbox))
            .filter(snooze::Column::Uid.is_in(uids.iter().copied()))
            .all(self.core().db())
            .await?
            .into_iter()
            .map(|m| (m.uid, m.wake_at))
            .collect())
    }
}

impl Core {
    /// Brings back every due snoozed message. Returns how many came back.
    pub async fn wake_snoozed(&self) -> CoreResult<usize> {
        let now = self.now();
        let free = || {
            Condition::any()
                .add(snooze::Column::LeaseUntil.is_null())
                .add(snooze::Column::LeaseUntil.lt(now))
        };
        let due = snooze::Entity::find()
            .select_only()
            .column(snooze::Column::Id)
            .filter(snooze::Column::WakeAt.lte(now))
            .filter(free())
            .order_by_asc(snooze::Column::WakeAt)
            .limit(64);
        // Looked for every second: a read first, a write only when due.
        if due
            .clone()
            .into_tuple::<i32>()
            .one(self.db())
            .await?
            .is_none()
        {
            return Ok(0);
        }
        let rows = {
            let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
            snooze::Entity::update_many()
                .col_expr(snooze::Column::LeaseUntil, Expr::value(now + LEASE_SECS))
                .filter(snooze::Column::Id.in_subquery(due.into_query()))
                .filter(free())
                .exec_with_returning(self.wdb())
                .await?
        };
        let mut woken = 0;
        for r in rows {
            match self.wake_one(&r).await {
                Ok(true) => woken += 1,
                Ok(false) => {}
                Err(e) => {
                    // Left leased: tried again when the lease runs out.
                    tracing::warn!(id = r.id, error = %e, "snoozed message: could not bring it back yet");
                    continue;
                }
            }
            let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
            snooze::Entity::delete_by_id(r.id).exec(self.wdb()).await?;
        }
        Ok(woken)
    }

    /// Ok(false): the message is no longer in Snoozed (moved or deleted
    /// by the user meanwhile), so there is nothing to bring back.
    async fn wake_one(&self, r: &snooze::Model) -> CoreResult<bool> {
        let mail = self.mail(r.account_id);
        let Some(snoozed) = self.mailbox_by_id(&mail, r.mailbox_id).await? else {
            return Ok(false);
        };
        let summary = match snoozed.message(r.uid).await {
            Ok(s) => s,
            Err(CoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let raw = snoozed.raw(r.uid).await?;
        let back = match mail.mailbox(&r.return_to).await? {
            Some(m) => m,
            None => mail.open("INBOX").await?,
        };
        // A new copy, dated now and unread: at the top of the folder in
        // every client, as if it had just arrived.
        let flags = Flags::from_bits(summary.flags.bits() & !Flags::SEEN.bits());
        back.append(&raw, flags, Some(self.now())).await?;
        snoozed.destroy(&[r.uid]).await?;
        Ok(true)
    }

    async fn mailbox_by_id(&self, mail: &Mail, id: MailboxId) -> CoreResult<Option<OwnedMailbox>> {
        // The row alone: `Mail::mailboxes` would count every message of
        // the account to find one name.
        let name = crate::entities::mailbox::Entity::find_by_id(id)
            .filter(crate::entities::mailbox::Column::AccountId.eq(mail.account()))
            .one(self.db())
            .await?
            .map(|m| m.name);
        match name {
            Some(n) => mail.mailbox(&n).await,
            None => Ok(None),
        }
    }
}

/// The time a snooze choice means, at `now` (UTC): `3h`, `tomorrow`
/// (08:00), `week` (next Monday, 08:00), or a date and time
/// (`2026-12-24T09:00`). None for anything else, or a time already past.
pub fn snooze_until(choice: &str, now: i64) -> Option<i64> {
    const DAY: i64 = 86_400;
    const MORNING: i64 = 8 * 3_600;
    let days = now.div_euclid(DAY);
    let t = match choice.trim() {
        "3h" => now + 3 * 3_600,
        "tomorrow" => (days + 1) * DAY + MORNING,
        "week" => {
            // 1970-01-01 was a Thursday: Monday is 0.
            let weekday = (days + 3).rem_euclid(7);
            (days + 7 - weekday) * DAY + MORNING
        }
        other => crate::scheduled::parse_utc_datetime(other)?,
    };
    (t > now).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snooze_choices() {
        // Sunday 2026-12-06 16:20 UTC.
        let now = 1_796_574_000;
        assert_eq!(snooze_until("3h", now), Some(now + 10_800));
        // Monday 2026-12-07 08:00.
        assert_eq!(snooze_until("tomorrow", now), Some(1_796_630_400));
        assert_eq!(snooze_until("week", now), Some(1_796_630_400));
        // From that Monday at noon, next week is the Monday after.
        assert_eq!(
            snooze_until("week", 1_796_630_400 + 4 * 3600),
            Some(1_796_630_400 + 7 * 86_400)
        );
        assert_eq!(snooze_until("2026-12-24T09:00", now), Some(1_798_102_800));
        assert_eq!(snooze_until("2020-01-01T00:00", now), None);
        assert_eq!(snooze_until("soon", now), None);
    }
}
