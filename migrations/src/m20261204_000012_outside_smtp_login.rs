//! A separate login for an outside account's outgoing server, for
//! providers whose SMTP takes another user name or an app password.
//! Empty: the incoming login is used.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000012_outside_smtp_login"
    }
}

#[derive(DeriveIden)]
enum OutsideAccounts {
    Table,
    OutUsername,
    /// Sealed like `secret`; NULL: the incoming password.
    OutSecret,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(OutsideAccounts::Table)
                .add_column(
                    ColumnDef::new(OutsideAccounts::OutUsername)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(OutsideAccounts::Table)
                .add_column(ColumnDef::new(OutsideAccounts::OutSecret).text().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in [OutsideAccounts::OutUsername, OutsideAccounts::OutSecret] {
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
