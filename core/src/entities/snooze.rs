use sea_orm::entity::prelude::*;

use crate::ids::{AccountId, MailboxId, Uid};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "snoozes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub account_id: AccountId,
    /// The Snoozed folder the message waits in.
    pub mailbox_id: MailboxId,
    pub uid: Uid,
    /// The folder it goes back to (by name: it may be renamed meanwhile,
    /// and then it goes to INBOX).
    pub return_to: String,
    pub wake_at: i64,
    pub created_at: i64,
    pub lease_until: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
