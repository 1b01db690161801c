//! The fetcher: on a schedule, each outside account with fetching on has
//! its new mail brought into its owner's INBOX — POP3 by UIDL (leaving
//! the messages or deleting them after), IMAP by UID within UIDVALIDITY
//! (always left on the server). Storage is exactly-once
//! (`Core::store_fetched`); this side only decides what is new.

use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use mailcore::outside::{OutsideError, Protocol};
use mailcore::outside_fetch::{FetchJob, FetchMode};

use super::Outside;

/// At most this many messages per account and run: a big maildrop comes
/// in over several runs, and other accounts get their turn between.
const MAX_PER_RUN: usize = 500;

/// The trace lines a fetched message gets in front (RFC 5321 §4.4 style,
/// as fetchmail writes them), naming where it came from.
fn trace(job: &FetchJob, hostname: &str, via: &str, key: &str, now: i64) -> String {
    format!(
        "Received: from {} by {hostname} with {via} id {key}\r\n\tfor <{}>; {}\r\nX-Tern-Fetched-From: {}\r\n",
        job.login.settings.incoming.host,
        job.owner_address,
        mailcore::submission::rfc5322_date(now),
        job.login.settings.address,
    )
}

impl Outside {
    /// One run for one account: how many messages it stored, and the
    /// IMAP cursor it reached.
    pub async fn fetch_one(
        &self,
        core: &Core,
        job: &FetchJob,
        hostname: &str,
    ) -> Result<(u64, Option<String>), OutsideError> {
        match job.login.settings.protocol {
            Protocol::Pop3 => self
                .fetch_pop3(core, job, hostname)
                .await
                .map(|n| (n, None)),
            Protocol::Imap => self.fetch_imap(core, job, hostname).await,
        }
    }

    async fn fetch_pop3(
        &self,
        core: &Core,
        job: &FetchJob,
        hostname: &str,
    ) -> Result<u64, OutsideError> {
        let mut pop = self.pop_session(&job.login).await?;
        let uidls = self.pop_uidls(&mut pop).await?;
        let keys: Vec<String> = uidls.iter().map(|(_, u)| format!("pop3:{u}")).collect();
        let done = core
            .outside_fetched_keys(job.id, &keys)
            .await
            .map_err(|e| OutsideError::Unreachable(format!("the local store: {e}")))?;
        let delete = job.state.mode == FetchMode::Delete;
        let mut stored = 0u64;
        let mut handled = 0usize;
        for ((n, uidl), key) in uidls.iter().zip(&keys) {
            if !done.contains(key) {
                if handled >= MAX_PER_RUN {
                    break;
                }
                handled += 1;
                let raw = self.pop_retr(&mut pop, *n).await?;
                let mut wire = trace(job, hostname, "POP3", uidl, core.clock().now()).into_bytes();
                wire.extend_from_slice(&raw);
                if core
                    .store_fetched(job, key, &wire)
                    .await
                    .map_err(|e| OutsideError::Unreachable(format!("the local store: {e}")))?
                {
                    stored += 1;
                }
            }
            // Stored now or in an earlier run that ended before its QUIT:
            // either way it is safe here, so it may go from the server.
            if delete {
                self.pop_dele(&mut pop, *n).await?;
            }
        }
        // DELE takes effect only at QUIT (RFC 1939 §6).
        self.pop_quit(pop).await?;
        Ok(stored)
    }

    async fn fetch_imap(
        &self,
        core: &Core,
        job: &FetchJob,
        hostname: &str,
    ) -> Result<(u64, Option<String>), OutsideError> {
        let (mut s, budget) = self.imap_session(&job.login).await?;
        let mbox = self.open_inbox(&mut s, &budget).await?;
        let validity = mbox.uid_validity.unwrap_or(0);
        // "validity:last uid"; another UIDVALIDITY means the UIDs name
        // other messages now (RFC 9051 §2.3.1.1): start over (the keys
        // carry the validity, so nothing is mistaken for fetched).
        let last = match job.state.cursor.split_once(':') {
            Some((v, u)) if v.parse::<u32>().ok() == Some(validity) => {
                u.parse::<u32>().unwrap_or(0)
            }
            _ => 0,
        };
        let mut uids: Vec<u32> = self
            .imap_uids_after(&mut s, &budget, last)
            .await?
            .into_iter()
            .filter(|u| *u > last)
            .collect();
        uids.sort_unstable();
        uids.truncate(MAX_PER_RUN);
        let mut stored = 0u64;
        let mut cursor = format!("{validity}:{last}");
        for uid in uids {
            let key = format!("imap:{validity}:{uid}");
            let raw = self.imap_peek(&mut s, &budget, uid).await?;
            if let Some(raw) = raw {
                let mut wire = trace(job, hostname, "IMAP", &key, core.clock().now()).into_bytes();
                wire.extend_from_slice(&raw);
                if core
                    .store_fetched(job, &key, &wire)
                    .await
                    .map_err(|e| OutsideError::Unreachable(format!("the local store: {e}")))?
                {
                    stored += 1;
                }
            }
            cursor = format!("{validity}:{uid}");
            let _ = core.save_outside_cursor(job.id, &cursor).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
        Ok((stored, Some(cursor)))
    }
}

/// Runs every due account every `interval` (checked each few seconds),
/// one account at a time.
pub fn start(
    core: Core,
    outside: Arc<Outside>,
    hostname: String,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let tick = interval
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(200));
    let every = interval.as_secs().max(1) as i64;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            let now = core.clock().now();
            let jobs = match core.outside_fetch_due(now).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::debug!(error = %e, "outside fetch: store unavailable");
                    continue;
                }
            };
            for job in jobs {
                let result = outside.fetch_one(&core, &job, &hostname).await;
                match &result {
                    Ok((n, _)) if *n > 0 => {
                        tracing::info!(outside = %job.login.settings.address, owner = %job.owner_address, fetched = n, "outside fetch")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(outside = %job.login.settings.address, error = %e, "outside fetch failed")
                    }
                }
                let _ = core
                    .finish_outside_fetch(
                        job.id,
                        result.map_err(|e| e.to_string()),
                        core.clock().now(),
                        every,
                    )
                    .await;
            }
        }
    })
}
