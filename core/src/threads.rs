//! Conversations and correspondents: what the webmail reads across an
//! account's folders rather than in one (a thread's messages, the
//! addresses the compose form suggests). Threads are assigned at
//! delivery (`messages`); this module only reads them.

use crate::Core;
use crate::error::CoreResult;
use crate::ids::AccountId;

impl Core {
    /// Addresses this account has written to or heard from, most recent
    /// first, for the compose form's autocomplete.
    pub(crate) async fn correspondents(
        &self,
        account_id: AccountId,
        limit: usize,
    ) -> CoreResult<Vec<String>> {
        use crate::entities::{mailbox, message};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
        let boxes: Vec<(i32, String)> = mailbox::Entity::find()
            .select_only()
            .column(mailbox::Column::Id)
            .column(mailbox::Column::Name)
            .filter(mailbox::Column::AccountId.eq(account_id))
            .into_tuple()
            .all(self.db())
            .await?;
        let rows: Vec<(i32, String, String)> = message::Entity::find()
            .select_only()
            .column(message::Column::MailboxId)
            .column(message::Column::FromAddr)
            .column(message::Column::ToAddr)
            .filter(message::Column::MailboxId.is_in(boxes.iter().map(|b| b.0)))
            .order_by_desc(message::Column::InternalDate)
            .limit(2000)
            .into_tuple()
            .all(self.db())
            .await?;
        let sent: Vec<i32> = boxes
            .iter()
            .filter(|b| b.1 == "Sent")
            .map(|b| b.0)
            .collect();
        let mut seen = std::collections::HashSet::new();
        seen.insert(self.account_address(account_id).await?.to_ascii_lowercase());
        let mut out = Vec::new();
        for (mbox, from, to) in rows {
            let cands: Vec<String> = if sent.contains(&mbox) {
                to.split(',').map(|s| s.trim().to_owned()).collect()
            } else {
                vec![from]
            };
            for c in cands {
                let bare = match (c.rfind('<'), c.rfind('>')) {
                    (Some(a), Some(b)) if a < b => c[a + 1..b].to_owned(),
                    _ => c.clone(),
                };
                let key = bare.to_ascii_lowercase();
                if bare.contains('@') && seen.insert(key) {
                    out.push(c);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn account_address(&self, account_id: AccountId) -> CoreResult<String> {
        Ok(self
            .account_by_id(account_id)
            .await?
            .map(|a| a.address)
            .unwrap_or_default())
    }

    /// How many messages of the account are in a conversation.
    pub(crate) async fn thread_len(
        &self,
        account_id: AccountId,
        thread_id: i64,
    ) -> CoreResult<u64> {
        use crate::entities::message;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let boxes = crate::mailboxes::mailbox_ids(self.db(), account_id).await?;
        Ok(message::Entity::find()
            .filter(message::Column::MailboxId.is_in(boxes))
            .filter(message::Column::ThreadId.eq(thread_id))
            .count(self.db())
            .await?)
    }

    /// The messages of one conversation, oldest first, across the
    /// account's folders.
    pub(crate) async fn thread_messages(
        &self,
        account_id: AccountId,
        thread_id: i64,
    ) -> CoreResult<Vec<crate::MessageSummary>> {
        use crate::entities::message;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
        let boxes = crate::mailboxes::mailbox_ids(self.db(), account_id).await?;
        Ok(message::Entity::find()
            .filter(message::Column::MailboxId.is_in(boxes))
            .filter(message::Column::ThreadId.eq(thread_id))
            .order_by_asc(message::Column::InternalDate)
            .order_by_asc(message::Column::Id)
            .limit(500)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
