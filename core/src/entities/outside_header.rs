use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outside_headers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub outside_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub msg_key: String,
    pub validity: i64,
    pub date: i64,
    pub from_name: String,
    pub subject: String,
    pub size: i64,
    pub seen: bool,
    pub flagged: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
