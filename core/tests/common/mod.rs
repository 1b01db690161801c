//! Runs each storage test on every backend: SQLite in a temp dir, and a
//! real PostgreSQL when `TERN_TEST_PG_URL` names one (the README's test
//! command starts a throwaway cluster and sets it). With
//! `TERN_REQUIRE_PG=1` (set by that command, and so by CI) a missing
//! PostgreSQL fails the test instead of being skipped.

#![allow(dead_code)]

use std::future::Future;

use mailcore::{Core, CoreOptions};
use sea_orm::{ConnectionTrait, Database};

fn random_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

/// Creates a fresh database on the PostgreSQL server behind `admin_url`
/// and returns its URL.
async fn fresh_pg_database(admin_url: &str) -> String {
    let name = format!("tern_t_{}", random_suffix());
    let admin = Database::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    admin.close().await.ok();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("TERN_TEST_PG_URL must end in /dbname");
    format!("{base}/{name}")
}

pub async fn for_each_backend<F, Fut>(test: &str, f: F)
where
    F: Fn(Core) -> Fut,
    Fut: Future<Output = ()>,
{
    for_each_url(test, |url| {
        let f = &f;
        async move {
            let core = Core::open(CoreOptions::new(url)).await.expect("open core");
            f(core.clone()).await;
            core.close().await;
        }
    })
    .await;
}

/// Like [`for_each_backend`], but hands the test a database URL so it can
/// open several cores (several "nodes") with clocks of its own.
/// One whole line to stderr in one write: `eprintln!` may write its pieces
/// separately, and the test runner's lines (on stdout, in the same pipe)
/// then land inside ours, which scripts/test.sh counts.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}

pub async fn for_each_url<F, Fut>(test: &str, f: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tern.db?mode=rwc", dir.path().display());
    f(url).await;
    say(&format!("[sqlite]   {test}: ok"));

    match std::env::var("TERN_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let url = fresh_pg_database(&admin).await;
            f(url).await;
            say(&format!("[postgres] {test}: ok"));
        }
        _ => {
            if std::env::var("TERN_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!(
                    "TERN_REQUIRE_PG=1 but TERN_TEST_PG_URL is not set: the PostgreSQL suite cannot run"
                );
            }
            eprintln!("!!! [postgres] {test}: SKIPPED (TERN_TEST_PG_URL not set) !!!");
        }
    }
}
