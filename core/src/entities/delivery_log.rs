use sea_orm::entity::prelude::*;

use crate::ids::QueueId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub queue_id: QueueId,
    pub message_id: String,
    pub mail_from: String,
    pub rcpt_to: String,
    pub domain: String,
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
    pub tls: bool,
    pub outcome: String,
    #[sea_orm(column_type = "Text")]
    pub reply: String,
    pub duration_ms: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
