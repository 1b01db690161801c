use sea_orm::entity::prelude::*;

use crate::ids::AccountId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "web_sessions")]
pub struct Model {
    /// SHA-256 of the cookie token, so a copy of the database does not hand
    /// out live sessions.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: AccountId,
    pub csrf_token: String,
    pub client_ip: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
