use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outside_fetched")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub outside_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub msg_key: String,
    pub fetched_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
