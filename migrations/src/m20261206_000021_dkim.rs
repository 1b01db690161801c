//! `dkim_keys`: each local domain's DKIM keys (RFC 6376), an Ed25519 one
//! (RFC 8463) and an RSA-2048 one, both signing, so receivers that know
//! only RSA still verify. The private key is sealed with the data dir's
//! secrets key, like outside passwords: a copy of the database alone does
//! not let anyone sign as the domain. A rotated key stops signing at once
//! and stays listed (its DNS record still needed for mail in flight) until
//! `retired_at` plus the grace period.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000021_dkim"
    }
}

#[derive(DeriveIden)]
enum DkimKeys {
    Table,
    Id,
    Domain,
    Selector,
    Algorithm,
    PrivateKey,
    PublicKey,
    CreatedAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(DkimKeys::Table)
                .col(
                    ColumnDef::new(DkimKeys::Id)
                        .integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(DkimKeys::Domain).string().not_null())
                .col(ColumnDef::new(DkimKeys::Selector).string().not_null())
                .col(ColumnDef::new(DkimKeys::Algorithm).string().not_null())
                .col(ColumnDef::new(DkimKeys::PrivateKey).text().not_null())
                .col(ColumnDef::new(DkimKeys::PublicKey).text().not_null())
                .col(ColumnDef::new(DkimKeys::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(DkimKeys::RetiredAt).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("dkim_keys_domain_selector")
                .table(DkimKeys::Table)
                .col(DkimKeys::Domain)
                .col(DkimKeys::Selector)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DkimKeys::Table).to_owned())
            .await
    }
}
