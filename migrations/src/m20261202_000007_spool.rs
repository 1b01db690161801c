//! Which spool records are already in the mail store: written in the same
//! transaction as the delivery, so a node that crashes between storing a
//! batch and deleting its spool segment recognises those records at the
//! next start and delivers each once. Rows of segments a node has deleted
//! are pruned by that node.
//!
//! And `directory_version`: one row every directory change moves on, which
//! each node polls to know when to refresh its routing copy (the copy
//! that answers RCPT while the database is down).

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

#[derive(DeriveIden)]
enum DirectoryVersion {
    Table,
    Id,
    Version,
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
        .await?;
        m.create_table(
            Table::create()
                .table(DirectoryVersion::Table)
                .col(integer(DirectoryVersion::Id).primary_key())
                .col(big_integer(DirectoryVersion::Version))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(DirectoryVersion::Table)
                .columns([DirectoryVersion::Id, DirectoryVersion::Version])
                .values_panic([1.into(), 0i64.into()])
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DirectoryVersion::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(SpoolIngested::Table).to_owned())
            .await
    }
}
