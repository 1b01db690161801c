//! `scheduled_sends`: mail that is sent later, on the server, so it
//! survives closing the browser and a restart: the webmail's undo window
//! (`web.undo_send_secs`), its "send later", and submission clients'
//! FUTURERELEASE (RFC 4865). A node takes a due row under a lease
//! (`lease_until`), sends it as the webmail or submission would have at
//! that moment, and deletes it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000025_scheduled_sends"
    }
}

#[derive(DeriveIden)]
enum ScheduledSends {
    Table,
    Id,
    AccountId,
    Kind,
    MailFrom,
    Recipients,
    Received,
    Subject,
    Raw,
    Draft,
    SendAt,
    CreatedAt,
    LeaseUntil,
    RequireTls,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ScheduledSends::Table)
                .col(
                    ColumnDef::new(ScheduledSends::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ScheduledSends::AccountId)
                        .integer()
                        .not_null(),
                )
                .col(ColumnDef::new(ScheduledSends::Kind).string().not_null())
                .col(ColumnDef::new(ScheduledSends::MailFrom).string().not_null())
                .col(ColumnDef::new(ScheduledSends::Recipients).text().not_null())
                .col(ColumnDef::new(ScheduledSends::Received).text().not_null())
                .col(ColumnDef::new(ScheduledSends::Subject).string().not_null())
                .col(ColumnDef::new(ScheduledSends::Raw).binary().not_null())
                .col(ColumnDef::new(ScheduledSends::Draft).binary().null())
                .col(
                    ColumnDef::new(ScheduledSends::SendAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ScheduledSends::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ScheduledSends::LeaseUntil)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(ScheduledSends::RequireTls)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("scheduled_sends_send_at", ScheduledSends::SendAt),
            ("scheduled_sends_account", ScheduledSends::AccountId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(ScheduledSends::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ScheduledSends::Table).to_owned())
            .await
    }
}
