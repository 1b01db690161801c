//! The admin area: catchall that rejects with a custom reply, which domains
//! a domain admin manages, and the audit log of every admin action.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000005_admin"
    }
}

#[derive(DeriveIden)]
enum Domains {
    Table,
    CatchallReject,
}

#[derive(DeriveIden)]
enum DomainAdmins {
    Table,
    AccountId,
    DomainId,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Ip,
    Action,
    Domain,
    Target,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Set: unknown local parts get 550 with this text. Cleared: the
        // default 550 "no such user", or the catchall account if one is set.
        m.alter_table(
            Table::alter()
                .table(Domains::Table)
                .add_column(string_null(Domains::CatchallReject))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(DomainAdmins::Table)
                .col(integer(DomainAdmins::AccountId))
                .col(integer(DomainAdmins::DomainId))
                .primary_key(
                    Index::create()
                        .col(DomainAdmins::AccountId)
                        .col(DomainAdmins::DomainId),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(pk_auto(AuditLog::Id))
                .col(big_integer(AuditLog::At))
                .col(string(AuditLog::Actor))
                .col(string(AuditLog::Ip))
                .col(string(AuditLog::Action))
                .col(string(AuditLog::Domain))
                .col(string(AuditLog::Target))
                .col(text(AuditLog::Detail))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_log_domain")
                .table(AuditLog::Table)
                .col(AuditLog::Domain)
                .col(AuditLog::Id)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(DomainAdmins::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Domains::Table)
                .drop_column(Domains::CatchallReject)
                .to_owned(),
        )
        .await
    }
}
