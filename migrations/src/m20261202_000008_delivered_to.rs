//! `messages.delivered_to`: the recipient address each delivered copy was
//! for. Every copy of a delivery shares one blob, so the `Delivered-To:`
//! line that differs between them lives in the row and is put in front of
//! the bytes when the message is read. Existing rows get the empty string:
//! no line, as before.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000008_delivered_to"
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    DeliveredTo,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .add_column(
                    ColumnDef::new(Messages::DeliveredTo)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .drop_column(Messages::DeliveredTo)
                .to_owned(),
        )
        .await
    }
}
