//! `\Recent` (RFC 3501 §2.3.2) needs one mark per mailbox: messages with
//! a UID at or above it have not been seen by any read-write session yet.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000003_recent"
    }
}

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    RecentUid,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Mailboxes::Table)
                .add_column(big_integer(Mailboxes::RecentUid).default(1))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Mailboxes::Table)
                .drop_column(Mailboxes::RecentUid)
                .to_owned(),
        )
        .await
    }
}
