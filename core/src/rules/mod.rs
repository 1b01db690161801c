//! Per-user rules: each account's Sieve scripts (RFC 5228), one of them
//! active, run when mail is delivered to the account (spool ingest and
//! direct delivery; not bounces, outside-mailbox fetches or the copies a
//! rule itself makes, so a rule cannot loop through its own output).
//!
//! - `eval`: running a script over one message (sieve-rs);
//! - `form`: the webmail's rule builder, written out as Sieve;
//! - `srs`: the Sender Rewriting Scheme for forwarded mail;
//! - this module: the scripts in the store, and what delivery asks of
//!   them ([`Core::plan_rules`]).

pub mod eval;
pub mod form;
pub mod srs;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

use crate::Core;
use crate::entities::{account, mailbox, sieve_script, sieve_seen};
use crate::envelope::{Envelope, LocalCopy};
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, MailboxId};
use crate::routing::Route;

pub use form::RuleForm;

/// The name of the script the rule builder writes.
pub const FORM_SCRIPT: &str = "tern-rules";
/// Most scripts one account keeps (ManageSieve's HAVESPACE answers by it).
pub const MAX_SCRIPTS: usize = 20;
const MAX_NAME: usize = 128;

/// One stored script, as lists show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: String,
    pub active: bool,
    pub content: String,
    /// The rule builder's form, when the script is its output.
    pub form: Option<RuleForm>,
}

/// Compiled scripts by the SHA-256 of their text: a script is compiled
/// once per process, not once per message.
#[derive(Default)]
pub(crate) struct ScriptCache(std::sync::Mutex<HashMap<[u8; 32], Arc<sieve::Sieve>>>);

impl ScriptCache {
    fn get(&self, text: &str) -> Result<Arc<sieve::Sieve>, String> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if let Ok(m) = self.0.lock()
            && let Some(s) = m.get(&key)
        {
            return Ok(s.clone());
        }
        let s = Arc::new(eval::compile(text)?);
        if let Ok(mut m) = self.0.lock() {
            // Bounded: scripts change rarely, and a full cache is rebuilt
            // from what is delivered next.
            if m.len() >= 4096 {
                m.clear();
            }
            m.insert(key, s.clone());
        }
        Ok(s)
    }
}

fn check_name(name: &str) -> CoreResult<&str> {
    let n = name.trim();
    if n.is_empty() || n.len() > MAX_NAME || n.chars().any(|c| c.is_control() || c == '/') {
        return Err(CoreError::invalid(format!(
            "a script name has 1 to {MAX_NAME} characters, no \"/\" or control characters"
        )));
    }
    Ok(n)
}

impl Core {
    /// The account's scripts, by name.
    pub async fn sieve_scripts(&self, account: AccountId) -> CoreResult<Vec<ScriptInfo>> {
        Ok(sieve_script::Entity::find()
            .filter(sieve_script::Column::AccountId.eq(account))
            .order_by_asc(sieve_script::Column::Name)
            .all(self.db())
            .await?
            .into_iter()
            .map(|r| ScriptInfo {
                name: r.name,
                active: r.active,
                content: r.content,
                form: r.form.and_then(|f| serde_json::from_str(&f).ok()),
            })
            .collect())
    }

    /// Checks that `text` compiles; the error names the line and column.
    pub fn check_sieve(&self, text: &str) -> CoreResult<()> {
        eval::compile(text).map(|_| ()).map_err(CoreError::Invalid)
    }

    /// Stores a script written as Sieve (a new one or over an old one,
    /// whose form is then dropped); `activate` makes it the one that runs.
    pub async fn put_sieve_script(
        &self,
        account: AccountId,
        name: &str,
        text: &str,
        activate: bool,
    ) -> CoreResult<()> {
        self.store_script(account, name, text, None, activate).await
    }

