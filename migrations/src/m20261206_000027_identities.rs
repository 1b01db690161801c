//! `identities`: the display name and signature a user has set for each
//! address they may send as (their own, and aliases that deliver to them).
//! An address with no row sends with no name and no signature.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000027_identities"
    }
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    Id,
    AccountId,
    Address,
    DisplayName,
    Signature,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Identities::Table)
                .col(
                    ColumnDef::new(Identities::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Identities::AccountId).integer().not_null())
                .col(ColumnDef::new(Identities::Address).string().not_null())
                .col(ColumnDef::new(Identities::DisplayName).string().not_null())
                .col(ColumnDef::new(Identities::Signature).text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("identities_account_address")
                .table(Identities::Table)
                .col(Identities::AccountId)
                .col(Identities::Address)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Identities::Table).to_owned())
            .await
    }
}
