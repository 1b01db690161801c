//! Subscriptions that outlive their mailbox (RFC 9051 §6.3.7: the server
//! does not remove a name from the subscription list when the mailbox
//! goes), and subscriptions to names with no mailbox yet. A subscribed
//! mailbox that exists keeps its flag on its own row.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000013_lone_subscriptions"
    }
}

#[derive(DeriveIden)]
enum LoneSubscriptions {
    Table,
    AccountId,
    Name,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LoneSubscriptions::Table)
                .col(integer(LoneSubscriptions::AccountId))
                .col(string(LoneSubscriptions::Name))
                .primary_key(
                    Index::create()
                        .col(LoneSubscriptions::AccountId)
                        .col(LoneSubscriptions::Name),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoneSubscriptions::Table).to_owned())
            .await
    }
}
