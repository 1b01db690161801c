use sea_orm::entity::prelude::*;

use crate::ids::{BlobId, MailboxId, ModSeq, Uid};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub mailbox_id: MailboxId,
    pub uid: Uid,
    pub blob_id: BlobId,
    pub flags: i32,
    pub keywords: String,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub size: i64,
    pub from_addr: String,
    pub to_addr: String,
    pub subject: String,
    pub sent_date: Option<i64>,
    pub message_id_header: String,
    pub in_reply_to: String,
    pub thread_id: i64,
    pub snippet: String,
    pub has_attachments: bool,
    /// The address this copy was delivered for, shown to readers as a
    /// `Delivered-To:` line in front of the shared blob; empty for mail
    /// that was not delivered (APPEND, drafts, Sent).
    pub delivered_to: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
