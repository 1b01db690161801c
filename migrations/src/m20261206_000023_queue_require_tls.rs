//! `queue_entries.require_tls`: the sender asked for REQUIRETLS (RFC 8689)
//! at `MAIL FROM`. The relay then sends the entry only over TLS with an
//! authenticated certificate (MTA-STS or DANE) to a server that offers
//! REQUIRETLS too, and passes the request on. Entries queued before are
//! ordinary ones.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000023_queue_require_tls"
    }
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    RequireTls,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(QueueEntries::Table)
                .add_column(
                    ColumnDef::new(QueueEntries::RequireTls)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(QueueEntries::Table)
                .drop_column(QueueEntries::RequireTls)
                .to_owned(),
        )
        .await
    }
}
