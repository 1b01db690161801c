use sea_orm::entity::prelude::*;

use crate::ids::AccountId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: AccountId,
    pub domain_id: i32,
    pub local_part: String,
    #[sea_orm(unique)]
    pub address: String,
    pub password_hash: String,
    pub role: String,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub disabled: bool,
    pub created_at: i64,
    /// Moved on when every session of the account must end.
    pub login_epoch: i64,
    /// The highest UIDVALIDITY of a mailbox deleted from this account; a
    /// new mailbox gets a greater one.
    pub uidvalidity_floor: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
