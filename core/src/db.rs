//! Connection set-up for both backends.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk
//! when it returns (DESIGN.md rule 1), with foreign keys on and a busy
//! timeout so concurrent writers wait instead of failing. PostgreSQL runs
//! with `synchronous_commit=on` whatever the server default is.

use std::str::FromStr;
use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector, Statement,
};

use crate::error::{CoreError, CoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub async fn connect(url: &str) -> CoreResult<(DatabaseConnection, Backend)> {
    let bad_url = |e: sea_orm::sqlx::Error| CoreError::invalid(format!("database.url: {e}"));
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(bad_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))?;
        Ok((
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            Backend::Sqlite,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let opts = PgConnectOptions::from_str(url)
            .map_err(bad_url)?
            .options([("synchronous_commit", "on")]);
        // A short acquire timeout turns a dead database into a prompt
        // temporary failure instead of a hung client.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))?;
        Ok((
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
            Backend::Postgres,
        ))
    } else {
        Err(CoreError::invalid(format!(
            "database.url must start with sqlite: or postgres:, got {url:?}"
        )))
    }
}

pub async fn migrate(db: &DatabaseConnection) -> CoreResult<()> {
    Migrator::up(db, None)
        .await
        .map_err(|e| CoreError::Unavailable(format!("migration failed: {e}")))
}

pub async fn ping(db: &DatabaseConnection) -> CoreResult<()> {
    let backend = db.get_database_backend();
    let stmt = Statement::from_string(backend, "SELECT 1".to_owned());
    // On SQLite this proves the file opens; a read-only or full disk shows
    // up on the next write as `Unavailable` instead.
    db.query_one(stmt).await?;
    Ok(())
}
