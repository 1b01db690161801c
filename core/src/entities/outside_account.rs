use sea_orm::entity::prelude::*;

use crate::ids::AccountId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outside_accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub account_id: AccountId,
    pub address: String,
    pub username: String,
    pub protocol: String,
    pub in_host: String,
    pub in_port: i32,
    pub in_security: String,
    pub out_host: String,
    pub out_port: i32,
    pub out_security: String,
    pub secret: Option<String>,
    pub pinned_cert: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub fetch_mode: String,
    pub fetch_next_at: i64,
    pub fetch_failures: i32,
    pub fetch_status: Option<String>,
    pub fetch_cursor: String,
    pub fetched_total: i64,
    pub out_username: String,
    pub out_secret: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
