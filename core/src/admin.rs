//! Administration with roles, enforced here and not by the pages: every
//! admin operation takes the [`Actor`] doing it, checks what that actor may
//! touch, does the change, and writes the audit log, so the web pages,
//! their server functions, a forged form and the CLI all meet the same
//! rules.
//!
//! - `admin` manages everything;
//! - `domain_admin` manages the domains assigned to it (its own domain is
//!   assigned when it gets the role; `tern domain grant` adds others);
//! - `user` manages nothing here.
//!
//! The CLI acts as the operator, with full rights, and is audited too.

use crate::db::InsertCommitted;
use crate::ids::AccountId;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::Core;
use crate::address::parse_local;
use crate::directory::{Account, AccountRef, Alias, Domain, Role};
use crate::entities::{account, audit_log, domain, domain_admin, mailbox, message};
use crate::error::{CoreError, CoreResult};

/// Who does an admin action, and from where (for the audit log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `None` is the operator at the shell (the CLI): full rights.
    pub account: Option<AccountRef>,
    pub name: String,
    pub ip: String,
}

impl Actor {
    pub fn operator(name: &str) -> Actor {
        Actor {
            account: None,
            name: format!("cli:{name}"),
            ip: "local".into(),
        }
    }

    pub fn web(account: &AccountRef, ip: &str) -> Actor {
        Actor {
            account: Some(account.clone()),
            name: account.address.clone(),
            ip: ip.to_owned(),
        }
    }

    fn is_admin(&self) -> bool {
        self.account.as_ref().is_none_or(|a| a.role == Role::Admin)
    }
}

/// What happens to mail for an unknown address of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Catchall {
    /// Refused with the standard `550 5.1.1 No such user here`.
    None,
    /// Delivered to this account of the domain (local part).
    Account(String),
    /// Refused with `550 5.1.1` and this text.
    Reject(String),
}

impl Catchall {
    pub fn of(d: &Domain) -> Catchall {
        match (&d.catchall, &d.catchall_reject) {
            (Some(lp), _) => Catchall::Account(lp.clone()),
            (None, Some(t)) => Catchall::Reject(t.clone()),
            (None, None) => Catchall::None,
        }
    }
}

