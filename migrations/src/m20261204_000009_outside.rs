//! Outside accounts (the mail2web feature): an IMAP or POP3 mailbox at
//! another provider that a local user reads in the webmail. The password is
//! stored sealed (AEAD, with a key kept in the data dir, not in the
//! database), or not at all when the user keeps it for the session only.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000009_outside"
    }
}

#[derive(DeriveIden)]
enum OutsideAccounts {
    Table,
    Id,
    AccountId,
    Address,
    Username,
    Protocol,
    InHost,
    InPort,
    InSecurity,
    OutHost,
    OutPort,
    OutSecurity,
    /// Nonce and ciphertext of the password; NULL when it is kept for the
    /// session only.
    Secret,
    /// SHA-256 of a certificate the user chose to trust although it did
    /// not verify (a self-signed one, for instance).
    PinnedCert,
    LastError,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(OutsideAccounts::Table)
                .col(pk_auto(OutsideAccounts::Id))
                .col(integer(OutsideAccounts::AccountId))
                .col(string(OutsideAccounts::Address))
                .col(string(OutsideAccounts::Username))
                .col(string(OutsideAccounts::Protocol))
                .col(string(OutsideAccounts::InHost))
                .col(integer(OutsideAccounts::InPort))
                .col(string(OutsideAccounts::InSecurity))
                .col(string(OutsideAccounts::OutHost))
                .col(integer(OutsideAccounts::OutPort))
                .col(string(OutsideAccounts::OutSecurity))
                .col(text_null(OutsideAccounts::Secret))
                .col(string_null(OutsideAccounts::PinnedCert))
                .col(text_null(OutsideAccounts::LastError))
                .col(big_integer(OutsideAccounts::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("outside_accounts_owner")
                .table(OutsideAccounts::Table)
                .col(OutsideAccounts::AccountId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OutsideAccounts::Table).to_owned())
            .await
    }
}
