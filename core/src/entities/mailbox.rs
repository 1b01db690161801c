use sea_orm::entity::prelude::*;

use crate::ids::{AccountId, MailboxId, ModSeq, Uid};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mailboxes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: MailboxId,
    pub account_id: AccountId,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub subscribed: bool,
    pub recent_uid: Uid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