/// A reject text becomes part of an SMTP reply line: one line, printable
/// ASCII, short.
fn reply_text(s: &str) -> CoreResult<String> {
    let t: String = s.trim().chars().filter(|c| !c.is_control()).collect();
    if t.is_empty() {
        return Err(CoreError::invalid("the reject reply needs some text"));
    }
    if !t.is_ascii() {
        return Err(CoreError::invalid(
            "the reject reply must be plain ASCII (it is sent in an SMTP reply)",
        ));
    }
    if t.len() > 200 {
        return Err(CoreError::invalid(
            "the reject reply must be at most 200 characters",
        ));
    }
    Ok(t)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSummary {
    pub domain: Domain,
    pub accounts: u64,
    pub messages: u64,
    pub bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i32,
    pub at: i64,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub domain: String,
    pub target: String,
    pub detail: String,
}

impl From<audit_log::Model> for AuditEntry {
    fn from(m: audit_log::Model) -> Self {
        AuditEntry {
            id: m.id,
            at: m.at,
            actor: m.actor,
            ip: m.ip,
            action: m.action,
            domain: m.domain,
            target: m.target,
            detail: m.detail,
        }
    }
}

fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The domain of an address the caller is about to create, with the same
/// error for a malformed address as the directory gives.
fn new_address_domain(address: &str) -> CoreResult<String> {
    crate::address::Address::parse(address)
        .map(|a| a.domain().to_owned())
        .map_err(|e| CoreError::invalid(format!("{address:?}: {e}")))
}

impl Core {
    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        domain: &str,
        target: &str,
        detail: &str,
    ) -> CoreResult<()> {
        audit_log::ActiveModel {
            at: Set(self.now()),
            actor: Set(actor.name.clone()),
            ip: Set(actor.ip.chars().take(64).collect()),
            action: Set(action.to_owned()),
            domain: Set(domain.to_owned()),
            target: Set(target.to_owned()),
            detail: Set(detail.to_owned()),
            ..Default::default()
        }
        .insert_committed(self.wdb())
        .await?;
        tracing::info!(actor = %actor.name, ip = %actor.ip, action, domain, target, detail, "admin action");
        Ok(())
    }

    /// The domain ids an actor manages; `None` means all of them.
    async fn managed(&self, actor: &Actor) -> CoreResult<Option<Vec<i32>>> {
        match &actor.account {
            None => Ok(None),
            Some(a) => match a.role {
                Role::Admin => Ok(None),
                Role::User => Ok(Some(Vec::new())),
                Role::DomainAdmin => Ok(Some(
                    domain_admin::Entity::find()
                        .select_only()
                        .column(domain_admin::Column::DomainId)
                        .filter(domain_admin::Column::AccountId.eq(a.id))
                        .into_tuple()
                        .all(self.db())
                        .await?,
                )),
            },
        }
    }

    /// The domain, if the actor may manage it. A domain the actor may not
    /// see answers the same as one that does not exist, so a domain admin
    /// cannot probe which other domains are hosted here.
    pub async fn domain_for(&self, actor: &Actor, name: &str) -> CoreResult<Domain> {
        let d = self
            .domain(name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("domain {name}")))?;
        match self.managed(actor).await? {
            None => Ok(d),
            Some(ids) if ids.contains(&d.id) => Ok(d),
            Some(_) => Err(CoreError::Forbidden),
        }
    }

    fn require_admin(&self, actor: &Actor) -> CoreResult<()> {
        if actor.is_admin() {
            Ok(())
        } else {
            Err(CoreError::Forbidden)
        }
    }

    /// True when the actor may open the admin area at all.
    pub fn may_administer(actor: &Actor) -> bool {
        actor
            .account
            .as_ref()
            .is_none_or(|a| matches!(a.role, Role::Admin | Role::DomainAdmin))
    }

    pub(crate) async fn admin_domains(&self, actor: &Actor) -> CoreResult<Vec<DomainSummary>> {
        let managed = self.managed(actor).await?;
        let mut out = Vec::new();
        for d in self.list_domains().await? {
            if managed.as_ref().is_some_and(|ids| !ids.contains(&d.id)) {
                continue;
            }
            out.push(self.domain_summary(d).await?);
        }
        Ok(out)
    }

    async fn domain_summary(&self, d: Domain) -> CoreResult<DomainSummary> {
        let (ids, used): (Vec<i32>, Vec<i64>) = account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .column(account::Column::UsedBytes)
            .filter(account::Column::DomainId.eq(d.id))
            .into_tuple::<(i32, i64)>()
            .all(self.db())
            .await?
            .into_iter()
            .unzip();
        let bytes: i64 = used.iter().sum();
        let boxes: Vec<i32> = mailbox::Entity::find()
            .select_only()
            .column(mailbox::Column::Id)
            .filter(mailbox::Column::AccountId.is_in(ids.clone()))
            .into_tuple()
            .all(self.db())
            .await?;
        let messages = message::Entity::find()
            .filter(message::Column::MailboxId.is_in(boxes))
            .count(self.db())
            .await?;
        Ok(DomainSummary {
            domain: d,
            accounts: ids.len() as u64,
            messages,
            bytes,
        })
    }

    pub(crate) async fn admin_domain(
        &self,
        actor: &Actor,
        name: &str,
    ) -> CoreResult<DomainSummary> {
        let d = self.domain_for(actor, name).await?;
        self.domain_summary(d).await
    }

    pub(crate) async fn admin_add_domain(&self, actor: &Actor, name: &str) -> CoreResult<Domain> {
        self.require_admin(actor)?;
        let d = self.add_domain(name).await?;
        self.audit(actor, "domain.add", &d.name, &d.name, "")
            .await?;
        Ok(d)
    }

    /// Removes a domain. One that still holds mail needs `confirm`, and the
    /// refusal says what would be deleted.
    pub(crate) async fn admin_remove_domain(
        &self,
        actor: &Actor,
        name: &str,
        confirm: bool,
    ) -> CoreResult<()> {
        self.require_admin(actor)?;
        let s = self
            .domain_summary(self.domain_for(actor, name).await?)
            .await?;
        if s.messages > 0 && !confirm {
            return Err(CoreError::invalid(format!(
                "{name} still has {} accounts holding {} messages; removing it deletes them \
                 all and refuses its mail from then on. Confirm to go ahead.",
                s.accounts, s.messages
            )));
        }
        self.remove_domain(name).await?;
        self.audit(
            actor,
            "domain.remove",
            name,
            name,
            &format!("{} accounts, {} messages deleted", s.accounts, s.messages),
        )
        .await
    }

    pub(crate) async fn admin_set_catchall(
        &self,
        actor: &Actor,
        name: &str,
        mode: Catchall,
    ) -> CoreResult<()> {
        let d = self.domain_for(actor, name).await?;
        let (lp, reject, detail) = match &mode {
            Catchall::None => (None, None, "none".to_owned()),
            Catchall::Account(lp) => {
                let lp = parse_local(lp).map_err(|e| CoreError::invalid(e.to_string()))?;
                let addr = format!("{lp}@{}", d.name);
                if self.account(&addr).await?.is_none() {
                    return Err(CoreError::NotFound(format!(
                        "account {addr} (a catchall must name an account of the domain)"
                    )));
                }
                (Some(lp), None, format!("account {addr}"))
            }
            Catchall::Reject(text) => {
                let t = reply_text(text)?;
                (None, Some(t.clone()), format!("reject: {t}"))
            }
        };
        crate::directory_cache::note_local_change(self);
        domain::Entity::update_many()
            .col_expr(domain::Column::CatchallLocalPart, Expr::value(lp))
            .col_expr(domain::Column::CatchallReject, Expr::value(reject))
            .filter(domain::Column::Id.eq(d.id))
            .exec(self.wdb())
            .await?;
        crate::directory_cache::bump(self, self.wdb()).await;
        self.audit(actor, "catchall.set", &d.name, &d.name, &detail)
            .await
    }

    /// A domain's DKIM keys, for one who manages it.
    pub(crate) async fn admin_dkim_keys(
        &self,
        actor: &Actor,
        name: &str,
    ) -> CoreResult<Vec<crate::dkim::DkimKey>> {
        let d = self.domain_for(actor, name).await?;
        self.dkim_keys(&d.name).await
    }

    /// New DKIM keys for a domain; the old ones stop signing and stay
    /// published for the grace period.
    pub(crate) async fn admin_dkim_rotate(
        &self,
        actor: &Actor,
        name: &str,
    ) -> CoreResult<Vec<crate::dkim::DkimKey>> {
        let d = self.domain_for(actor, name).await?;
        let keys = self.dkim_rotate(&d.name).await?;
        let selectors: Vec<&str> = keys
            .iter()
            .filter(|k| k.signing())
            .map(|k| k.selector.as_str())
            .collect();
        self.audit(actor, "dkim.rotate", &d.name, &d.name, &selectors.join(" "))
            .await?;
        Ok(keys)
    }

    /// The account, if the actor manages its domain.
    async fn account_for(&self, actor: &Actor, address: &str) -> CoreResult<Account> {
        let a = self
            .account(address)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("account {address}")))?;
        self.domain_for(actor, &a.domain).await?;
        Ok(a)
    }

    /// Only an admin hands out `admin`; a domain admin may make users and
    /// other domain admins of its domains.
    fn may_grant(&self, actor: &Actor, role: Role) -> CoreResult<()> {
        if role == Role::Admin {
            self.require_admin(actor)
        } else {
            Ok(())
        }
    }

    async fn grant_own_domain(&self, account: &Account) -> CoreResult<()> {
        if account.role == Role::DomainAdmin
            && let Some(d) = self.domain(&account.domain).await?
        {
            self.grant(account.id, d.id).await?;
        }
        Ok(())
    }

    async fn grant(&self, account_id: AccountId, domain_id: i32) -> CoreResult<()> {
        let exists = domain_admin::Entity::find()
            .filter(domain_admin::Column::AccountId.eq(account_id))
            .filter(domain_admin::Column::DomainId.eq(domain_id))
            .one(self.db())
            .await?
            .is_some();
        if !exists {
            domain_admin::ActiveModel {
                account_id: Set(account_id),
                domain_id: Set(domain_id),
            }
            .insert_committed(self.wdb())
            .await?;
        }
        Ok(())
    }

    /// Lets a domain admin manage one more domain (admin only).
    pub(crate) async fn admin_grant_domain(
        &self,
        actor: &Actor,
        domain_name: &str,
        address: &str,
    ) -> CoreResult<()> {
        self.require_admin(actor)?;
        let d = self.domain_for(actor, domain_name).await?;
        let a = self
            .account(address)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("account {address}")))?;
        if a.role != Role::DomainAdmin {
            return Err(CoreError::invalid(format!(
                "{address} is {}, not domain_admin",
                a.role.as_str()
            )));
        }
        self.grant(a.id, d.id).await?;
        self.audit(actor, "domain.grant", &d.name, address, "")
            .await
    }

    /// The domains a domain admin manages, by name.
    pub async fn granted_domains(&self, address: &str) -> CoreResult<Vec<String>> {
        let Some(a) = self.account(address).await? else {
            return Ok(Vec::new());
        };
        let ids: Vec<i32> = domain_admin::Entity::find()
            .select_only()
            .column(domain_admin::Column::DomainId)
            .filter(domain_admin::Column::AccountId.eq(a.id))
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(domain::Entity::find()
            .filter(domain::Column::Id.is_in(ids))
            .order_by_asc(domain::Column::Name)
            .all(self.db())
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect())
    }

    pub(crate) async fn admin_accounts(
        &self,
        actor: &Actor,
        domain_name: &str,
    ) -> CoreResult<Vec<Account>> {
        let d = self.domain_for(actor, domain_name).await?;
        self.list_accounts(Some(&d.name)).await
    }

    pub(crate) async fn admin_add_account(
        &self,
        actor: &Actor,
        address: &str,
        password: &str,
        role: Role,
    ) -> CoreResult<Account> {
        self.domain_for(actor, &new_address_domain(address)?)
            .await?;
        self.may_grant(actor, role)?;
        let a = self.add_account(address, password, role).await?;
        self.grant_own_domain(&a).await?;
        self.audit(actor, "account.add", &a.domain, &a.address, role.as_str())
            .await?;
        Ok(a)
    }

    pub(crate) async fn admin_set_password(
        &self,
        actor: &Actor,
        address: &str,
        password: &str,
    ) -> CoreResult<()> {
        let a = self.account_for(actor, address).await?;
        self.set_password(&a.address, password).await?;
        self.audit(actor, "account.password", &a.domain, &a.address, "reset")
            .await
    }

    pub(crate) async fn admin_set_disabled(
        &self,
        actor: &Actor,
        address: &str,
        disabled: bool,
    ) -> CoreResult<()> {
        let a = self.account_for(actor, address).await?;
        self.set_disabled(&a.address, disabled).await?;
        let what = if disabled { "disabled" } else { "enabled" };
        self.audit(actor, "account.disable", &a.domain, &a.address, what)
            .await
    }

    pub(crate) async fn admin_set_quota(
        &self,
        actor: &Actor,
        address: &str,
        bytes: i64,
    ) -> CoreResult<()> {
        if bytes < 0 {
            return Err(CoreError::invalid("a quota cannot be negative (0 is none)"));
        }
        let a = self.account_for(actor, address).await?;
        self.set_quota(&a.address, bytes).await?;
        self.audit(
            actor,
            "account.quota",
            &a.domain,
            &a.address,
            &format!("{bytes} bytes"),
        )
        .await
    }

    pub(crate) async fn admin_set_role(
        &self,
        actor: &Actor,
        address: &str,
        role: Role,
    ) -> CoreResult<()> {
        let a = self.account_for(actor, address).await?;
        self.may_grant(actor, role)?;
        // Nor may a domain admin demote an admin.
        if a.role == Role::Admin {
            self.require_admin(actor)?;
        }
        self.set_role(&a.address, role).await?;
        let mut a2 = a.clone();
        a2.role = role;
        self.grant_own_domain(&a2).await?;
        self.audit(actor, "account.role", &a.domain, &a.address, role.as_str())
            .await
    }

    pub(crate) async fn admin_remove_account(
        &self,
        actor: &Actor,
        address: &str,
    ) -> CoreResult<()> {
        let a = self.account_for(actor, address).await?;
        if a.role == Role::Admin {
            self.require_admin(actor)?;
        }
        self.remove_account(&a.address).await?;
        self.audit(actor, "account.remove", &a.domain, &a.address, "")
            .await
    }

    pub(crate) async fn admin_aliases(
        &self,
        actor: &Actor,
        domain_name: &str,
    ) -> CoreResult<Vec<Alias>> {
        let d = self.domain_for(actor, domain_name).await?;
        self.list_aliases(Some(&d.name)).await
    }

    pub(crate) async fn admin_add_alias(
        &self,
        actor: &Actor,
        address: &str,
        targets: &[String],
    ) -> CoreResult<Alias> {
        self.domain_for(actor, &new_address_domain(address)?)
            .await?;
        let a = self.add_alias(address, targets).await?;
        self.audit(
            actor,
            "alias.add",
            &domain_of(&a.address),
            &a.address,
            &targets.join(", "),
        )
        .await?;
        Ok(a)
    }

    pub(crate) async fn admin_remove_alias(
        &self,
        actor: &Actor,
        address: &str,
        target: Option<&str>,
    ) -> CoreResult<()> {
        self.domain_for(actor, &domain_of(address)).await?;
        self.remove_alias(address, target).await?;
        self.audit(
            actor,
            "alias.remove",
            &domain_of(address),
            address,
            target.unwrap_or("all targets"),
        )
        .await
    }

    /// The audit log, newest first: all of it for an admin, the entries of
    /// their domains for a domain admin.
    pub(crate) async fn audit_log(&self, actor: &Actor, limit: u64) -> CoreResult<Vec<AuditEntry>> {
        let mut q = audit_log::Entity::find().order_by_desc(audit_log::Column::Id);
        if let Some(ids) = self.managed(actor).await? {
            let names: Vec<String> = domain::Entity::find()
                .filter(domain::Column::Id.is_in(ids))
                .all(self.db())
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect();
            q = q.filter(audit_log::Column::Domain.is_in(names));
        }
        Ok(q.limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Audits an operator action done outside this module (queue commands).
    pub(crate) async fn audit_operator(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
    ) -> CoreResult<()> {
        self.require_admin(actor)?;
        self.audit(actor, action, "", target, detail).await
    }
}

/// What an operator can do to queued mail, by entry or by destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOp {
    Retry,
    Hold,
    Release,
    Delete,
}

