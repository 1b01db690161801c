//! `sieve_scripts`: each account's Sieve scripts (RFC 5228), at most one of
//! them active, which runs when mail is delivered to the account. The
//! webmail's rule builder writes one script and keeps the form it was made
//! from (`form`, JSON) so the form can be shown again; a script written by
//! hand or through ManageSieve has none.
//!
//! `sieve_seen`: what the `vacation` and `duplicate` extensions remember
//! (RFC 5230 §4.2: one reply per sender per period), by a hash of the key
//! the interpreter names, until `expires_at`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000029_sieve"
    }
}

#[derive(DeriveIden)]
enum SieveScripts {
    Table,
    Id,
    AccountId,
    Name,
    Content,
    Active,
    Form,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SieveSeen {
    Table,
    AccountId,
    Key,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SieveScripts::Table)
                .col(
                    ColumnDef::new(SieveScripts::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(SieveScripts::AccountId).integer().not_null())
                .col(ColumnDef::new(SieveScripts::Name).string().not_null())
                .col(ColumnDef::new(SieveScripts::Content).text().not_null())
                .col(
                    ColumnDef::new(SieveScripts::Active)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ColumnDef::new(SieveScripts::Form).text().null())
                .col(
                    ColumnDef::new(SieveScripts::UpdatedAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("sieve_scripts_account_name")
                .table(SieveScripts::Table)
                .col(SieveScripts::AccountId)
                .col(SieveScripts::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SieveSeen::Table)
                .col(ColumnDef::new(SieveSeen::AccountId).integer().not_null())
                .col(ColumnDef::new(SieveSeen::Key).string().not_null())
                .col(
                    ColumnDef::new(SieveSeen::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(SieveSeen::AccountId)
                        .col(SieveSeen::Key),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SieveSeen::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(SieveScripts::Table).to_owned())
            .await
    }
}
