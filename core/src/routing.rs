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
use crate::directory::AccountRef;
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

impl Core {
    pub async fn route(&self, rcpt: &str) -> CoreResult<Route> {
        let addr = match Address::parse(rcpt) {
            Ok(a) => a,
            Err(AddressError::RelaySyntax) => return Ok(Route::Rejected(Rejection::RelaySyntax)),
            Err(e) => return Ok(Route::Rejected(Rejection::Malformed(e.to_string()))),
        };
        let Some(domain) = self.domain(addr.domain()).await? else {
            return Ok(Route::Remote(addr));
        };
        if let Some(r) = self.route_exact(&addr).await? {
            return Ok(r);
        }
        if let Some(base) = addr.base_local()
            && let Ok(base) = Address::from_parts(base, addr.domain())
            && let Some(r) = self.route_exact(&base).await?
        {
            return Ok(r);
        }
        if let Some(lp) = domain.catchall {
            let target = format!("{lp}@{}", domain.name);
            if let Some(a) = self.account(&target).await?
                && !a.disabled
            {
                return Ok(Route::Catchall {
                    address: addr.to_string(),
                    account: AccountRef {
                        id: a.id,
                        address: a.address,
                        role: a.role,
                    },
                });
            }
        }
        if let Some(text) = domain.catchall_reject {
            return Ok(Route::Rejected(Rejection::Policy(text)));
        }
        Ok(Route::Rejected(Rejection::NoSuchUser))
    }

    async fn route_exact(&self, addr: &Address) -> CoreResult<Option<Route>> {
        let s = addr.to_string();
        if let Some(a) = self.account(&s).await? {
            if a.disabled {
                return Ok(Some(Route::Rejected(Rejection::Disabled)));
            }
            return Ok(Some(Route::Account(AccountRef {
                id: a.id,
                address: a.address,
                role: a.role,
            })));
        }
        if self.alias_targets(&s).await?.is_empty() {
            return Ok(None);
        }
        let mut accounts = Vec::new();
        let mut forwards = Vec::new();
        let mut seen = BTreeSet::new();
        self.expand_alias(&s, 0, &mut seen, &mut accounts, &mut forwards)
            .await?;
        if accounts.is_empty() && forwards.is_empty() {
            return Ok(Some(Route::Rejected(Rejection::NoSuchUser)));
        }
        Ok(Some(Route::Alias {
            address: s,
            accounts,
            forwards,
        }))
    }

    async fn expand_alias(
        &self,
        address: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        accounts: &mut Vec<AccountRef>,
        forwards: &mut Vec<Address>,
    ) -> CoreResult<()> {
        if depth >= MAX_ALIAS_DEPTH || !seen.insert(address.to_owned()) {
            return Ok(());
        }
        for t in self.alias_targets(address).await? {
            let Ok(target) = Address::parse(&t) else {
                continue;
            };
            if self.domain(target.domain()).await?.is_none() {
                if !forwards.contains(&target) {
                    forwards.push(target);
                }
                continue;
            }
            if let Some(a) = self.account(&t).await? {
                if !a.disabled && !accounts.iter().any(|x| x.id == a.id) {
                    accounts.push(AccountRef {
                        id: a.id,
                        address: a.address,
                        role: a.role,
                    });
                }
                continue;
            }
            Box::pin(self.expand_alias(&t, depth + 1, seen, accounts, forwards)).await?;
        }
        Ok(())
    }
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
