//! `snoozes`: messages taken out of a folder until a chosen time. The
//! message itself waits in the account's `Snoozed` folder, where every
//! IMAP client sees it; this row says when it goes back, and where. Every
//! node's scheduler looks for due rows and takes one under a lease.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000026_snoozes"
    }
}

#[derive(DeriveIden)]
enum Snoozes {
    Table,
    Id,
    AccountId,
    MailboxId,
    Uid,
    ReturnTo,
    WakeAt,
    CreatedAt,
    LeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Snoozes::Table)
                .col(
                    ColumnDef::new(Snoozes::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Snoozes::AccountId).integer().not_null())
                .col(ColumnDef::new(Snoozes::MailboxId).integer().not_null())
                .col(ColumnDef::new(Snoozes::Uid).big_integer().not_null())
                .col(ColumnDef::new(Snoozes::ReturnTo).string().not_null())
                .col(ColumnDef::new(Snoozes::WakeAt).big_integer().not_null())
                .col(ColumnDef::new(Snoozes::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(Snoozes::LeaseUntil).big_integer().null())
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("snoozes_wake_at", vec![Snoozes::WakeAt]),
            (
                "snoozes_mailbox_uid",
                vec![Snoozes::MailboxId, Snoozes::Uid],
            ),
        ] {
            let mut i = Index::create();
            i.name(name).table(Snoozes::Table);
            for c in cols {
                i.col(c);
            }
            m.create_index(i.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Snoozes::Table).to_owned())
            .await
    }
}
