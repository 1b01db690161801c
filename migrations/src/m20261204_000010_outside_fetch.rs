//! Fetching outside mail in (the Gmail "check mail from other accounts"
//! gap): per outside account a fetch mode and its schedule, and one row
//! per fetched message, written in the transaction that stores it, so a
//! crash at any moment neither loses nor duplicates a message.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000010_outside_fetch"
    }
}

#[derive(DeriveIden)]
enum OutsideAccounts {
    Table,
    /// "" (off), "keep" or "delete" (POP3: delete after fetching).
    FetchMode,
    FetchNextAt,
    FetchFailures,
    FetchStatus,
    /// IMAP: "uidvalidity:last uid" fetched so far.
    FetchCursor,
    FetchedTotal,
}

#[derive(DeriveIden)]
enum OutsideFetched {
    Table,
    OutsideId,
    MsgKey,
    FetchedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            ColumnDef::new(OutsideAccounts::FetchMode)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(OutsideAccounts::FetchNextAt)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(OutsideAccounts::FetchFailures)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(OutsideAccounts::FetchStatus)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(OutsideAccounts::FetchCursor)
                .string()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(OutsideAccounts::FetchedTotal)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ] {
            // One column per statement: SQLite's ALTER TABLE adds one.
            m.alter_table(
                Table::alter()
                    .table(OutsideAccounts::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(OutsideFetched::Table)
                .col(integer(OutsideFetched::OutsideId))
                .col(string(OutsideFetched::MsgKey))
                .col(big_integer(OutsideFetched::FetchedAt))
                .primary_key(
                    Index::create()
                        .col(OutsideFetched::OutsideId)
                        .col(OutsideFetched::MsgKey),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OutsideFetched::Table).to_owned())
            .await?;
        for c in [
            OutsideAccounts::FetchMode,
            OutsideAccounts::FetchNextAt,
            OutsideAccounts::FetchFailures,
            OutsideAccounts::FetchStatus,
            OutsideAccounts::FetchCursor,
            OutsideAccounts::FetchedTotal,
        ] {
            m.alter_table(
                Table::alter()
                    .table(OutsideAccounts::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
