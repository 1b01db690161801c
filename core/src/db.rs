//! Connection set-up for both backends.
//!
//! SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk
//! when it returns (DESIGN.md rule 1), with foreign keys on and a busy
//! timeout so concurrent writers wait instead of failing. PostgreSQL runs
//! with `synchronous_commit=on` whatever the server default is.
//!
//! A pooled connection must never carry a transaction from one user to the
//! next. sqlx counts transaction depth itself: when a COMMIT fails (disk
//! full, a file made read-only) and the ROLLBACK after it fails too, the
//! count stays at 1 while SQLite may still hold the dead transaction open.
//! The next `begin()` on that connection then issues a SAVEPOINT inside it,
//! every later "commit" is a savepoint release that never reaches the disk,
//! and the connection holds the write lock until a restart. So the pool
//! checks each connection when it is returned and again when it is taken:
//! sqlx must see depth 0, and SQLite must be in autocommit mode. A
//! connection that fails either check is closed, never reused.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::pg_failover::Failover;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{Connection, PgConnection};
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

/// The store's connections: `read` for queries, `write` for every write
/// transaction. On SQLite `write` is one connection, so the process has
/// one writer and two of its writers never meet inside SQLite: no
/// `SQLITE_BUSY`, no `BUSY_SNAPSHOT` when a transaction that read first
/// goes on to write (DESIGN.md: "Two writers meeting is never reported as
/// an outage"). Readers in WAL mode never wait for it. On PostgreSQL both
/// are the same pool and transactions run concurrently.
pub struct Pools {
    pub read: DatabaseConnection,
    pub write: DatabaseConnection,
    pub backend: Backend,
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

fn bad_url(e: sea_orm::sqlx::Error) -> CoreError {
    CoreError::invalid(format!("database.url: {e}"))
}

fn sqlite_options(url: &str) -> CoreResult<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(bad_url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Other processes (the CLI) may still write: wait for them.
        .busy_timeout(Duration::from_secs(10)))
}

/// The writer (one connection; waiting for it is waiting in line, not an
/// outage: a dead disk fails its statements at once instead) or the readers.
fn sqlite_pool(writer: bool) -> SqlitePoolOptions {
    let (max, wait) = if writer { (1, 60) } else { (8, 10) };
    SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(wait))
        // A file's connections neither go stale nor cost a server
        // anything; without a timeout or lifetime, sqlx runs no
        // maintenance task, which was seen spinning at 100% CPU when a
        // runtime ended with a pool still open (a test hung for good).
        .idle_timeout(None)
        .max_lifetime(None)
        .after_release(|c, m| Box::pin(sqlite_conn_clean(c, m, "released")))
        .before_acquire(|c, m| Box::pin(sqlite_conn_clean(c, m, "acquired")))
}

fn pg_options(url: &str) -> CoreResult<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(bad_url)?
        .options([("synchronous_commit", "on")]))
}

/// A short acquire timeout turns a dead database into a prompt temporary
/// failure instead of a hung client. With several hosts (`failover`), a
/// new connection must take writes, and one made before the pool moved
/// to another host is closed instead of used.
fn pg_pool(failover: Option<Arc<Failover>>) -> PgPoolOptions {
    let opts = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5));
    let Some(f) = failover else {
        return opts.before_acquire(|c, _| Box::pin(pg_conn_clean(c)));
    };
    opts.after_connect(|c, _| {
        Box::pin(async move {
            if crate::pg_failover::writable(c).await {
                Ok(())
            } else {
                Err(sea_orm::sqlx::Error::Protocol(
                    "this host does not take writes (a standby)".into(),
                ))
            }
        })
    })
    .before_acquire(move |c, meta| {
        let stale = f.stale(meta.age);
        Box::pin(async move {
            if stale {
                return Ok(false);
            }
            pg_conn_clean(c).await
        })
    })
}

