use sea_orm::entity::prelude::*;

use crate::ids::{BlobId, QueueId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "queue_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: QueueId,
    pub blob_id: BlobId,
    pub mail_from: String,
    pub rcpt_to: String,
    pub domain: String,
    pub lane: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lock_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub message_id: String,
    pub delayed_dsn_sent: bool,
    pub last_attempt_at: Option<i64>,
    pub require_tls: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
