//! Which spool records are already in the mail store: written in the same
//! transaction as the delivery, so a node that crashes between storing a
//! batch and deleting its spool segment recognises those records at the
//! next start and delivers each once. Rows of segments a node has deleted
//! are pruned by that node.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_spool"
    }
}

#[derive(DeriveIden)]
enum SpoolIngested {
    Table,
    Node,
    Segment,
    RecordOffset,
    IngestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SpoolIngested::Table)
                .col(string_len(SpoolIngested::Node, 64))
                .col(big_integer(SpoolIngested::Segment))
                .col(big_integer(SpoolIngested::RecordOffset))
                .col(big_integer(SpoolIngested::IngestedAt))
                .primary_key(
                    Index::create()
                        .col(SpoolIngested::Node)
                        .col(SpoolIngested::Segment)
                        .col(SpoolIngested::RecordOffset),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SpoolIngested::Table).to_owned())
            .await
    }
}
