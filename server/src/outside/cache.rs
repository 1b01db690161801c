//! Keeps the unified inbox's header cache in step with each outside
//! INBOX, in the background: new messages' headers are fetched, gone
//! ones dropped, and the flags of the newest refreshed. One account at a
//! time, a bounded number of new headers per run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use mailcore::outside::{OutsideAccountId, OutsideError, OutsideLogin, OutsideSummary, Protocol};
use mailcore::outside_cache::CachedHeader;

use super::Outside;

/// New headers fetched per account and run (a 10,000-message INBOX is
/// in the cache after a few runs).
const NEW_PER_RUN: usize = 5000;
/// IMAP: the newest this many have their flags refreshed each run.
const FLAGS_WINDOW: usize = 200;
/// UIDs per FETCH command.
const CHUNK: usize = 250;

fn cached(s: &OutsideSummary) -> CachedHeader {
    CachedHeader {
        key: s.id.0.clone(),
        date: s.unix,
        from: s.from.clone(),
        subject: s.subject.clone(),
        size: i64::from(s.size),
        seen: s.seen,
        flagged: s.flagged,
    }
}

fn join(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Outside {
    /// One refresh of one account's INBOX cache.
    pub async fn sync_cache(
        &self,
        core: &Core,
        id: OutsideAccountId,
        login: &OutsideLogin,
    ) -> Result<(), OutsideError> {
        let store =
            |e: mailcore::CoreError| OutsideError::Unreachable(format!("the local store: {e}"));
        let known = core.outside_cached_keys(id).await.map_err(store)?;
        match login.settings.protocol {
            Protocol::Imap => {
                let (mut s, budget) = self.imap_session(login).await?;
                let mbox = self.open_inbox(&mut s, &budget).await?;
                let validity = i64::from(mbox.uid_validity.unwrap_or(0));
                let mut all = self.imap_uids_after(&mut s, &budget, 0).await?;
                all.sort_unstable_by(|a, b| b.cmp(a));
                let have: HashSet<&str> = known
                    .iter()
                    .filter(|(_, v)| *v == validity)
                    .map(|(k, _)| k.as_str())
                    .collect();
                let present: HashSet<String> = all.iter().map(u32::to_string).collect();
                let remove: Vec<String> = have
                    .iter()
                    .filter(|k| !present.contains(**k))
                    .map(|k| k.to_string())
                    .collect();
                // New ones, newest first; and the newest window for flags.
                let mut want: Vec<u32> = all
                    .iter()
                    .copied()
                    .filter(|u| !have.contains(u.to_string().as_str()))
                    .take(NEW_PER_RUN)
                    .collect();
                for u in all.iter().take(FLAGS_WINDOW) {
                    if !want.contains(u) {
                        want.push(*u);
                    }
                }
                let mut add = Vec::with_capacity(want.len());
                for chunk in want.chunks(CHUNK) {
                    let rows = self.summaries(&mut s, &budget, join(chunk), true).await?;
                    add.extend(rows.iter().map(cached));
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
                core.update_outside_cache(id, validity, &add, &remove)
                    .await
                    .map_err(store)?;
            }
            Protocol::Pop3 => {
                let mut pop = self.pop_session(login).await?;
                let uidls = self.pop_uidls(&mut pop).await?;
                let sizes = self.pop_sizes(&mut pop).await?;
                let have: HashSet<&str> = known.iter().map(|(k, _)| k.as_str()).collect();
                let present: HashSet<&str> = uidls.iter().map(|(_, u)| u.as_str()).collect();
                let remove: Vec<String> = have
                    .iter()
                    .filter(|k| !present.contains(**k))
                    .map(|k| k.to_string())
                    .collect();
                let mut add = Vec::new();
                for (n, uidl) in uidls.iter().rev() {
                    if add.len() >= NEW_PER_RUN {
                        break;
                    }
                    if !have.contains(uidl.as_str()) {
                        let row = self.pop_top(&mut pop, *n, uidl.clone(), &sizes).await?;
                        add.push(cached(&row));
                    }
                }
                self.pop_quit(pop).await?;
                core.update_outside_cache(id, 0, &add, &remove)
                    .await
                    .map_err(store)?;
            }
        }
        Ok(())
    }
}

/// Refreshes every account with a stored password every `interval`.
pub fn start(core: Core, outside: Arc<Outside>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = core.outside_cache_poked() => {}
            }
            let jobs = match core.outside_cache_jobs().await {
                Ok(j) => j,
                Err(_) => continue,
            };
            for (owner, id) in jobs {
                let login = match core.outside_login(owner, id, "").await {
                    Ok(Some(l)) => l,
                    _ => continue,
                };
                if let Err(e) = outside.sync_cache(&core, id, &login).await {
                    tracing::debug!(outside = %login.settings.address, error = %e, "header cache refresh failed");
                    let _ = core
                        .set_outside_status(owner, id, Some(&e.to_string()))
                        .await;
                }
            }
        }
    })
}
