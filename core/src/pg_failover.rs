//! PostgreSQL high availability. `database.url` may name several hosts as
//! libpq does: `postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`.
//! sqlx 0.8 takes one host per pool, so the pool is pointed at one host at
//! a time: the first that accepts writes. A watcher asks it every second;
//! when it stops answering or turns read-only (it became a standby), the
//! watcher finds the host that accepts writes (the promoted standby) and
//! points the pool there. Connections made before the switch are closed
//! when next taken, so a node returns to service without a restart, and
//! mail that arrives meanwhile waits in its spool.
//!
//! Promoting a standby belongs to PostgreSQL or its manager (`pg_ctl
//! promote`, Patroni, pg_auto_failover); Tern follows it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPool};
use sea_orm::sqlx::{Connection, PgConnection, Row};

use crate::error::{CoreError, CoreResult};

/// How often the watcher asks the current host.
const WATCH: Duration = Duration::from_secs(1);
/// How long one host may take to answer the watcher.
const ASK: Duration = Duration::from_secs(3);

/// The hosts of a database URL, each as a URL of its own. The one
/// `target_session_attrs` Tern honours is the one a writer needs
/// (`read-write`, or `primary`); it is taken out, as sqlx does not know it.
pub(crate) fn split_hosts(url: &str) -> CoreResult<Vec<String>> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| CoreError::invalid("database.url has no scheme"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let tail = strip_session_attrs(tail)?;
    let list: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{userinfo}{h}{tail}"))
        .collect();
    if list.is_empty() {
        // No host in the authority (a socket given as `?host=/run/...`).
        return Ok(vec![format!("{scheme}://{userinfo}{tail}")]);
    }
    Ok(list)
}

fn strip_session_attrs(tail: &str) -> CoreResult<String> {
    let Some((path, query)) = tail.split_once('?') else {
        return Ok(tail.to_owned());
    };
    let mut kept = Vec::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("target_session_attrs", v)) => {
                if !matches!(v, "read-write" | "primary") {
                    return Err(CoreError::invalid(format!(
                        "database.url: target_session_attrs={v} is not supported: \
                         Tern writes, so it connects to the host that accepts writes \
                         (read-write)"
                    )));
                }
            }
            _ => kept.push(kv),
        }
    }
    Ok(if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

/// True when the connection's server takes writes: not a standby, and not
/// read-only by default (what libpq's `read-write` checks).
pub(crate) async fn writable(c: &mut PgConnection) -> bool {
    sea_orm::sqlx::query(
        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
    )
    .fetch_one(c)
    .await
    .and_then(|r| r.try_get::<bool, _>(0))
    .unwrap_or(false)
}

/// The hosts and which one the pool uses.
pub(crate) struct Failover {
    hosts: Vec<PgConnectOptions>,
    current: Mutex<usize>,
    /// When the pool last moved to another host.
    switched: Mutex<Option<Instant>>,
}

impl Failover {
    pub(crate) fn new(hosts: Vec<PgConnectOptions>) -> Self {
        Failover {
            hosts,
            current: Mutex::new(0),
            switched: Mutex::new(None),
        }
    }

    pub(crate) fn current(&self) -> usize {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn options(&self) -> PgConnectOptions {
        self.hosts[self.current()].clone()
    }

    /// A pooled connection `age` old was made before the last switch: it
    /// may lead to the old primary, so it is closed rather than used.
    pub(crate) fn stale(&self, age: Duration) -> bool {
        self.switched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| age > t.elapsed())
    }

    /// The first host that answers and takes writes.
    pub(crate) async fn find_writable(&self) -> Option<usize> {
        for (i, h) in self.hosts.iter().enumerate() {
            let ok = tokio::time::timeout(ASK, async {
                match PgConnection::connect_with(h).await {
                    Ok(mut c) => {
                        let w = writable(&mut c).await;
                        let _ = c.close().await;
                        w
                    }
                    Err(_) => false,
                }
            })
            .await
            .unwrap_or(false);
            if ok {
                return Some(i);
            }
        }
        None
    }

    pub(crate) fn use_host(&self, pool: Option<&PgPool>, i: usize) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *cur == i {
            return;
        }
        *cur = i;
        *self.switched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if let Some(pool) = pool {
            pool.set_connect_options(self.hosts[i].clone());
        }
        tracing::warn!(
            host = %self.hosts[i].get_host(),
            port = self.hosts[i].get_port(),
            "database failover: now writing to another host of database.url"
        );
    }
}

/// Asks the pool's host every second and follows the writable host.
pub(crate) async fn watch(pool: PgPool, f: std::sync::Arc<Failover>) {
    loop {
        tokio::time::sleep(WATCH).await;
        if pool.is_closed() {
            return;
        }
        let healthy = tokio::time::timeout(ASK, async {
            match pool.acquire().await {
                Ok(mut c) => writable(&mut c).await,
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false);
        if healthy {
            continue;
        }
        if let Some(i) = f.find_writable().await {
            f.use_host(Some(&pool), i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_several_hosts_is_one_url_per_host() {
        assert_eq!(
            split_hosts(
                "postgres://tern:pw@db1:5432,db2:5433/mail?target_session_attrs=read-write&sslmode=disable"
            )
            .unwrap(),
            [
                "postgres://tern:pw@db1:5432/mail?sslmode=disable",
                "postgres://tern:pw@db2:5433/mail?sslmode=disable"
            ]
        );
        assert_eq!(
            split_hosts("postgresql://h/db").unwrap(),
            ["postgresql://h/db"]
        );
        assert_eq!(
            split_hosts("postgres://a,b?target_session_attrs=primary").unwrap(),
            ["postgres://a", "postgres://b"]
        );
        assert!(split_hosts("postgres://a,b/db?target_session_attrs=standby").is_err());
        assert_eq!(split_hosts("postgres:///db").unwrap(), ["postgres:///db"]);
        assert!(split_hosts("nonsense").is_err());
    }
}
