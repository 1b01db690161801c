use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "status_incidents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub service: String,
    /// The worst state the service reached in this episode.
    pub state: String,
    #[sea_orm(column_type = "Text")]
    pub summary: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
