//! The two due-order indexes end in `id`, the claims' tie-breaker
//! (`ORDER BY next_attempt_at, id`). SQLite's indexes carry the rowid
//! anyway; PostgreSQL's do not, so there the planner read every due entry
//! of a lane (73,600 of a 100,000-entry backlog) and sorted them for each
//! claim: 51 ms a claim, which bounded the drain at ~2,300 entries/s
//! however many nodes shared it. Rebuilt under new names, then the old
//! ones dropped.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000018_queue_due_order"
    }
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    Id,
    Status,
    Lane,
    Domain,
    NextAttemptAt,
}

/// `(status, lane[, domain], next_attempt_at[, id])`.
fn due(name: &str, with_domain: bool, with_id: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name)
        .table(QueueEntries::Table)
        .col(QueueEntries::Status)
        .col(QueueEntries::Lane);
    if with_domain {
        i.col(QueueEntries::Domain);
    }
    i.col(QueueEntries::NextAttemptAt);
    if with_id {
        i.col(QueueEntries::Id);
    }
    i.to_owned()
}

fn drop(name: &str) -> IndexDropStatement {
    Index::drop()
        .name(name)
        .table(QueueEntries::Table)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(due("queue_due_id", false, true)).await?;
        m.create_index(due("queue_lane_domain_id", true, true))
            .await?;
        m.drop_index(drop("queue_due")).await?;
        m.drop_index(drop("queue_lane_domain")).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(due("queue_due", false, false)).await?;
        m.create_index(due("queue_lane_domain", true, false))
            .await?;
        m.drop_index(drop("queue_due_id")).await?;
        m.drop_index(drop("queue_lane_domain_id")).await
    }
}
