use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "queue_destinations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub domain: String,
    pub held: bool,
    pub concurrency: i32,
    pub ceiling: Option<i32>,
    pub failures: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_reply: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    pub retry_requested_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
