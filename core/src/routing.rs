//! Where a recipient address goes: a local account, an alias (which may fan
//! out to several accounts and outside addresses), a domain's catchall, a
//! remote domain, or nowhere, with the reason.
//!
//! Order of lookup for a local domain, first match wins:
//! 1. an account with exactly this address;
//! 2. an alias with exactly this address;
//! 3. the same two for the address without its `+tag` (subaddressing,
//!    RFC 5233 style, as Postfix's `recipient_delimiter = +`);
//! 4. the domain's catchall account;
//! 5. otherwise `550 5.1.1`.
//!
//! Catchall applies only to local domains: a remote address is `Remote`,
//! and whether it may be relayed is the caller's decision (authenticated
//! submission only).

use std::collections::BTreeSet;

use crate::Core;
use crate::address::{Address, AddressError};
use crate::directory::{AccountRef, Domain};
use crate::directory_cache::DirectorySnapshot;
use crate::error::CoreResult;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Account(AccountRef),
    Alias {
        address: String,
        accounts: Vec<AccountRef>,
        forwards: Vec<Address>,
    },
    Catchall {
        address: String,
        account: AccountRef,
    },
    Remote(Address),
    Rejected(Rejection),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    Malformed(String),
    /// `%`, `!`, quoted `@` or a source route: refused as a relay attempt.
    RelaySyntax,
    NoSuchUser,
    Disabled,
    /// The domain's catchall is set to reject, with this reply text.
    Policy(String),
}

impl Rejection {
    /// The human half of the SMTP reply.
    pub fn reason(&self) -> String {
        match self {
            Rejection::Malformed(m) => format!("malformed address: {m}"),
            Rejection::RelaySyntax => "relay syntax is not accepted".into(),
            Rejection::NoSuchUser => "no such user here".into(),
            Rejection::Disabled => "mailbox disabled".into(),
            Rejection::Policy(text) => text.clone(),
        }
    }
}

