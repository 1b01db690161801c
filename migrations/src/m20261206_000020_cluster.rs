//! State the whole cluster shares, so that a second node changes nothing a
//! user or a remote server sees:
//! - `cluster_nodes`: one heartbeat row per running `tern serve` (its
//!   name, version, spool depth and queue work), for `tern cluster status`
//!   and the admin page;
//! - `maildrop_locks`: the POP3 maildrop lock (RFC 1939 §8: exclusive
//!   access) as a lease a node renews while its session lasts, so a dead
//!   node's lock runs out on its own;
//! - `login_strikes`: failed logins per account+IP and per IP, counted by
//!   every node together;
//! - `session_leases`: one row per logged-in IMAP, POP3 or SMTP session, so
//!   the per-account connection limit counts every node's sessions; a
//!   node's heartbeat renews its rows, and a dead node's run out.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000020_cluster"
    }
}

#[derive(DeriveIden)]
enum ClusterNodes {
    Table,
    Id,
    Name,
    Version,
    StartedAt,
    LastSeen,
    HeartbeatSecs,
    SpoolDepth,
    QueueInFlight,
    RunsQueue,
}

#[derive(DeriveIden)]
enum MaildropLocks {
    Table,
    AccountId,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum SessionLeases {
    Table,
    Id,
    AccountId,
    Protocol,
    NodeId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginStrikes {
    Table,
    Key,
    Count,
    FirstAt,
    LockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ClusterNodes::Table)
                .col(
                    ColumnDef::new(ClusterNodes::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ClusterNodes::Name).string().not_null())
                .col(ColumnDef::new(ClusterNodes::Version).string().not_null())
                .col(
                    ColumnDef::new(ClusterNodes::StartedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ClusterNodes::LastSeen)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ClusterNodes::HeartbeatSecs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ClusterNodes::SpoolDepth)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ClusterNodes::QueueInFlight)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(ClusterNodes::RunsQueue).boolean().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(MaildropLocks::Table)
                .col(
                    ColumnDef::new(MaildropLocks::AccountId)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(MaildropLocks::Holder).string().not_null())
                .col(
                    ColumnDef::new(MaildropLocks::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LoginStrikes::Table)
                .col(
                    ColumnDef::new(LoginStrikes::Key)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(LoginStrikes::Count).integer().not_null())
                .col(
                    ColumnDef::new(LoginStrikes::FirstAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LoginStrikes::LockedUntil)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SessionLeases::Table)
                .col(
                    ColumnDef::new(SessionLeases::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SessionLeases::AccountId)
                        .integer()
                        .not_null(),
                )
                .col(ColumnDef::new(SessionLeases::Protocol).string().not_null())
                .col(ColumnDef::new(SessionLeases::NodeId).string().not_null())
                .col(
                    ColumnDef::new(SessionLeases::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("session_leases_account")
                .table(SessionLeases::Table)
                .col(SessionLeases::AccountId)
                .col(SessionLeases::Protocol)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("session_leases_node")
                .table(SessionLeases::Table)
                .col(SessionLeases::NodeId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            ClusterNodes::Table.into_iden(),
            MaildropLocks::Table.into_iden(),
            LoginStrikes::Table.into_iden(),
            SessionLeases::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
