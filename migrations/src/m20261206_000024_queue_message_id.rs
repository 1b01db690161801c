//! An index on `queue_entries.message_id`: the webmail shows, for a message
//! in Sent, what became of each recipient (queued, retrying with the last
//! reply, delivered, bounced), read from the queue and the delivery log by
//! Message-ID. The log had its index from the start.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000024_queue_message_id"
    }
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    MessageId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("queue_entries_message_id")
                .table(QueueEntries::Table)
                .col(QueueEntries::MessageId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("queue_entries_message_id")
                .table(QueueEntries::Table)
                .to_owned(),
        )
        .await
    }
}
