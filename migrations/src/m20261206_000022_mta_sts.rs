//! `mta_sts_policies`: the MTA-STS policies (RFC 8461) this host has
//! fetched for destinations, kept until their `max_age` runs out. RFC 8461
//! §5.1 wants them to outlive a restart: a policy remembered is what stops
//! an attacker who strips the `_mta-sts` record from downgrading the
//! destination to plain text. Shared by every node on PostgreSQL.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000022_mta_sts"
    }
}

#[derive(DeriveIden)]
enum MtaStsPolicies {
    Table,
    Domain,
    PolicyId,
    Policy,
    FetchedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MtaStsPolicies::Table)
                .col(
                    ColumnDef::new(MtaStsPolicies::Domain)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(MtaStsPolicies::PolicyId).string().not_null())
                .col(ColumnDef::new(MtaStsPolicies::Policy).text().not_null())
                .col(
                    ColumnDef::new(MtaStsPolicies::FetchedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MtaStsPolicies::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MtaStsPolicies::Table).to_owned())
            .await
    }
}
