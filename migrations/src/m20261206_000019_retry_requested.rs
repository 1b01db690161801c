//! `queue_destinations.retry_requested_at`: when an operator last asked for
//! a whole destination to be retried now (`tern queue retry --domain`).
//! Entries of the destination's retry lane last tried before that time are
//! due at once, whatever their own schedule says. Before, the request
//! rewrote every entry's next attempt: 340,000 rows in one transaction
//! during an incident, a 113 MB write-ahead log, and fresh mail waiting
//! behind it. Postfix's `postqueue -f` does not rewrite its queue either.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000019_retry_requested"
    }
}

#[derive(DeriveIden)]
enum QueueDestinations {
    Table,
    RetryRequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(QueueDestinations::Table)
                .add_column(
                    ColumnDef::new(QueueDestinations::RetryRequestedAt)
                        .big_integer()
                        .null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(QueueDestinations::Table)
                .drop_column(QueueDestinations::RetryRequestedAt)
                .to_owned(),
        )
        .await
    }
}
