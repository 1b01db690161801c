//! The node's own copy of what routing needs (domains, accounts, aliases,
//! catchall), so RCPT is answered while the database is down and mail
//! goes on into the spool (DESIGN.md rule 2).
//!
//! - Kept in memory and on disk (`directory.json` in the spool directory,
//!   written to a temporary file, synced, renamed), so a node restarted
//!   during an outage still has it.
//! - Refreshed from the database when the directory changes: every change
//!   moves `directory_version` on, and the node polls that one row every
//!   [`POLL`] (a few seconds stale at most, on any node of a cluster), and
//!   reloads in full every [`FULL_RELOAD`] whatever it says.
//! - While the database answers, the copy may only say yes, and only when
//!   it is current (checked within [`FRESH`], loaded after this process's
//!   own last directory change): an address it routes to a mailbox is
//!   routed without a query, anything else is asked of the database. That
//!   takes the RCPT queries off the acceptance path; the cost is that an
//!   account removed by another process (the CLI, another node) can still
//!   receive for up to [`POLL`], and such mail meets the removal at ingest
//!   and goes back to its sender as a DSN.
//! - While the database cannot answer, an address the copy routes to a
//!   mailbox is accepted; everything else (unknown here, a catchall's
//!   refusal, a domain the copy does not know) is a temporary failure,
//!   never a `550` from a copy that may be stale.

use crate::ids::AccountId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::directory::{Domain, Role};
use crate::entities::{account, alias, domain};
use crate::error::CoreResult;

pub const POLL: Duration = Duration::from_secs(2);
pub const FULL_RELOAD: Duration = Duration::from_secs(300);
/// The copy answers on its own only if a poll found it current this
/// recently (two polls' worth, so one slow poll does not turn it off).
pub const FRESH: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectorySnapshot {
    pub version: i64,
    /// name -> (catchall local part, catchall refusal text)
    pub domains: HashMap<String, (Option<String>, Option<String>)>,
    /// address -> (id, role, disabled)
    pub accounts: HashMap<String, (AccountId, String, bool)>,
    /// address -> targets
    pub aliases: HashMap<String, Vec<String>>,
    /// account id -> quota in bytes, for accounts that have one; an
    /// account not here has none (so `accept` need not ask the store).
    /// Absent from copies an older version saved: read as "no quotas",
    /// which only skips the early check (ingest enforces quotas anyway).
    #[serde(default)]
    pub quotas: HashMap<AccountId, i64>,
    /// `Inner::directory_local_changes` as it was before this copy was
    /// read from the database; not saved.
    #[serde(skip)]
    pub local_changes: u64,
}

impl DirectorySnapshot {
    pub(crate) fn domain(&self, name: &str) -> Option<Domain> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.domains.get(&name).map(|(c, r)| Domain {
            id: 0,
            name: name.clone(),
            catchall: c.clone(),
            catchall_reject: r.clone(),
        })
    }

    pub(crate) fn account(&self, address: &str) -> Option<(AccountId, Role, bool)> {
        self.accounts
            .get(&address.to_ascii_lowercase())
            .or_else(|| self.accounts.get(address))
            .map(|(id, role, disabled)| (*id, Role::parse(role).unwrap_or(Role::User), *disabled))
    }

    pub(crate) fn alias_targets(&self, address: &str) -> Vec<String> {
        self.aliases
            .get(&address.to_ascii_lowercase())
            .or_else(|| self.aliases.get(address))
            .cloned()
            .unwrap_or_default()
    }

    fn load(path: &Path) -> Option<DirectorySnapshot> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "directory copy unreadable; ignored");
                None
            }
        }
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Stops this process's copy answering on its own until it is reloaded.
pub(crate) fn note_local_change(core: &Core) {
    core.inner
        .directory_local_changes
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Moves the directory version on: routing copies on every node reload.
/// Called inside the change's transaction, before it commits: from here
/// on this process's copy no longer answers on its own (it may have been
/// read before the change) until it is reloaded.
pub(crate) async fn bump<C: ConnectionTrait>(core: &Core, c: &C) {
    note_local_change(core);
    let r = c
        .execute(Statement::from_string(
            c.get_database_backend(),
            "UPDATE directory_version SET version = version + 1 WHERE id = 1",
        ))
        .await;
    if let Err(e) = r {
        // The change itself is committed; the copies catch up at their
        // next full reload.
        tracing::warn!(error = %e, "directory version not moved on");
    }
}

async fn read_version<C: ConnectionTrait>(c: &C) -> CoreResult<i64> {
    let row = c
        .query_one(Statement::from_string(
            c.get_database_backend(),
            "SELECT version FROM directory_version WHERE id = 1",
        ))
        .await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .unwrap_or(0))
}

