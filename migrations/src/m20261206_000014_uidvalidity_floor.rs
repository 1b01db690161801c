//! `accounts.uidvalidity_floor`: the highest UIDVALIDITY a deleted mailbox
//! of the account had. A mailbox created under a deleted one's name must
//! get a greater UIDVALIDITY (RFC 9051 §2.3.1.1), even within the same
//! second, and the deleted row is no longer there to compare with.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000014_uidvalidity_floor"
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    UidvalidityFloor,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .add_column(
                    ColumnDef::new(Accounts::UidvalidityFloor)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .drop_column(Accounts::UidvalidityFloor)
                .to_owned(),
        )
        .await
    }
}
