//! The directory: domains, accounts and aliases, and login.
//!
//! Every write here is one transaction, so a CLI or admin action that fails
//! halfway leaves nothing behind (an account is created together with its
//! six standard mailboxes, or not at all).

use crate::db::InsertCommitted;
use crate::ids::{AccountId, BlobId, ModSeq, Uid};
use std::net::IpAddr;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::Core;
use crate::address::{Address, parse_domain, parse_local};
use crate::auth::AuthError;
use crate::entities::{account, alias, domain, mailbox, message};
use crate::error::{CoreError, CoreResult};
use crate::mailboxes::SPECIAL_MAILBOXES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    User,
    DomainAdmin,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::DomainAdmin => "domain_admin",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> CoreResult<Role> {
        match s {
            "user" => Ok(Role::User),
            "domain_admin" => Ok(Role::DomainAdmin),
            "admin" => Ok(Role::Admin),
            other => Err(CoreError::invalid(format!(
                "unknown role {other:?} (expected user, domain_admin or admin)"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: i32,
    pub name: String,
    /// Local part of the account that receives mail for unknown addresses.
    pub catchall: Option<String>,
    /// With no catchall account: the text of the 550 for unknown addresses.
    pub catchall_reject: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub address: String,
    pub domain: String,
    pub role: Role,
    /// 0 means no quota.
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub disabled: bool,
}

impl Account {
    /// The account as a session refers to it.
    pub fn as_ref(&self) -> AccountRef {
        AccountRef {
            id: self.id,
            address: self.address.clone(),
            role: self.role,
        }
    }
}

/// Who is acting: what a session keeps after login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRef {
    pub id: AccountId,
    pub address: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    pub targets: Vec<String>,
}

pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 1024;

fn check_password(pw: &str) -> CoreResult<()> {
    if pw.chars().count() < MIN_PASSWORD_LEN {
        return Err(CoreError::invalid(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(CoreError::invalid("password is too long"));
    }
    Ok(())
}

fn parse_address(s: &str) -> CoreResult<Address> {
    Address::parse(s).map_err(|e| CoreError::invalid(format!("{s:?}: {e}")))
}

/// A new local account or alias: a plain dot-string, so every client can
/// write it without quotes.
fn parse_new_local_address(s: &str) -> CoreResult<Address> {
    let a = parse_address(s)?;
    if a.needs_quotes() {
        return Err(CoreError::invalid(format!(
            "{s:?}: a local address must be letters, digits and . _ - + (no quoted local part)"
        )));
    }
    Ok(a)
}

impl From<domain::Model> for Domain {
    fn from(m: domain::Model) -> Self {
        Domain {
            id: m.id,
            name: m.name,
            catchall: m.catchall_local_part,
            catchall_reject: m.catchall_reject,
        }
    }
}

fn account_from(m: account::Model, domain: &str) -> Account {
    Account {
        id: m.id,
        address: m.address,
        domain: domain.to_owned(),
        role: Role::parse(&m.role).unwrap_or(Role::User),
        quota_bytes: m.quota_bytes,
        used_bytes: m.used_bytes,
        disabled: m.disabled,
    }
}

impl Core {
    // ---- domains ----------------------------------------------------------

    pub async fn add_domain(&self, name: &str) -> CoreResult<Domain> {
        let name = parse_domain(name).map_err(|e| CoreError::invalid(e.to_string()))?;
        if self.domain(&name).await?.is_some() {
            return Err(CoreError::Conflict(format!("domain {name}")));
        }
        let m = domain::ActiveModel {
            name: Set(name),
            catchall_local_part: Set(None),
            created_at: Set(self.now()),
            ..Default::default()
        }
        .insert_committed(self.wdb())
        .await?;
        crate::directory_cache::bump(self, self.wdb()).await;
        // Its DKIM keys, where this process has the secrets key to seal
        // them (a server or the CLI); `dkim_ensure_keys` at start covers a
        // domain made without.
        if self.has_secrets_key() {
            self.dkim_rotate(&m.name).await?;
        }
        Ok(m.into())
    }

    pub async fn domain(&self, name: &str) -> CoreResult<Option<Domain>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        Ok(domain::Entity::find()
            .filter(domain::Column::Name.eq(name))
            .one(self.db())
            .await?
            .map(Domain::from))
    }

    async fn domain_required(&self, name: &str) -> CoreResult<Domain> {
        self.domain(name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("domain {name}")))
    }

    pub async fn list_domains(&self) -> CoreResult<Vec<Domain>> {
        Ok(domain::Entity::find()
            .order_by_asc(domain::Column::Name)
            .all(self.db())
            .await?
            .into_iter()
            .map(Domain::from)
            .collect())
    }

    /// Removes a domain with its accounts, their mail and its aliases.
    pub async fn remove_domain(&self, name: &str) -> CoreResult<()> {
        let d = self.domain_required(name).await?;
        let txn = self.write_txn().await?;
        let accounts = account::Entity::find()
            .filter(account::Column::DomainId.eq(d.id))
            .all(&txn)
            .await?;
        for a in &accounts {
            delete_account_mail(&txn, a.id).await?;
        }
        domain::Entity::delete_by_id(d.id).exec(&txn).await?;
        crate::directory_cache::bump(self, &txn).await;
        txn.commit().await?;
        Ok(())
    }

    /// Points a domain's catchall at one of its accounts, or clears it.
    pub async fn set_catchall(
        &self,
        domain_name: &str,
        local_part: Option<&str>,
    ) -> CoreResult<()> {
        let d = self.domain_required(domain_name).await?;
        let value = match local_part {
            None => None,
            Some(lp) => {
                let lp = parse_local(lp).map_err(|e| CoreError::invalid(e.to_string()))?;
                let addr = format!("{lp}@{}", d.name);
                if self.account(&addr).await?.is_none() {
                    return Err(CoreError::NotFound(format!(
                        "account {addr} (a catchall must name an account of the domain)"
                    )));
                }
                Some(lp)
            }
        };
        crate::directory_cache::note_local_change(self);
        domain::Entity::update_many()
            .col_expr(domain::Column::CatchallLocalPart, Expr::value(value))
            .filter(domain::Column::Id.eq(d.id))
            .exec(self.wdb())
            .await?;
        crate::directory_cache::bump(self, self.wdb()).await;
        Ok(())
    }

    // ---- accounts ---------------------------------------------------------

    /// Creates an account with INBOX, Sent, Drafts, Trash, Junk and Archive.
    pub async fn add_account(
        &self,
        address: &str,
        password: &str,
        role: Role,
    ) -> CoreResult<Account> {
        let addr = parse_new_local_address(address)?;
        check_password(password)?;
        let d = self.domain_required(addr.domain()).await?;
        if self.account(&addr.to_string()).await?.is_some() {
            return Err(CoreError::Conflict(format!("account {addr}")));
        }
        if !self.alias_targets(&addr.to_string()).await?.is_empty() {
            return Err(CoreError::Conflict(format!("alias {addr}")));
        }
        let hash = self.hasher().hash(password).await?;
        let now = self.now();
        let txn = self.write_txn().await?;
        let m = account::ActiveModel {
            domain_id: Set(d.id),
            local_part: Set(addr.local().to_owned()),
            address: Set(addr.to_string()),
            password_hash: Set(hash),
            role: Set(role.as_str().to_owned()),
            quota_bytes: Set(0),
            used_bytes: Set(0),
            disabled: Set(false),
            created_at: Set(now),
            login_epoch: Set(0),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        for (i, (name, special)) in SPECIAL_MAILBOXES.iter().enumerate() {
            mailbox::ActiveModel {
                account_id: Set(m.id),
                name: Set((*name).to_owned()),
                special_use: Set(special.map(str::to_owned)),
                uidvalidity: Set(crate::mailboxes::uidvalidity_at(now) + i as i64),
                uidnext: Set(Uid(1)),
                highest_modseq: Set(ModSeq(1)),
                subscribed: Set(true),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        crate::directory_cache::bump(self, &txn).await;
        txn.commit().await?;
        Ok(account_from(m, &d.name))
    }

    pub async fn account(&self, address: &str) -> CoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        let Some(m) = account::Entity::find()
            .filter(account::Column::Address.eq(address))
            .one(self.db())
            .await?
        else {
            return Ok(None);
        };
        let d = domain::Entity::find_by_id(m.domain_id)
            .one(self.db())
            .await?
            .map(|d| d.name)
            .unwrap_or_default();
        Ok(Some(account_from(m, &d)))
    }

    pub async fn account_by_id(&self, id: AccountId) -> CoreResult<Option<Account>> {
        let Some(m) = account::Entity::find_by_id(id).one(self.db()).await? else {
            return Ok(None);
        };
        let d = domain::Entity::find_by_id(m.domain_id)
            .one(self.db())
            .await?
            .map(|d| d.name)
            .unwrap_or_default();
        Ok(Some(account_from(m, &d)))
    }

    async fn account_required(&self, address: &str) -> CoreResult<Account> {
        self.account(address)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("account {address}")))
    }

    /// Accounts of one domain, or of all domains.
    pub async fn list_accounts(&self, domain_name: Option<&str>) -> CoreResult<Vec<Account>> {
        let domains = self.list_domains().await?;
        let mut q = account::Entity::find().order_by_asc(account::Column::Address);
        if let Some(n) = domain_name {
            let d = self.domain_required(n).await?;
            q = q.filter(account::Column::DomainId.eq(d.id));
        }
        let rows = q.all(self.db()).await?;
        Ok(rows
            .into_iter()
            .map(|m| {
                let dn = domains
                    .iter()
                    .find(|d| d.id == m.domain_id)
                    .map(|d| d.name.clone())
                    .unwrap_or_default();
                account_from(m, &dn)
            })
            .collect())
    }

    pub async fn set_password(&self, address: &str, password: &str) -> CoreResult<()> {
        check_password(password)?;
        let a = self.account_required(address).await?;
        let hash = self.hasher().hash(password).await?;
        self.update_account(a.id, account::Column::PasswordHash, hash.into())
            .await?;
        // Whoever knew the old password is signed out everywhere.
        self.end_all_sessions(&a.as_ref()).await
    }

    /// The password check of a protocol login, with the account's login
    /// epoch from the same row: a session compares it later with
    /// [`Core::login_epoch`] and ends when they differ.
    pub async fn authenticate_session(
        &self,
        address: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<(AccountRef, i64), AuthError> {
        self.authenticate_row(address, password, client_ip).await
    }

    pub async fn set_role(&self, address: &str, role: Role) -> CoreResult<()> {
        let a = self.account_required(address).await?;
        self.update_account(a.id, account::Column::Role, role.as_str().into())
            .await
    }

    pub async fn set_quota(&self, address: &str, bytes: i64) -> CoreResult<()> {
        if bytes < 0 {
            return Err(CoreError::invalid("quota cannot be negative"));
        }
        let a = self.account_required(address).await?;
        self.update_account(a.id, account::Column::QuotaBytes, bytes.into())
            .await
    }

    pub async fn set_disabled(&self, address: &str, disabled: bool) -> CoreResult<()> {
        let a = self.account_required(address).await?;
        self.update_account(a.id, account::Column::Disabled, disabled.into())
            .await?;
        if disabled {
            self.end_all_sessions(&a.as_ref()).await?;
        }
        Ok(())
    }

    async fn update_account(
        &self,
        id: AccountId,
        col: account::Column,
        value: sea_orm::Value,
    ) -> CoreResult<()> {
        // Routing and the early quota check read these two from the copy.
        let routing = matches!(col, account::Column::Disabled | account::Column::QuotaBytes);
        if routing {
            // Before the change, so the copy stops answering on its own
            // before the change can be seen; the version moves after the
            // commit, so the other nodes reload what was committed.
            crate::directory_cache::note_local_change(self);
        }
        account::Entity::update_many()
            .col_expr(col, Expr::value(value))
            .filter(account::Column::Id.eq(id))
            .exec(self.wdb())
            .await?;
        if routing {
            crate::directory_cache::bump(self, self.wdb()).await;
        }
        Ok(())
    }

    /// Removes an account and all its mail. A domain catchall that named it
    /// is cleared, so mail for unknown addresses is refused rather than lost.
    pub async fn remove_account(&self, address: &str) -> CoreResult<()> {
        let a = self.account_required(address).await?;
        let addr = parse_address(&a.address)?;
        let txn = self.write_txn().await?;
        delete_account_mail(&txn, a.id).await?;
        account::Entity::delete_by_id(a.id).exec(&txn).await?;
        domain::Entity::update_many()
            .col_expr(
                domain::Column::CatchallLocalPart,
                Expr::value(Option::<String>::None),
            )
            .filter(domain::Column::Name.eq(addr.domain()))
            .filter(domain::Column::CatchallLocalPart.eq(addr.local()))
            .exec(&txn)
            .await?;
        crate::directory_cache::bump(self, &txn).await;
        txn.commit().await?;
        Ok(())
    }

    /// Checks a login. Every protocol calls this; it applies the shared
    /// throttle and spends the same hashing time whether or not the account
    /// exists.
    pub async fn authenticate(
        &self,
        address: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<AccountRef, AuthError> {
        self.authenticate_row(address, password, client_ip)
            .await
            .map(|(a, _)| a)
    }

    async fn authenticate_row(
        &self,
        address: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<(AccountRef, i64), AuthError> {
        let key = address.trim().to_ascii_lowercase();
        if let Err(retry_after) = self.throttle().check(&key, client_ip) {
            return Err(AuthError::Throttled { retry_after });
        }
        let shared_failures = self
            .shared_throttle_check(&key, client_ip)
            .await
            .map_err(|retry_after| AuthError::Throttled { retry_after })?;
        let row = account::Entity::find()
            .filter(account::Column::Address.eq(key.clone()))
            .one(self.db())
            .await
            .map_err(CoreError::from)?;
        let (ok, rehash) = self
            .hasher()
            .verify(row.as_ref().map(|r| r.password_hash.as_str()), password)
            .await;
        match row {
            Some(r) if ok && !r.disabled => {
                self.throttle().record_success(&key, client_ip);
                if shared_failures {
                    self.shared_throttle_success(&key, client_ip).await;
                }
                if rehash {
                    // Best effort: a failed upgrade must not fail the login.
                    if let Ok(h) = self.hasher().hash(password).await {
                        let _ = self
                            .update_account(r.id, account::Column::PasswordHash, h.into())
                            .await;
                    }
                }
                Ok((
                    AccountRef {
                        id: r.id,
                        address: r.address,
                        role: Role::parse(&r.role).unwrap_or(Role::User),
                    },
                    r.login_epoch,
                ))
            }
            _ => {
                self.throttle().record_failure(&key, client_ip);
                self.shared_throttle_failure(&key, client_ip).await;
                tracing::info!(account = %key, ip = %client_ip, "login failed");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    // ---- aliases ----------------------------------------------------------

    /// Adds targets to an alias on a local domain. Targets may be local
    /// addresses or outside ones (forwarding).
    pub async fn add_alias(&self, address: &str, targets: &[String]) -> CoreResult<Alias> {
        let addr = parse_new_local_address(address)?;
        let d = self.domain_required(addr.domain()).await?;
        if targets.is_empty() {
            return Err(CoreError::invalid("an alias needs at least one target"));
        }
        if self.account(&addr.to_string()).await?.is_some() {
            return Err(CoreError::Conflict(format!("account {addr}")));
        }
        let targets: Vec<Address> = targets
            .iter()
            .map(|t| parse_address(t))
            .collect::<CoreResult<_>>()?;
        if targets.contains(&addr) {
            return Err(CoreError::invalid("an alias cannot point at itself"));
        }
        let existing = self.alias_targets(&addr.to_string()).await?;
        let txn = self.write_txn().await?;
        for t in &targets {
            if existing.contains(&t.to_string()) {
                continue;
            }
            alias::ActiveModel {
                domain_id: Set(d.id),
                local_part: Set(addr.local().to_owned()),
                address: Set(addr.to_string()),
                target: Set(t.to_string()),
                created_at: Set(self.now()),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        crate::directory_cache::bump(self, &txn).await;
        txn.commit().await?;
        Ok(Alias {
            targets: self.alias_targets(&addr.to_string()).await?,
            address: addr.to_string(),
        })
    }

    pub async fn alias_targets(&self, address: &str) -> CoreResult<Vec<String>> {
        Ok(alias::Entity::find()
            .filter(alias::Column::Address.eq(address.to_ascii_lowercase()))
            .order_by_asc(alias::Column::Target)
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| m.target)
            .collect())
    }

    pub async fn list_aliases(&self, domain_name: Option<&str>) -> CoreResult<Vec<Alias>> {
        let mut q = alias::Entity::find()
            .order_by_asc(alias::Column::Address)
            .order_by_asc(alias::Column::Target);
        if let Some(n) = domain_name {
            let d = self.domain_required(n).await?;
            q = q.filter(alias::Column::DomainId.eq(d.id));
        }
        let mut out: Vec<Alias> = Vec::new();
        for m in q.all(self.db()).await? {
            match out.last_mut() {
                Some(a) if a.address == m.address => a.targets.push(m.target),
                _ => out.push(Alias {
                    address: m.address,
                    targets: vec![m.target],
                }),
            }
        }
        Ok(out)
    }

    /// Removes one target of an alias, or the whole alias.
    pub async fn remove_alias(&self, address: &str, target: Option<&str>) -> CoreResult<()> {
        let address = address.trim().to_ascii_lowercase();
        let mut q = alias::Entity::delete_many().filter(alias::Column::Address.eq(address.clone()));
        if let Some(t) = target {
            q = q.filter(alias::Column::Target.eq(t.trim().to_ascii_lowercase()));
        }
        crate::directory_cache::note_local_change(self);
        let res = q.exec(self.wdb()).await?;
        if res.rows_affected == 0 {
            return Err(CoreError::NotFound(format!("alias {address}")));
        }
        crate::directory_cache::bump(self, self.wdb()).await;
        Ok(())
    }
}

/// Deletes an account's messages and mailboxes, releasing blob references.
async fn delete_account_mail<C: ConnectionTrait>(txn: &C, account_id: AccountId) -> CoreResult<()> {
    crate::entities::lone_subscription::Entity::delete_many()
        .filter(crate::entities::lone_subscription::Column::AccountId.eq(account_id))
        .exec(txn)
        .await?;
    // Its outside accounts go too, sealed passwords with them.
    let outside: Vec<i32> = crate::entities::outside_account::Entity::find()
        .filter(crate::entities::outside_account::Column::AccountId.eq(account_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|o| o.id)
        .collect();
    crate::entities::outside_fetched::Entity::delete_many()
        .filter(crate::entities::outside_fetched::Column::OutsideId.is_in(outside.clone()))
        .exec(txn)
        .await?;
    crate::entities::outside_header::Entity::delete_many()
        .filter(crate::entities::outside_header::Column::OutsideId.is_in(outside))
        .exec(txn)
        .await?;
    crate::entities::outside_account::Entity::delete_many()
        .filter(crate::entities::outside_account::Column::AccountId.eq(account_id))
        .exec(txn)
        .await?;
    let boxes = crate::mailboxes::mailbox_ids(txn, account_id).await?;
    if boxes.is_empty() {
        return Ok(());
    }
    let blob_ids: Vec<BlobId> = message::Entity::find()
        .filter(message::Column::MailboxId.is_in(boxes.clone()))
        .all(txn)
        .await?
        .into_iter()
        .map(|m| m.blob_id)
        .collect();
    message::Entity::delete_many()
        .filter(message::Column::MailboxId.is_in(boxes.clone()))
        .exec(txn)
        .await?;
    crate::blobs::release_blobs(txn, &blob_ids).await?;
    mailbox::Entity::delete_many()
        .filter(mailbox::Column::AccountId.eq(account_id))
        .exec(txn)
        .await?;
    Ok(())
}