    /// Writes the rule builder's form as the active script
    /// [`FORM_SCRIPT`]. An empty form turns the rules off.
    pub async fn save_rule_form(&self, account: AccountId, form: &RuleForm) -> CoreResult<()> {
        form.check().map_err(CoreError::Invalid)?;
        let empty = form.rules.is_empty() && form.vacation.is_none() && form.forward.is_none();
        let json = serde_json::to_string(form).map_err(|e| CoreError::invalid(e.to_string()))?;
        self.store_script(account, FORM_SCRIPT, &form.to_sieve(), Some(json), !empty)
            .await?;
        if empty {
            self.activate_sieve_script(account, None).await?;
        }
        Ok(())
    }

    async fn store_script(
        &self,
        account: AccountId,
        name: &str,
        text: &str,
        form: Option<String>,
        activate: bool,
    ) -> CoreResult<()> {
        let name = check_name(name)?;
        self.check_sieve(text)?;
        let existing = self.sieve_scripts(account).await?;
        if !existing.iter().any(|s| s.name == name) && existing.len() >= MAX_SCRIPTS {
            return Err(CoreError::invalid(format!(
                "at most {MAX_SCRIPTS} scripts per account"
            )));
        }
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let txn = self.wdb().begin().await?;
        if activate {
            deactivate_all(&txn, account).await?;
        }
        let mut update = vec![
            sieve_script::Column::Content,
            sieve_script::Column::Form,
            sieve_script::Column::UpdatedAt,
        ];
        if activate {
            update.push(sieve_script::Column::Active);
        }
        sieve_script::Entity::insert(sieve_script::ActiveModel {
            account_id: Set(account),
            name: Set(name.to_owned()),
            content: Set(text.to_owned()),
            active: Set(activate),
            form: Set(form),
            updated_at: Set(self.now()),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([sieve_script::Column::AccountId, sieve_script::Column::Name])
                .update_columns(update)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Makes `name` the script that runs, or none.
    pub async fn activate_sieve_script(
        &self,
        account: AccountId,
        name: Option<&str>,
    ) -> CoreResult<()> {
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let txn = self.wdb().begin().await?;
        deactivate_all(&txn, account).await?;
        if let Some(name) = name {
            let row = sieve_script::Entity::find()
                .filter(sieve_script::Column::AccountId.eq(account))
                .filter(sieve_script::Column::Name.eq(name))
                .one(&txn)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("script {name}")))?;
            let mut a: sieve_script::ActiveModel = row.into();
            a.active = Set(true);
            a.update(&txn).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Deletes a script; the active one cannot be (RFC 5804 §2.10).
    pub async fn delete_sieve_script(&self, account: AccountId, name: &str) -> CoreResult<()> {
        let row = sieve_script::Entity::find()
            .filter(sieve_script::Column::AccountId.eq(account))
            .filter(sieve_script::Column::Name.eq(name))
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("script {name}")))?;
        if row.active {
            return Err(CoreError::Conflict(format!("script {name} is active")));
        }
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        sieve_script::Entity::delete_by_id(row.id)
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    /// Renames a script (RFC 5804 §2.11.1).
    pub async fn rename_sieve_script(
        &self,
        account: AccountId,
        from: &str,
        to: &str,
    ) -> CoreResult<()> {
        let to = check_name(to)?;
        let scripts = self.sieve_scripts(account).await?;
        if scripts.iter().any(|s| s.name == to) {
            return Err(CoreError::Conflict(format!("script {to}")));
        }
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let n = sieve_script::Entity::update_many()
            .col_expr(sieve_script::Column::Name, to.into())
            .filter(sieve_script::Column::AccountId.eq(account))
            .filter(sieve_script::Column::Name.eq(from))
            .exec(self.wdb())
            .await?;
        if n.rows_affected == 0 {
            return Err(CoreError::NotFound(format!("script {from}")));
        }
        Ok(())
    }
}

async fn deactivate_all(txn: &DatabaseTransaction, account: AccountId) -> CoreResult<()> {
    sieve_script::Entity::update_many()
        .col_expr(sieve_script::Column::Active, false.into())
        .filter(sieve_script::Column::AccountId.eq(account))
        .filter(sieve_script::Column::Active.eq(true))
        .exec(txn)
        .await?;
    Ok(())
}

/// Where one copy goes, with the flags and keywords it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    /// `None`: the copy's default folder (INBOX, or Junk).
    pub mailbox: Option<MailboxId>,
    pub flags: crate::messages::Flags,
    pub keywords: Vec<crate::messages::Keyword>,
}

impl Place {
    pub(crate) fn default_place() -> Place {
        Place {
            mailbox: None,
            flags: crate::messages::Flags::empty(),
            keywords: Vec::new(),
        }
    }
}

/// What the rules made of one delivered message.
#[derive(Debug, Default)]
pub(crate) struct ItemPlan {
    /// Per local copy (in `local_copies()` order): where it goes; empty
    /// when discarded. `None` for the whole item when no copy has rules.
    pub places: Option<Vec<Vec<Place>>>,
    /// Messages the rules send (forwards, replies, reject notices): stored
    /// or queued with the item, never through rules again.
    pub followups: Vec<(Envelope, Vec<u8>)>,
    /// Vacation/duplicate keys to remember: (account, key, expires at).
    pub remember: Vec<(AccountId, String, i64)>,
}

/// The `Delivered-To:` line a message forwarded for `rcpt` carries, and by
/// which a loop back to the same recipient is seen (Postfix does the same).
fn delivered_to_line(rcpt: &str) -> String {
    format!("Delivered-To: {rcpt}\r\n")
}

fn already_delivered_to(raw: &[u8], rcpt: &str) -> bool {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let want = format!("delivered-to: {}", rcpt.to_ascii_lowercase());
    head.lines().any(|l| l.trim_end() == want)
}

fn flags_of(names: &[String]) -> (crate::messages::Flags, Vec<crate::messages::Keyword>) {
    use crate::messages::{Flags, Keyword};
    let mut f = Flags::empty();
    let mut k: Vec<Keyword> = Vec::new();
    for n in names.iter().flat_map(|n| n.split_whitespace()) {
        if let Some(s) = Flags::from_name(n) {
            // \Recent is the server's, and \Deleted from a filter is a
            // trap (an expunge away from lost mail); both are dropped.
            if s != Flags::DELETED {
                f = f.union(s);
            }
        } else if !n.starts_with('\\')
            && let Some(kw) = Keyword::parse(n)
            && !k.iter().any(|x| x.same(n))
            && k.len() < crate::messages::MAX_KEYWORDS_PER_MESSAGE
        {
            k.push(kw);
        }
    }
    (f, k)
}

impl Core {
    /// Runs the active script of each account a batch delivers to, in the
    /// delivery's transaction. Reading the scripts costs one query per
    /// batch, and nothing more when no recipient has rules.
    pub(crate) async fn plan_rules(
        &self,
        txn: &DatabaseTransaction,
        items: &[(&Envelope, &[u8])],
        copies: &[Vec<LocalCopy>],
    ) -> CoreResult<Vec<ItemPlan>> {
        let ids: HashSet<AccountId> = copies.iter().flatten().map(|c| c.account_id).collect();
        let mut plans: Vec<ItemPlan> = items.iter().map(|_| ItemPlan::default()).collect();
        if ids.is_empty() {
            return Ok(plans);
        }
        let scripts: Vec<(AccountId, String)> = sieve_script::Entity::find()
            .select_only()
            .column(sieve_script::Column::AccountId)
            .column(sieve_script::Column::Content)
            .filter(sieve_script::Column::AccountId.is_in(ids.iter().copied()))
            .filter(sieve_script::Column::Active.eq(true))
            .into_tuple()
            .all(txn)
            .await?;
        if scripts.is_empty() {
            return Ok(plans);
        }
        let mut compiled = HashMap::new();
        for (id, text) in scripts {
            match self.inner.rules.get(&text) {
                Ok(s) => {
                    compiled.insert(id, s);
                }
                // Stored scripts compiled when saved; one that no longer
                // does (a newer interpreter) is skipped, not fatal.
                Err(e) => {
                    tracing::warn!(account = %id, error = %e, "sieve: script does not compile")
                }
            }
        }
        let with: Vec<AccountId> = compiled.keys().copied().collect();
        let addresses: HashMap<AccountId, String> = account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .column(account::Column::Address)
            .filter(account::Column::Id.is_in(with.iter().copied()))
            .into_tuple::<(AccountId, String)>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        let folders: HashMap<(AccountId, String), MailboxId> = mailbox::Entity::find()
            .select_only()
            .column(mailbox::Column::AccountId)
            .column(mailbox::Column::Name)
            .column(mailbox::Column::Id)
            .filter(mailbox::Column::AccountId.is_in(with.iter().copied()))
            .into_tuple::<(AccountId, String, MailboxId)>()
            .all(txn)
            .await?
            .into_iter()
            .map(|(a, n, m)| ((a, n), m))
            .collect();
        let now = self.now();
        for ((plan, (env, raw)), cs) in plans.iter_mut().zip(items).zip(copies) {
            if !cs.iter().any(|c| compiled.contains_key(&c.account_id)) {
                continue;
            }
            let mut places = Vec::with_capacity(cs.len());
            for c in cs {
                let Some(script) = compiled.get(&c.account_id) else {
                    places.push(vec![Place::default_place()]);
                    continue;
                };
                let user = addresses.get(&c.account_id).cloned().unwrap_or_default();
                let rcpt = if c.delivered_to.is_empty() {
                    user.clone()
                } else {
                    c.delivered_to.clone()
                };
                let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
                let d = eval::Delivery {
                    raw,
                    mail_from: &env.mail_from,
                    rcpt: &rcpt,
                    user_address: &user,
                    user_name: "",
                    hostname: &domain,
                };
                let exists = |n: &str| {
                    crate::mailboxes::normalize_name(n)
                        .is_ok_and(|n| folders.contains_key(&(c.account_id, n)))
                };
                // First run: nothing counts as seen, which lists the keys
                // the script asks about; only if one of them is
                // remembered does it run again knowing so.
                let first = eval::run(script.clone(), &d, &exists, &|_| false);
                let asked: Vec<String> = first.remember.iter().map(|(k, _)| k.clone()).collect();
                let seen: HashSet<String> = if asked.is_empty() {
                    HashSet::new()
                } else {
                    sieve_seen::Entity::find()
                        .select_only()
                        .column(sieve_seen::Column::Key)
                        .filter(sieve_seen::Column::AccountId.eq(c.account_id))
                        .filter(sieve_seen::Column::Key.is_in(asked))
                        .filter(sieve_seen::Column::ExpiresAt.gt(now))
                        .into_tuple::<String>()
                        .all(txn)
                        .await?
                        .into_iter()
                        .collect()
                };
                let result = if seen.is_empty() {
                    first
                } else {
                    eval::run(script.clone(), &d, &exists, &|k| seen.contains(k))
                };
                let outcome = result;
                if let Some(e) = &outcome.error {
                    tracing::warn!(account = %c.account_id, error = %e, "sieve: the script failed; the message is kept");
                }
                let mut mine = Vec::new();
                for p in &outcome.placements {
                    let (flags, keywords) = flags_of(&p.flags);
                    let mailbox = match &p.folder {
                        None => None,
                        Some(name) => {
                            let found = crate::mailboxes::normalize_name(name)
                                .ok()
                                .and_then(|n| folders.get(&(c.account_id, n)).copied());
                            if found.is_none() {
                                // RFC 5228 §4.1 lets a missing folder
                                // fall back to the default one.
                                tracing::info!(account = %c.account_id, folder = %name, "sieve: no such folder; kept in INBOX");
                            }
                            found
                        }
                    };
                    let place = Place {
                        mailbox,
                        flags,
                        keywords,
                    };
                    if !mine.contains(&place) {
                        mine.push(place);
                    }
                }
                for (key, secs) in outcome.remember {
                    let secs = i64::try_from(secs).unwrap_or(i64::MAX).min(365 * 86_400);
                    plan.remember
                        .push((c.account_id, key, now.saturating_add(secs)));
                }
                for to in &outcome.redirects {
                    if already_delivered_to(raw, &rcpt) {
                        tracing::warn!(rcpt = %rcpt, to = %to, "sieve: the message was here before; not forwarded again");
                        if mine.is_empty() {
                            mine.push(Place::default_place());
                        }
                        continue;
                    }
                    let mut fwd = delivered_to_line(&rcpt).into_bytes();
                    fwd.extend_from_slice(raw);
                    match self
                        .rule_envelope(to, &env.mail_from, &domain, true)
                        .await?
                    {
                        Some(e) => plan.followups.push((e, fwd)),
                        None => tracing::warn!(to = %to, "sieve: cannot forward there"),
                    }
                }
                for (to, reply) in outcome.replies {
                    if let Some(e) = self.rule_envelope(&to, "", &domain, false).await? {
                        plan.followups.push((e, reply));
                    }
                }
                if let Some(reason) = outcome.reject
                    && !env.mail_from.is_empty()
                {
                    let dsn = crate::queue::dsn::build(&crate::queue::dsn::DsnInput {
                        kind: crate::queue::dsn::DsnKind::Failed,
                        reporting_mta: &domain,
                        sender: &env.mail_from,
                        arrival_date: now,
                        now,
                        retry_until: None,
                        recipients: &[crate::queue::dsn::DsnRecipient {
                            rcpt: rcpt.clone(),
                            diagnostic: format!("550 5.7.1 {}", one_line(&reason)),
                            remote_mta: None,
                            status: "5.7.1".into(),
                        }],
                        original: raw,
                    });
                    if let Some(e) =
                        crate::queue::runner::dsn_envelope(self, &env.mail_from).await?
                    {
                        plan.followups.push((e, dsn));
                    }
                }
                places.push(mine);
            }
            plan.places = Some(places);
        }
        Ok(plans)
    }

