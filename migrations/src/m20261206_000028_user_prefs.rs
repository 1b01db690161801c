//! `user_prefs`: a user's own settings for the webmail. For now the time
//! zone, as minutes from UTC; NULL follows the browser.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000028_user_prefs"
    }
}

#[derive(DeriveIden)]
enum UserPrefs {
    Table,
    AccountId,
    TzOffsetMin,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UserPrefs::Table)
                .col(
                    ColumnDef::new(UserPrefs::AccountId)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(UserPrefs::TzOffsetMin).integer().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UserPrefs::Table).to_owned())
            .await
    }
}