impl Route {
    /// The local accounts that receive a copy, in order, without repeats.
    pub fn local_accounts(&self) -> Vec<&AccountRef> {
        match self {
            Route::Account(a) | Route::Catchall { account: a, .. } => vec![a],
            Route::Alias { accounts, .. } => accounts.iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// Aliases may point at aliases; this bounds the chain and breaks loops.
const MAX_ALIAS_DEPTH: usize = 8;

/// What routing asks of the directory: the database normally, the node's
/// copy of it while the database is down (see `directory_cache`).
#[async_trait::async_trait]
pub(crate) trait Lookup: Sync {
    async fn domain(&self, name: &str) -> CoreResult<Option<Domain>>;
    async fn account(&self, address: &str) -> CoreResult<Option<(AccountRef, bool)>>;
    async fn alias_targets(&self, address: &str) -> CoreResult<Vec<String>>;
}

#[async_trait::async_trait]
impl Lookup for Core {
    async fn domain(&self, name: &str) -> CoreResult<Option<Domain>> {
        Core::domain(self, name).await
    }
    async fn account(&self, address: &str) -> CoreResult<Option<(AccountRef, bool)>> {
        Ok(Core::account(self, address).await?.map(|a| {
            (
                AccountRef {
                    id: a.id,
                    address: a.address,
                    role: a.role,
                },
                a.disabled,
            )
        }))
    }
    async fn alias_targets(&self, address: &str) -> CoreResult<Vec<String>> {
        Core::alias_targets(self, address).await
    }
}

#[async_trait::async_trait]
impl Lookup for DirectorySnapshot {
    async fn domain(&self, name: &str) -> CoreResult<Option<Domain>> {
        Ok(DirectorySnapshot::domain(self, name))
    }
    async fn account(&self, address: &str) -> CoreResult<Option<(AccountRef, bool)>> {
        Ok(
            DirectorySnapshot::account(self, address).map(|(id, role, disabled)| {
                (
                    AccountRef {
                        id,
                        address: address.to_owned(),
                        role,
                    },
                    disabled,
                )
            }),
        )
    }
    async fn alias_targets(&self, address: &str) -> CoreResult<Vec<String>> {
        Ok(DirectorySnapshot::alias_targets(self, address))
    }
}

impl Core {
    /// Routes a recipient through the database; while the database is
    /// down, through the node's routing copy, which may only say yes: an
    /// address it does not route to a mailbox is a temporary failure (the
    /// copy may be stale), never a `550`.
    pub async fn route(&self, rcpt: &str) -> CoreResult<Route> {
        if let Some(r) = self.srs_route(rcpt).await? {
            return Ok(r);
        }
        // A current copy answers yes by itself: no query on the acceptance
        // path for the common case (see directory_cache for the terms).
        if !self.store_recently_down()
            && let Some(copy) = self.current_directory_copy()
        {
            let r = route_via(&*copy, rcpt).await?;
            if matches!(
                r,
                Route::Account(_) | Route::Alias { .. } | Route::Catchall { .. }
            ) {
                metrics::counter!("tern_routing_from_copy_total", "store" => "up").increment(1);
                return Ok(r);
            }
        }
        let first = if self.store_recently_down() && self.directory_copy().is_some() {
            Err(crate::CoreError::Unavailable(
                "the store failed moments ago".into(),
            ))
        } else {
            route_via(self, rcpt).await
        };
        match first {
            Err(e) if e.is_temporary() => {
                self.note_store_down();
                let Some(copy) = self.directory_copy() else {
                    return Err(e);
                };
                match route_via(&*copy, rcpt).await? {
                    r @ (Route::Account(_) | Route::Alias { .. } | Route::Catchall { .. }) => {
                        metrics::counter!("tern_routing_from_copy_total", "store" => "down")
                            .increment(1);
                        tracing::info!(rcpt, "routed from the node's directory copy (store down)");
                        Ok(r)
                    }
                    // Syntax does not go stale.
                    r @ Route::Rejected(Rejection::Malformed(_) | Rejection::RelaySyntax) => Ok(r),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }
}

impl Core {
    /// A bounce (or reply) to an address our forwarding rewrote with SRS
    /// (`rules::srs`) goes back to the original sender, as an alias to an
    /// outside address does; an SRS address that does not check (forged,
    /// too old) routes as any other local part would: to nobody.
    async fn srs_route(&self, rcpt: &str) -> CoreResult<Option<Route>> {
        let Ok(addr) = Address::parse(rcpt) else {
            return Ok(None);
        };
        if !addr
            .local()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("SRS0="))
        {
            return Ok(None);
        }
        let Ok(key) = self.outside_key() else {
            return Ok(None);
        };
        let Some(orig) = crate::rules::srs::reverse(key.srs_key(), addr.local(), self.now()) else {
            return Ok(None);
        };
        let Ok(orig) = Address::parse(&orig) else {
            return Ok(None);
        };
        if Lookup::domain(self, addr.domain()).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(Route::Alias {
            address: addr.to_string(),
            accounts: Vec::new(),
            forwards: vec![orig],
        }))
    }
}

async fn route_via<L: Lookup>(dir: &L, rcpt: &str) -> CoreResult<Route> {
    let addr = match Address::parse(rcpt) {
        Ok(a) => a,
        Err(AddressError::RelaySyntax) => return Ok(Route::Rejected(Rejection::RelaySyntax)),
        Err(e) => return Ok(Route::Rejected(Rejection::Malformed(e.to_string()))),
    };
    let Some(domain) = dir.domain(addr.domain()).await? else {
        return Ok(Route::Remote(addr));
    };
    if let Some(r) = route_exact(dir, &addr).await? {
        return Ok(r);
    }
    if let Some(base) = addr.base_local()
        && let Ok(base) = Address::from_parts(base, addr.domain())
        && let Some(r) = route_exact(dir, &base).await?
    {
        return Ok(r);
    }
    if let Some(lp) = domain.catchall {
        let target = format!("{lp}@{}", domain.name);
        if let Some((a, false)) = dir.account(&target).await? {
            return Ok(Route::Catchall {
                address: addr.to_string(),
                account: a,
            });
        }
    }
    if let Some(text) = domain.catchall_reject {
        return Ok(Route::Rejected(Rejection::Policy(text)));
    }
    Ok(Route::Rejected(Rejection::NoSuchUser))
}

async fn route_exact<L: Lookup>(dir: &L, addr: &Address) -> CoreResult<Option<Route>> {
    let s = addr.to_string();
    if let Some((a, disabled)) = dir.account(&s).await? {
        if disabled {
            return Ok(Some(Route::Rejected(Rejection::Disabled)));
        }
        return Ok(Some(Route::Account(a)));
    }
    if dir.alias_targets(&s).await?.is_empty() {
        return Ok(None);
    }
    let mut accounts = Vec::new();
    let mut forwards = Vec::new();
    let mut seen = BTreeSet::new();
    expand_alias(dir, &s, 0, &mut seen, &mut accounts, &mut forwards).await?;
    if accounts.is_empty() && forwards.is_empty() {
        return Ok(Some(Route::Rejected(Rejection::NoSuchUser)));
    }
    Ok(Some(Route::Alias {
        address: s,
        accounts,
        forwards,
    }))
}

async fn expand_alias<L: Lookup>(
    dir: &L,
    address: &str,
    depth: usize,
    seen: &mut BTreeSet<String>,
    accounts: &mut Vec<AccountRef>,
    forwards: &mut Vec<Address>,
) -> CoreResult<()> {
    if depth >= MAX_ALIAS_DEPTH || !seen.insert(address.to_owned()) {
        return Ok(());
    }
    for t in dir.alias_targets(address).await? {
        let Ok(target) = Address::parse(&t) else {
            continue;
        };
        if dir.domain(target.domain()).await?.is_none() {
            if !forwards.contains(&target) {
                forwards.push(target);
            }
            continue;
        }
        if let Some((a, disabled)) = dir.account(&t).await? {
            if !disabled && !accounts.iter().any(|x| x.id == a.id) {
                accounts.push(a);
            }
            continue;
        }
        Box::pin(expand_alias(dir, &t, depth + 1, seen, accounts, forwards)).await?;
    }
    Ok(())
}

impl Core {
    /// Whether an account may use `addr` as its envelope sender or `From:`:
    /// its own address (with or without a `+tag`), or an alias that delivers
    /// to it. Submission enforces this so one user cannot pose as another.
    pub async fn may_send_as(&self, account: &AccountRef, addr: &str) -> CoreResult<bool> {
        let Ok(a) = Address::parse(addr) else {
            return Ok(false);
        };
        let own = |x: &Address| x.to_string() == account.address;
        if own(&a) {
            return Ok(true);
        }
        if let Some(base) = a.base_local()
            && let Ok(b) = Address::from_parts(base, a.domain())
            && own(&b)
        {
            return Ok(true);
        }
        match self.route(&a.to_string()).await? {
            Route::Alias { accounts, .. } => Ok(accounts.iter().any(|x| x.id == account.id)),
            _ => Ok(false),
        }
    }
}
