//! Connection limits, shared by the mail protocols: in total, per client IP and per authenticated
//! account. Each refusal names the limit, so a sender sees why
//! (DESIGN.md rule 4) instead of a bare "too many connections".

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mailcore::AccountId;

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One pool of connections (a listener or a group of them), with the
/// per-account counts shared between sibling pools.
pub struct Limits {
    pub total: usize,
    pub per_ip: usize,
    pub per_account: usize,
    counts: Mutex<Counts>,
    accounts: Arc<Mutex<HashMap<i32, usize>>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(usize),
}

impl Refused {
    /// Why, in words; each protocol wraps it in its own reply syntax.
    pub fn reason(&self) -> String {
        match self {
            Refused::Total(n) => {
                format!("Server busy: too many connections in total (limit {n}), try again later")
            }
            Refused::PerIp(n) => {
                format!("Too many connections from your address (limit {n}), try again later")
            }
        }
    }
}

/// Held for the life of a connection; gives the slot back on drop.
pub struct ConnGuard {
    limits: Arc<Limits>,
    ip: IpAddr,
}

pub struct AccountGuard {
    limits: Arc<Limits>,
    account: i32,
    /// The session's row in the cluster's count (PostgreSQL).
    _cluster: Option<mailcore::cluster::SessionLease>,
}

impl Limits {
    pub fn new(total: usize, per_ip: usize, per_account: usize) -> Arc<Limits> {
        Arc::new(Limits {
            total,
            per_ip,
            per_account,
            counts: Mutex::new(Counts::default()),
            accounts: Arc::default(),
        })
    }

    /// Another pool with its own totals that counts accounts together with
    /// this one (SMTP's MX and submission pools).
    pub fn sibling(self: &Arc<Self>, total: usize, per_ip: usize) -> Arc<Limits> {
        Arc::new(Limits {
            total,
            per_ip,
            per_account: self.per_account,
            counts: Mutex::new(Counts::default()),
            accounts: self.accounts.clone(),
        })
    }

    /// True when the pool is at 80% or more of its total.
    pub fn busy(&self) -> bool {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total.saturating_mul(5) >= self.total.saturating_mul(4)
    }

    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.total {
            return Err(Refused::Total(self.total));
        }
        let n = c.by_ip.entry(ip).or_default();
        if *n >= self.per_ip {
            return Err(Refused::PerIp(self.per_ip));
        }
        *n += 1;
        c.total += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// A slot for an authenticated account, or `None` at its limit. Counting
    /// per account rather than per IP on submission keeps an office behind
    /// one NAT from locking itself out.
    pub fn account(self: &Arc<Self>, account: AccountId) -> Option<AccountGuard> {
        self.slot(account.get())
    }

    /// [`Limits::account`] by the account's number (the tests have no
    /// core to make account ids).
    fn slot(self: &Arc<Self>, account: i32) -> Option<AccountGuard> {
        let mut c = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(account).or_default();
        if *n >= self.per_account {
            return None;
        }
        *n += 1;
        Some(AccountGuard {
            limits: self.clone(),
            account,
            _cluster: None,
        })
    }

    /// [`Limits::account`] counted over every node of the cluster: on
    /// PostgreSQL each logged-in session also holds a row, so N nodes
    /// together keep the account under `per_account` for `protocol`.
    pub async fn account_in_cluster(
        self: &Arc<Self>,
        core: &mailcore::Core,
        account: AccountId,
        protocol: &str,
    ) -> Option<AccountGuard> {
        use mailcore::cluster::ClusterSlot;
        let mut guard = self.account(account)?;
        match core
            .take_session_slot(account, protocol, self.per_account)
            .await
        {
            ClusterSlot::NotShared => {}
            ClusterSlot::Taken(lease) => guard._cluster = Some(lease),
            ClusterSlot::Full => return None,
        }
        Some(guard)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

impl Drop for AccountGuard {
    fn drop(&mut self) {
        let mut c = self
            .limits
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_and_release() {
        let l = Limits::new(3, 2, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = l.connect(a).unwrap();
        let _g2 = l.connect(a).unwrap();
        assert_eq!(l.connect(a).err(), Some(Refused::PerIp(2)));
        let _g3 = l.connect(b).unwrap();
        assert_eq!(l.connect(b).err(), Some(Refused::Total(3)));
        drop(g1);
        assert!(l.connect(a).is_ok());
        let acc = l.slot(7).unwrap();
        assert!(l.slot(7).is_none());
        drop(acc);
        assert!(l.slot(7).is_some());
    }

    #[test]
    fn sibling_pools_count_apart_but_share_accounts() {
        let mx = Limits::new(2, 2, 1);
        let sub = mx.sibling(5, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _m1 = mx.connect(a).unwrap();
        assert!(!mx.busy());
        let _m2 = mx.connect(a).unwrap();
        assert!(mx.busy());
        assert_eq!(mx.connect(a).err(), Some(Refused::Total(2)));
        // The MX pool is full; submission still admits.
        let _s = sub.connect(a).unwrap();
        assert!(!sub.busy());
        let acc = mx.slot(9).unwrap();
        assert!(sub.slot(9).is_none(), "one person, one account limit");
        drop(acc);
        assert!(sub.slot(9).is_some());
    }
}
