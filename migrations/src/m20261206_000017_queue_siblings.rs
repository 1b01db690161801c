//! An index for claiming a message's recipients at one destination (its
//! "siblings") in one go: `blob_id = ? AND domain = ? AND lane = ? AND
//! status = ? AND next_attempt_at <= ?`. Without it SQLite's planner took
//! the `(status, lane, domain, ..)` index, which walks every entry of the
//! destination: one domain with a 340,000-entry backlog made each claim a
//! scan, and the drain and fresh mail with it. It starts with `blob_id`,
//! so it also serves what `queue_blob` did, which it replaces.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000017_queue_siblings"
    }
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    BlobId,
    Domain,
    Lane,
    Status,
    NextAttemptAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("queue_siblings")
                .table(QueueEntries::Table)
                .col(QueueEntries::BlobId)
                .col(QueueEntries::Domain)
                .col(QueueEntries::Lane)
                .col(QueueEntries::Status)
                .col(QueueEntries::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("queue_blob")
                .table(QueueEntries::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("queue_blob")
                .table(QueueEntries::Table)
                .col(QueueEntries::BlobId)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("queue_siblings")
                .table(QueueEntries::Table)
                .to_owned(),
        )
        .await
    }
}