impl Core {
    /// Queue operations from the admin area: operators (admins) only, and
    /// audited, like the CLI's.
    pub(crate) async fn admin_queue_op(
        &self,
        actor: &Actor,
        op: QueueOp,
        target: &crate::queue::Target,
    ) -> CoreResult<u64> {
        self.require_admin(actor)?;
        let n = match op {
            QueueOp::Retry => self.queue_retry(target).await?,
            QueueOp::Hold => self.queue_hold(target).await?,
            QueueOp::Release => self.queue_release(target).await?,
            QueueOp::Delete => self.queue_delete(target).await?,
        };
        let what = match target {
            crate::queue::Target::Entry(id) => format!("entry {id}"),
            crate::queue::Target::Domain(d) => format!("destination {d}"),
        };
        let action = match op {
            QueueOp::Retry => "queue.retry",
            QueueOp::Hold => "queue.hold",
            QueueOp::Release => "queue.release",
            QueueOp::Delete => "queue.delete",
        };
        self.audit(actor, action, "", &what, &format!("{n} entries"))
            .await?;
        Ok(n)
    }

    /// Operators only: the queue and delivery log views of the admin area.
    pub fn require_operator(&self, actor: &Actor) -> CoreResult<()> {
        self.require_admin(actor)
    }
}

