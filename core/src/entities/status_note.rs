use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "status_notes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub incident_id: Option<i32>,
    pub author: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