pub struct DirectoryCacheHandle {
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryCacheHandle {
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Core {
    /// The routing copy, when this node keeps one.
    pub(crate) fn directory_copy(&self) -> Option<Arc<DirectorySnapshot>> {
        self.inner
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The copy, if it may answer RCPT without the database: checked
    /// within [`FRESH`] and loaded after this process's last change.
    pub(crate) fn current_directory_copy(&self) -> Option<Arc<DirectorySnapshot>> {
        let checked = *self
            .inner
            .directory_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if checked.is_none_or(|t| t.elapsed() > FRESH) {
            return None;
        }
        let copy = self.directory_copy()?;
        let changes = self
            .inner
            .directory_local_changes
            .load(std::sync::atomic::Ordering::SeqCst);
        (copy.local_changes == changes).then_some(copy)
    }

    /// Whether RCPT is answered from the copy without a query right now
    /// (for `/admin` and tests).
    pub fn routing_copy_is_current(&self) -> bool {
        self.current_directory_copy().is_some()
    }

    fn mark_directory_checked(&self) {
        *self
            .inner
            .directory_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// Reads the whole directory from the database.
    async fn load_directory(&self) -> CoreResult<DirectorySnapshot> {
        let local_changes = self
            .inner
            .directory_local_changes
            .load(std::sync::atomic::Ordering::SeqCst);
        let version = read_version(self.db()).await?;
        let domains = domain::Entity::find().all(self.db()).await?;
        let by_id: HashMap<i32, String> = domains.iter().map(|d| (d.id, d.name.clone())).collect();
        let mut snap = DirectorySnapshot {
            version,
            local_changes,
            ..Default::default()
        };
        for d in domains {
            snap.domains
                .insert(d.name.clone(), (d.catchall_local_part, d.catchall_reject));
        }
        for a in account::Entity::find().all(self.db()).await? {
            if by_id.contains_key(&a.domain_id) {
                snap.accounts
                    .insert(a.address.clone(), (a.id, a.role.clone(), a.disabled));
                if a.quota_bytes > 0 {
                    snap.quotas.insert(a.id, a.quota_bytes);
                }
            }
        }
        for al in alias::Entity::find().all(self.db()).await? {
            snap.aliases
                .entry(al.address.clone())
                .or_default()
                .push(al.target.clone());
        }
        Ok(snap)
    }

    /// Loads the copy kept in `path` (if any), then keeps it fresh from
    /// the database and on disk for as long as the node runs.
    pub fn start_directory_cache(&self, path: PathBuf) -> DirectoryCacheHandle {
        if let Some(s) = DirectorySnapshot::load(&path) {
            tracing::info!(
                accounts = s.accounts.len(),
                version = s.version,
                "routing copy loaded from disk"
            );
            *self
                .inner
                .directory
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
        }
        let core = self.clone();
        let task = tokio::spawn(async move {
            let mut last_full = tokio::time::Instant::now();
            let mut first = true;
            loop {
                let have = core.directory_copy().map(|s| (s.version, s.local_changes));
                let due = first || last_full.elapsed() >= FULL_RELOAD;
                let local_changes = core
                    .inner
                    .directory_local_changes
                    .load(std::sync::atomic::Ordering::SeqCst);
                let changed = match read_version(core.db()).await {
                    Ok(v) => {
                        let current = have == Some((v, local_changes));
                        if current {
                            core.mark_directory_checked();
                        }
                        !current
                    }
                    Err(_) => false,
                };
                if due || changed {
                    match core.load_directory().await {
                        Ok(snap) => {
                            first = false;
                            last_full = tokio::time::Instant::now();
                            let same = core.directory_copy().is_some_and(|s| *s == snap);
                            // Checked now only if nothing changed here
                            // since it was read; else the next poll reloads.
                            if snap.local_changes
                                == core
                                    .inner
                                    .directory_local_changes
                                    .load(std::sync::atomic::Ordering::SeqCst)
                            {
                                core.mark_directory_checked();
                            }
                            if !same {
                                if let Err(e) = snap.save(&path) {
                                    tracing::warn!(error = %e, path = %path.display(), "routing copy not saved");
                                }
                                *core
                                    .inner
                                    .directory
                                    .write()
                                    .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snap));
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "routing copy not refreshed"),
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        });
        DirectoryCacheHandle { task }
    }
}