/// The hosts of a PostgreSQL URL (one, or several for failover).
fn pg_hosts(url: &str) -> CoreResult<Vec<PgConnectOptions>> {
    crate::pg_failover::split_hosts(url)?
        .iter()
        .map(|u| pg_options(u))
        .collect()
}

fn sqlite_pools(read: sea_orm::sqlx::SqlitePool, write: sea_orm::sqlx::SqlitePool) -> Pools {
    Pools {
        read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
        write: SqlxSqliteConnector::from_sqlx_sqlite_pool(write),
        backend: Backend::Sqlite,
    }
}

fn pg_pools(pool: sea_orm::sqlx::PgPool) -> Pools {
    let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    Pools {
        read: db.clone(),
        write: db,
        backend: Backend::Postgres,
    }
}

pub async fn connect(url: &str) -> CoreResult<Pools> {
    let down = |e: sea_orm::sqlx::Error| CoreError::Unavailable(e.to_string());
    if url.starts_with("sqlite:") {
        let opts = sqlite_options(url)?;
        // The writer first: it creates the file and sets WAL mode.
        let write = sqlite_pool(true)
            .connect_with(opts.clone())
            .await
            .map_err(down)?;
        let read = sqlite_pool(false).connect_with(opts).await.map_err(down)?;
        Ok(sqlite_pools(read, write))
    } else if is_postgres(url) {
        let hosts = pg_hosts(url)?;
        if hosts.len() == 1 {
            let pool = pg_pool(None)
                .connect_with(hosts[0].clone())
                .await
                .map_err(down)?;
            return Ok(pg_pools(pool));
        }
        let f = Arc::new(Failover::new(hosts));
        let first = f.find_writable().await.ok_or_else(|| {
            CoreError::Unavailable("no host of database.url answers and takes writes".into())
        })?;
        f.use_host(None, first);
        let pool = pg_pool(Some(f.clone()))
            .connect_with(f.options())
            .await
            .map_err(down)?;
        tokio::spawn(crate::pg_failover::watch(pool.clone(), f));
        Ok(pg_pools(pool))
    } else {
        Err(CoreError::invalid(format!(
            "database.url must start with sqlite: or postgres:, got {url:?}"
        )))
    }
}

/// The same pools, connecting only when first used: for a node that
/// starts while the database is down.
pub fn connect_lazy(url: &str) -> CoreResult<Pools> {
    if is_postgres(url) {
        let hosts = pg_hosts(url)?;
        if hosts.len() == 1 {
            return Ok(pg_pools(pg_pool(None).connect_lazy_with(hosts[0].clone())));
        }
        let f = Arc::new(Failover::new(hosts));
        let pool = pg_pool(Some(f.clone())).connect_lazy_with(f.options());
        tokio::spawn(crate::pg_failover::watch(pool.clone(), f));
        return Ok(pg_pools(pool));
    }
    let opts = sqlite_options(url)?;
    Ok(sqlite_pools(
        sqlite_pool(false).connect_lazy_with(opts.clone()),
        sqlite_pool(true).connect_lazy_with(opts),
    ))
}

/// True when a pooled SQLite connection is fit to hand out: no transaction
/// open as far as sqlx knows, and none open as far as SQLite knows.
async fn sqlite_conn_clean(
    conn: &mut SqliteConnection,
    _meta: PoolConnectionMetadata,
    when: &'static str,
) -> Result<bool, sea_orm::sqlx::Error> {
    // Locking the handle goes through sqlx's worker queue, so a rollback
    // that a dropped transaction left queued has run before we look.
    let (autocommit, read_only) = {
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the handle is locked out of sqlx's worker thread for the
        // length of this block, and these calls only read flags.
        let raw = handle.as_raw_handle().as_ptr();
        let autocommit = unsafe { libsqlite3_sys::sqlite3_get_autocommit(raw) } != 0;
        // SQLite opens a file it may not write (made immutable, or
        // read-only for a moment) read-only, silently, and such a
        // connection never writes again even once the file is writable:
        // replace it. The name is a NUL-terminated literal.
        let read_only = unsafe { libsqlite3_sys::sqlite3_db_readonly(raw, c"main".as_ptr()) } == 1;
        (autocommit, read_only)
    };
    let sqlx_depth_zero = !conn.is_in_transaction();
    if read_only {
        tracing::warn!(
            when,
            "closing a SQLite connection that opened the database read-only"
        );
        return Ok(false);
    }
    if sqlx_depth_zero && autocommit {
        return Ok(true);
    }
    metrics::counter!("tern_database_errors_total").increment(1);
    tracing::error!(
        when,
        sqlx_depth_zero,
        autocommit,
        "closing a SQLite connection left inside a transaction (a failed COMMIT or ROLLBACK)"
    );
    Ok(false)
}

