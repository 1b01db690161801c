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

/// The local database failed under a refresh (said as the account's
/// status, like the provider's own failures).
fn store(e: mailcore::CoreError) -> OutsideError {
    OutsideError::Unreachable(format!("the local store: {e}"))
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
        match login.settings.protocol {
            Protocol::Imap => {
                let (mut s, budget) = self.imap_session(login).await?;
                let mbox = self.open_inbox(&mut s, &budget).await?;
                let validity = i64::from(mbox.uid_validity.unwrap_or(0));
                self.sync_imap_inbox(core, id, &mut s, &budget, validity, &[])
                    .await?;
                let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
            }
            Protocol::Pop3 => {
                let known = core.outside_cached_keys(id).await.map_err(store)?;
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

    /// Brings the cache of an INBOX open (EXAMINE) on `s` in step: new
    /// UIDs fetched, gone ones dropped, flags of the newest refreshed,
    /// and of `touched` too (sequence numbers the server reported a FETCH
    /// for while watched: a flag another client set on an old message).
    pub(super) async fn sync_imap_inbox(
        &self,
        core: &Core,
        id: OutsideAccountId,
        s: &mut super::imap::Session,
        budget: &super::net::Budget,
        validity: i64,
        touched: &[u32],
    ) -> Result<(), OutsideError> {
        let known = core.outside_cached_keys(id).await.map_err(store)?;
        // Ascending, as sequence numbers count them.
        let mut ascending = self.imap_uids_after(s, budget, 0).await?;
        ascending.sort_unstable();
        ascending.dedup();
        let have: HashSet<&str> = known
            .iter()
            .filter(|(_, v)| *v == validity)
            .map(|(k, _)| k.as_str())
            .collect();
        let present: HashSet<String> = ascending.iter().map(u32::to_string).collect();
        let remove: Vec<String> = have
            .iter()
            .filter(|k| !present.contains(**k))
            .map(|k| k.to_string())
            .collect();
        // New ones, newest first; the newest window for flags; the touched.
        let mut want: Vec<u32> = ascending
            .iter()
            .rev()
            .copied()
            .filter(|u| !have.contains(u.to_string().as_str()))
            .take(NEW_PER_RUN)
            .collect();
        let window = ascending.iter().rev().take(FLAGS_WINDOW).copied();
        let touched = touched.iter().filter_map(|n| {
            let i = usize::try_from(*n).ok()?.checked_sub(1)?;
            ascending.get(i).copied()
        });
        let mut seen: HashSet<u32> = want.iter().copied().collect();
        for u in window.chain(touched) {
            if seen.insert(u) {
                want.push(u);
            }
        }
        let mut add = Vec::with_capacity(want.len());
        for chunk in want.chunks(CHUNK) {
            let rows = self.summaries(s, budget, join(chunk), true).await?;
            add.extend(rows.iter().map(cached));
        }
        core.update_outside_cache(id, validity, &add, &remove)
            .await
            .map_err(store)
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

/// How often the watcher looks for accounts added or removed.
const WATCH_SCAN: Duration = Duration::from_secs(15);
/// First pause after a watch fails; it doubles up to [`WATCH_MAX_PAUSE`].
const WATCH_PAUSE: Duration = Duration::from_secs(15);
const WATCH_MAX_PAUSE: Duration = Duration::from_secs(15 * 60);
/// An account that cannot be watched (POP3 has no push; a server without
/// IDLE) is asked again after this; the interval refresh covers it.
const NOT_WATCHABLE: Duration = Duration::from_secs(3600);

/// Keeps one IDLE watch (see `watch_inbox`) on the INBOX of each IMAP
/// account with a stored password, at most `max` at once, so changes made
/// by other clients reach the unified inbox within seconds. Accounts
/// removed, or whose password is no longer stored, lose their watch at the
/// next scan. Aborting the returned task ends every watch.
pub fn watch(core: Core, outside: Arc<Outside>, max: usize) -> tokio::task::JoinHandle<()> {
    use std::collections::HashMap;
    use tokio::task::{AbortHandle, JoinSet};
    tokio::spawn(async move {
        let mut set: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<OutsideAccountId, AbortHandle> = HashMap::new();
        let resting: Arc<std::sync::Mutex<HashMap<OutsideAccountId, tokio::time::Instant>>> =
            Arc::default();
        loop {
            while set.try_join_next().is_some() {}
            if let Ok(jobs) = core.outside_cache_jobs().await {
                let live: HashSet<OutsideAccountId> = jobs.iter().map(|(_, id)| *id).collect();
                running.retain(|id, h| {
                    let keep = live.contains(id) && !h.is_finished();
                    if !keep {
                        h.abort();
                    }
                    keep
                });
                let now = tokio::time::Instant::now();
                if let Ok(mut r) = resting.lock() {
                    r.retain(|id, until| live.contains(id) && *until > now);
                }
                for (owner, id) in jobs {
                    if running.len() >= max {
                        break;
                    }
                    let rests = resting.lock().map(|r| r.contains_key(&id)).unwrap_or(true);
                    if running.contains_key(&id) || rests {
                        continue;
                    }
                    let (core, outside, resting) = (core.clone(), outside.clone(), resting.clone());
                    let h = set.spawn(async move {
                        let pause = watch_one(&core, &outside, owner, id).await;
                        if let Ok(mut r) = resting.lock() {
                            r.insert(id, tokio::time::Instant::now() + pause);
                        }
                    });
                    running.insert(id, h);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(WATCH_SCAN) => {}
                _ = core.outside_watch_poked() => {}
            }
        }
    })
}

/// Watches one account until it cannot be watched; returns how long to
/// leave it before trying again.
async fn watch_one(
    core: &Core,
    outside: &Outside,
    owner: mailcore::AccountId,
    id: OutsideAccountId,
) -> Duration {
    let mut pause = WATCH_PAUSE;
    loop {
        let login = match core.outside_login(owner, id, "").await {
            Ok(Some(l)) => l,
            _ => return NOT_WATCHABLE,
        };
        if login.settings.protocol != Protocol::Imap {
            return NOT_WATCHABLE;
        }
        let started = tokio::time::Instant::now();
        let Err(e) = outside.watch_inbox(core, id, &login).await;
        tracing::debug!(outside = %login.settings.address, error = %e, "inbox watch ended");
        if matches!(e, OutsideError::Unsupported(_)) {
            return NOT_WATCHABLE;
        }
        // A watch that ran a while was healthy: start the pauses over.
        if started.elapsed() > WATCH_MAX_PAUSE {
            pause = WATCH_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(WATCH_MAX_PAUSE);
    }
}
