//! A cache of outside INBOX headers, so the unified inbox renders from the
//! database instead of waiting on every provider (a background task keeps
//! it fresh).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000011_outside_cache"
    }
}

#[derive(DeriveIden)]
enum OutsideHeaders {
    Table,
    OutsideId,
    /// IMAP UID or POP3 UIDL.
    MsgKey,
    /// IMAP UIDVALIDITY the UID belongs to (0 for POP3).
    Validity,
    Date,
    FromName,
    Subject,
    Size,
    Seen,
    Flagged,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(OutsideHeaders::Table)
                .col(integer(OutsideHeaders::OutsideId))
                .col(string(OutsideHeaders::MsgKey))
                .col(big_integer(OutsideHeaders::Validity))
                .col(big_integer(OutsideHeaders::Date))
                .col(string(OutsideHeaders::FromName))
                .col(string(OutsideHeaders::Subject))
                .col(big_integer(OutsideHeaders::Size))
                .col(boolean(OutsideHeaders::Seen))
                .col(boolean(OutsideHeaders::Flagged))
                .primary_key(
                    Index::create()
                        .col(OutsideHeaders::OutsideId)
                        .col(OutsideHeaders::MsgKey),
                )
                .to_owned(),
        )
        .await?;
        // The unified inbox reads newest first across accounts.
        m.create_index(
            Index::create()
                .name("outside_headers_date")
                .table(OutsideHeaders::Table)
                .col(OutsideHeaders::OutsideId)
                .col(OutsideHeaders::Date)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OutsideHeaders::Table).to_owned())
            .await
    }
}