/// The directory as one actor may change it: [`Core::admin`]. Every
/// method checks the actor's rights for what it names (an operator may do
/// anything, a domain admin only their domains) and writes the audit log.
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    core: &'a Core,
    actor: &'a Actor,
}

impl Core {
    /// Directory administration on behalf of `actor`.
    pub fn admin<'a>(&'a self, actor: &'a Actor) -> Admin<'a> {
        Admin { core: self, actor }
    }
}

impl Admin<'_> {
    pub fn actor(&self) -> &Actor {
        self.actor
    }

    /// The domains this actor administers, with their counts.
    pub async fn domains(&self) -> CoreResult<Vec<DomainSummary>> {
        self.core.admin_domains(self.actor).await
    }

    pub async fn domain(&self, name: &str) -> CoreResult<DomainSummary> {
        self.core.admin_domain(self.actor, name).await
    }

    pub async fn add_domain(&self, name: &str) -> CoreResult<Domain> {
        self.core.admin_add_domain(self.actor, name).await
    }

    /// A domain that still has accounts or mail needs `confirm`.
    pub async fn remove_domain(&self, name: &str, confirm: bool) -> CoreResult<()> {
        self.core
            .admin_remove_domain(self.actor, name, confirm)
            .await
    }

    pub async fn set_catchall(&self, name: &str, mode: Catchall) -> CoreResult<()> {
        self.core.admin_set_catchall(self.actor, name, mode).await
    }

    pub async fn dkim_keys(&self, domain: &str) -> CoreResult<Vec<crate::dkim::DkimKey>> {
        self.core.admin_dkim_keys(self.actor, domain).await
    }

    pub async fn dkim_rotate(&self, domain: &str) -> CoreResult<Vec<crate::dkim::DkimKey>> {
        self.core.admin_dkim_rotate(self.actor, domain).await
    }

    /// Makes `address` an administrator of `domain`.
    pub async fn grant_domain(&self, domain: &str, address: &str) -> CoreResult<()> {
        self.core
            .admin_grant_domain(self.actor, domain, address)
            .await
    }

    pub async fn accounts(&self, domain: &str) -> CoreResult<Vec<Account>> {
        self.core.admin_accounts(self.actor, domain).await
    }

    pub async fn add_account(
        &self,
        address: &str,
        password: &str,
        role: Role,
    ) -> CoreResult<Account> {
        self.core
            .admin_add_account(self.actor, address, password, role)
            .await
    }

    pub async fn set_password(&self, address: &str, password: &str) -> CoreResult<()> {
        self.core
            .admin_set_password(self.actor, address, password)
            .await
    }

    pub async fn set_disabled(&self, address: &str, disabled: bool) -> CoreResult<()> {
        self.core
            .admin_set_disabled(self.actor, address, disabled)
            .await
    }

    pub async fn set_quota(&self, address: &str, bytes: i64) -> CoreResult<()> {
        self.core.admin_set_quota(self.actor, address, bytes).await
    }

    pub async fn set_role(&self, address: &str, role: Role) -> CoreResult<()> {
        self.core.admin_set_role(self.actor, address, role).await
    }

    pub async fn remove_account(&self, address: &str) -> CoreResult<()> {
        self.core.admin_remove_account(self.actor, address).await
    }

    pub async fn aliases(&self, domain: &str) -> CoreResult<Vec<Alias>> {
        self.core.admin_aliases(self.actor, domain).await
    }

    pub async fn add_alias(&self, address: &str, targets: &[String]) -> CoreResult<Alias> {
        self.core
            .admin_add_alias(self.actor, address, targets)
            .await
    }

    /// One target of an alias, or (None) the whole alias.
    pub async fn remove_alias(&self, address: &str, target: Option<&str>) -> CoreResult<()> {
        self.core
            .admin_remove_alias(self.actor, address, target)
            .await
    }

    /// The audit log this actor may read, newest first.
    pub async fn audit_log(&self, limit: u64) -> CoreResult<Vec<AuditEntry>> {
        self.core.audit_log(self.actor, limit).await
    }

    /// Records an operator's action that is not a directory change.
    pub async fn audit(&self, action: &str, target: &str, detail: &str) -> CoreResult<()> {
        self.core
            .audit_operator(self.actor, action, target, detail)
            .await
    }

    /// An operator's queue command (retry, hold, release, delete), audited.
    pub async fn queue_op(&self, op: QueueOp, target: &crate::queue::Target) -> CoreResult<u64> {
        self.core.admin_queue_op(self.actor, op, target).await
    }
}