    /// The envelope a rule's message to `to` travels in: an outside
    /// address gets it from `mail_from` rewritten by SRS (when `srs` and a
    /// secrets key is configured), a local one as is.
    async fn rule_envelope(
        &self,
        to: &str,
        mail_from: &str,
        domain: &str,
        srs: bool,
    ) -> CoreResult<Option<Envelope>> {
        let mut env = Envelope {
            mail_from: mail_from.to_owned(),
            ..Default::default()
        };
        match self.route(to).await? {
            Route::Remote(a) => {
                if srs && !mail_from.is_empty() {
                    match self.outside_key() {
                        Ok(k) => {
                            env.mail_from = srs::forward(k.srs_key(), mail_from, domain, self.now())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "sieve: no SRS key; forwarded with the original sender")
                        }
                    }
                }
                env.remote.push(a);
            }
            Route::Rejected(_) => return Ok(None),
            route => {
                env.add_local_route(to, &route);
            }
        }
        Ok((!env.local.is_empty() || !env.remote.is_empty()).then_some(env))
    }

    /// Stores the vacation/duplicate keys a delivery decided on.
    pub(crate) async fn remember_rule_keys(
        &self,
        txn: &DatabaseTransaction,
        keys: &[(AccountId, String, i64)],
    ) -> CoreResult<()> {
        for (account, key, until) in keys {
            sieve_seen::Entity::insert(sieve_seen::ActiveModel {
                account_id: Set(*account),
                key: Set(key.clone()),
                expires_at: Set(*until),
            })
            .on_conflict(
                OnConflict::columns([sieve_seen::Column::AccountId, sieve_seen::Column::Key])
                    .update_column(sieve_seen::Column::ExpiresAt)
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}