/// PostgreSQL ends a transaction whose COMMIT failed on its side; what
/// must not survive is sqlx's own count of an open transaction.
async fn pg_conn_clean(conn: &mut PgConnection) -> Result<bool, sea_orm::sqlx::Error> {
    if conn.is_in_transaction() {
        metrics::counter!("tern_database_errors_total").increment(1);
        tracing::error!("closing a PostgreSQL connection left inside a transaction");
        return Ok(false);
    }
    Ok(true)
}

/// `insert` in its own explicit transaction, for rows written outside one.
/// On SQLite an INSERT ... RETURNING in autocommit mode commits when the
/// statement is reset, after sqlx has read the row it wanted, and a commit
/// that fails there (a full disk) is never reported: the caller would get
/// the new row and an `Ok` for a write that is not on disk (the storage
/// fault test caught a web session handed out that way). An explicit
/// COMMIT reports it.
#[async_trait::async_trait]
pub(crate) trait InsertCommitted: sea_orm::ActiveModelTrait {
    async fn insert_committed(
        self,
        db: &DatabaseConnection,
    ) -> CoreResult<<Self::Entity as sea_orm::EntityTrait>::Model>;
}

#[async_trait::async_trait]
impl<A> InsertCommitted for A
where
    A: sea_orm::ActiveModelTrait + sea_orm::ActiveModelBehavior + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    async fn insert_committed(
        self,
        db: &DatabaseConnection,
    ) -> CoreResult<<A::Entity as sea_orm::EntityTrait>::Model> {
        use sea_orm::TransactionTrait;
        let txn = db.begin().await?;
        let m = self.insert(&txn).await?;
        txn.commit().await?;
        Ok(m)
    }
}

pub async fn migrate(db: &DatabaseConnection) -> CoreResult<()> {
    Migrator::up(db, None)
        .await
        .map_err(|e| CoreError::Unavailable(format!("migration failed: {e}")))
}

/// Rewrites the health row: proof that the store commits a write now.
pub async fn probe_write(db: &DatabaseConnection, now: i64) -> CoreResult<()> {
    let backend = db.get_database_backend();
    let stmt = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DbBackend::Postgres => "UPDATE health_probe SET probed_at = $1 WHERE id = 1",
            _ => "UPDATE health_probe SET probed_at = ? WHERE id = 1",
        },
        [now.into()],
    );
    let res = db.execute(stmt).await?;
    if res.rows_affected() != 1 {
        return Err(CoreError::Unavailable("the health row is missing".into()));
    }
    Ok(())
}

impl crate::Core {
    /// A consistent copy of a SQLite store at `path` while it runs
    /// (`VACUUM INTO`: one read transaction, so the copy is one moment of
    /// the store, compacted). PostgreSQL has `pg_dump` for this.
    pub async fn backup_sqlite(&self, path: &std::path::Path) -> crate::CoreResult<()> {
        use sea_orm::ConnectionTrait;
        if self.backend() != Backend::Sqlite {
            return Err(crate::CoreError::Invalid(
                "the store is PostgreSQL: back it up with pg_dump".into(),
            ));
        }
        let p = path.to_string_lossy().replace('\'', "''");
        self.db()
            .execute_unprepared(&format!("VACUUM INTO '{p}'"))
            .await?;
        Ok(())
    }
}
