use sea_orm::entity::prelude::*;

use crate::ids::AccountId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "scheduled_sends")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub account_id: AccountId,
    pub kind: String,
    pub mail_from: String,
    /// One address per line.
    #[sea_orm(column_type = "Text")]
    pub recipients: String,
    #[sea_orm(column_type = "Text")]
    pub received: String,
    pub subject: String,
    pub raw: Vec<u8>,
    pub draft: Option<Vec<u8>>,
    pub send_at: i64,
    pub created_at: i64,
    pub lease_until: Option<i64>,
    pub require_tls: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
