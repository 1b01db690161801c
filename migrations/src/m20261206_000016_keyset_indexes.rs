//! Indexes that end in the row's tie-breaker, so that a list paged by key
//! ("the 50 rows older than this one") walks one index range and never
//! sorts: the unified inbox's outside rows by (account, date, key), and a
//! mailbox's messages by (mailbox, date, UID), which the webmail's list
//! and the unified inbox's local rows are ordered by. Each replaces the
//! index it extends.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000016_keyset_indexes"
    }
}

#[derive(DeriveIden)]
enum OutsideHeaders {
    Table,
    OutsideId,
    Date,
    MsgKey,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    MailboxId,
    InternalDate,
    Uid,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("outside_headers_keyset")
                .table(OutsideHeaders::Table)
                .col(OutsideHeaders::OutsideId)
                .col(OutsideHeaders::Date)
                .col(OutsideHeaders::MsgKey)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("outside_headers_date")
                .table(OutsideHeaders::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("messages_mailbox_date_uid")
                .table(Messages::Table)
                .col(Messages::MailboxId)
                .col(Messages::InternalDate)
                .col(Messages::Uid)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("messages_mailbox_date")
                .table(Messages::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("messages_mailbox_date")
                .table(Messages::Table)
                .col(Messages::MailboxId)
                .col(Messages::InternalDate)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("messages_mailbox_date_uid")
                .table(Messages::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("outside_headers_date")
                .table(OutsideHeaders::Table)
                .col(OutsideHeaders::OutsideId)
                .col(OutsideHeaders::Date)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("outside_headers_keyset")
                .table(OutsideHeaders::Table)
                .to_owned(),
        )
        .await
    }
}
