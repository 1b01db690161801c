//! What IMAP FETCH needs of a message, kept with its bytes so that a FETCH
//! of envelopes or headers neither reads whole messages nor parses MIME
//! (Dovecot keeps a cache file for the same reason):
//! - `blobs.header_len`: where the body starts, so a header is read alone;
//! - `blobs.fetch_cache`: bytes the IMAP server made from the parsed
//!   message at delivery (ENVELOPE, BODYSTRUCTURE, BODY), opaque to the
//!   store and versioned by whoever reads them;
//! - `blobs.search_complete`: the full-text index holds every word of the
//!   body text (none cut off by the length limits), so a message the index
//!   does not find cannot match IMAP SEARCH BODY and is not read.
//!
//! All are NULL for messages stored before; readers fall back to the bytes.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000015_fetch_cache"
    }
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    HeaderLen,
    FetchCache,
    SearchComplete,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Blobs::Table)
                .add_column(ColumnDef::new(Blobs::HeaderLen).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Blobs::Table)
                .add_column(ColumnDef::new(Blobs::FetchCache).binary().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Blobs::Table)
                .add_column(ColumnDef::new(Blobs::SearchComplete).boolean().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in [Blobs::SearchComplete, Blobs::FetchCache, Blobs::HeaderLen] {
            m.alter_table(Table::alter().table(Blobs::Table).drop_column(c).to_owned())
                .await?;
        }
        Ok(())
    }
}
