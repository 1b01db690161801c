//! One row that `/healthz` rewrites, so the health check proves the store
//! takes a write (a full disk or a read-only file fails it), not only that
//! it answers a read. And each account's login epoch: moved on when all its
//! sessions must end (new password, disabled, "sign out everywhere"), read
//! by IMAP and POP3 sessions on every node and by the CLI's changes too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_health"
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    LoginEpoch,
}

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    ProbedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(HealthProbe::Table)
                .col(integer(HealthProbe::Id).primary_key())
                .col(big_integer(HealthProbe::ProbedAt))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(HealthProbe::Table)
                .columns([HealthProbe::Id, HealthProbe::ProbedAt])
                .values_panic([1.into(), 0i64.into()])
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .add_column(big_integer(Accounts::LoginEpoch).default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Accounts::Table)
                .drop_column(Accounts::LoginEpoch)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(HealthProbe::Table).to_owned())
            .await
    }
}
