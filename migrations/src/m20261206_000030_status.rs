//! The public status page's memory (`mailcore::status`).
//!
//! `status_incidents`: one row per episode of a service not operating,
//! opened and closed by the status monitor when the service changes state;
//! `state` is the worst it reached, `summary` the latest plain-words
//! explanation.
//!
//! `status_notes`: what an admin adds (`/admin`, `tern status note`), to an
//! incident or on its own (planned maintenance).
//!
//! Two indexes serve the monitor's reads: `delivery_log.created_at` for the
//! last 15 minutes' delivery outcomes, `queue_entries.mail_from` for "your
//! sent mail waiting" in the webmail.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000030_status"
    }
}

#[derive(DeriveIden)]
enum StatusIncidents {
    Table,
    Id,
    Service,
    State,
    Summary,
    OpenedAt,
    ClosedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StatusNotes {
    Table,
    Id,
    IncidentId,
    Author,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DeliveryLog {
    Table,
    CreatedAt,
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    MailFrom,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(StatusIncidents::Table)
                .col(
                    ColumnDef::new(StatusIncidents::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(StatusIncidents::Service).string().not_null())
                .col(ColumnDef::new(StatusIncidents::State).string().not_null())
                .col(ColumnDef::new(StatusIncidents::Summary).text().not_null())
                .col(
                    ColumnDef::new(StatusIncidents::OpenedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(StatusIncidents::ClosedAt)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(StatusIncidents::UpdatedAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("status_incidents_opened_at")
                .table(StatusIncidents::Table)
                .col(StatusIncidents::OpenedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StatusNotes::Table)
                .col(
                    ColumnDef::new(StatusNotes::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(StatusNotes::IncidentId).integer().null())
                .col(ColumnDef::new(StatusNotes::Author).string().not_null())
                .col(ColumnDef::new(StatusNotes::Body).text().not_null())
                .col(
                    ColumnDef::new(StatusNotes::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("status_notes_created_at")
                .table(StatusNotes::Table)
                .col(StatusNotes::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("delivery_log_created_at")
                .table(DeliveryLog::Table)
                .col(DeliveryLog::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("queue_entries_mail_from")
                .table(QueueEntries::Table)
                .col(QueueEntries::MailFrom)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("queue_entries_mail_from", QueueEntries::Table.into_iden()),
            ("delivery_log_created_at", DeliveryLog::Table.into_iden()),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        m.drop_table(Table::drop().table(StatusNotes::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(StatusIncidents::Table).to_owned())
            .await
    }
}
