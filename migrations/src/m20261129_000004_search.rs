//! Full-text search over the messages' from, to, subject and body.
//!
//! The index is keyed by blob id, not message row: a blob is written once
//! and shared by every copy of the message (catchall, multi-recipient, IMAP
//! COPY/MOVE), so moving mail between folders never touches the index. A
//! search joins the hits back to the account's own message rows.
//!
//! The index is backend-specific, so this migration is raw SQL:
//! - SQLite: an FTS5 table whose rowid is the blob id;
//! - PostgreSQL: a `tsvector` column with a GIN index.
//!
//! The text fed to both is split into words by the core before it gets
//! here, so both backends see the same tokens.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000004_search"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE TABLE blob_search (\
                       blob_id integer PRIMARY KEY, \
                       doc tsvector NOT NULL)",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE INDEX blob_search_doc ON blob_search USING gin (doc)",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE VIRTUAL TABLE blob_search USING fts5(\
                       words, tokenize = 'unicode61 remove_diacritics 2')",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP TABLE blob_search")
            .await?;
        Ok(())
    }
}
