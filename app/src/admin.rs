//! The admin area (`/admin`): domains, accounts, aliases and catchall for
//! domain admins; queue, delivery log and audit log for operators.
//!
//! The pages only show and post; every rule is enforced by the core's
//! `admin_*` functions, which take the signed-in actor (see
//! `mailcore::admin`). A domain admin who forges a form for another domain
//! gets the same refusal as one who clicks.

use crate::head::PageTitle;
use leptos::prelude::*;

use crate::error::AppError;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::mail::encode;
// Sizes are formatted in the server functions only.
#[cfg(feature = "ssr")]
use crate::mail::human_size;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRow {
    pub name: String,
    pub accounts: u64,
    pub messages: u64,
    pub size: String,
    pub catchall: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeData {
    pub me: String,
    pub csrf: String,
    pub is_admin: bool,
    pub domains: Vec<DomainRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub address: String,
    pub role: String,
    pub quota_mb: i64,
    pub used: String,
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub purpose: String,
    pub name: String,
    pub rtype: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainData {
    pub me: String,
    pub csrf: String,
    pub is_admin: bool,
    pub domain: String,
    pub messages: u64,
    pub catchall_mode: String,
    pub catchall_account: String,
    pub catchall_text: String,
    pub accounts: Vec<AccountRow>,
    pub aliases: Vec<(String, Vec<String>)>,
    pub dns: Vec<DnsRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestRow {
    pub domain: String,
    pub waiting: u64,
    pub held: bool,
    pub concurrency: i32,
    pub ceiling: Option<i32>,
    pub last_reply: String,
    pub next_attempt: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRow {
    pub id: i32,
    pub rcpt: String,
    pub from: String,
    pub lane: String,
    pub status: String,
    pub attempts: i32,
    pub age: String,
    pub next_attempt: String,
    pub last_error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueData {
    pub csrf: String,
    pub total: u64,
    pub held: u64,
    pub by_lane: Vec<(String, u64)>,
    pub oldest: String,
    pub destinations: Vec<DestRow>,
    pub entries: Vec<EntryRow>,
    /// This node's inbound spool, when it has one.
    pub spool: Option<SpoolRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRow {
    pub records: u64,
    pub bytes: u64,
    pub oldest: String,
    pub per_minute: u64,
    pub largest_batch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRow {
    pub at: String,
    pub queue_id: i32,
    pub message_id: String,
    pub from: String,
    pub rcpt: String,
    pub outcome: String,
    pub host: String,
    pub tls: bool,
    pub reply: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub domain: String,
    pub target: String,
    pub detail: String,
}

/// How long ago, in words an operator reads at a glance.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use mailcore::admin::Actor;

    use crate::error::AppError;
    use mailcore::sessions::WebSession;

    use crate::auth::ssr::{client_ip, core_error, current_session, request};

    /// The signed-in actor, or None when not signed in.
    pub async fn actor() -> Result<Option<(WebSession, Actor)>, AppError> {
        let Some(s) = current_session().await? else {
            return Ok(None);
        };
        let req = request().await?;
        let actor = Actor::web(&s.account, &client_ip(&req).to_string());
        Ok(Some((s, actor)))
    }

    /// A core refusal as the page shows it; Forbidden also sets 403.
    pub fn refuse(e: mailcore::CoreError) -> AppError {
        if matches!(e, mailcore::CoreError::Forbidden) {
            return crate::mail::ssr::forbid("403 Forbidden: you do not manage this");
        }
        core_error(e)
    }

    /// The actor of a state-changing request, its CSRF token checked.
    pub async fn acting(csrf: &str) -> Result<Actor, AppError> {
        let s = crate::mail::ssr::require(csrf).await?;
        let req = request().await?;
        Ok(Actor::web(&s.account, &client_ip(&req).to_string()))
    }

    /// The core and the actor of a domain-page change, its CSRF token
    /// checked and the actor allowed into the admin area at all.
    pub async fn admin_acting(csrf: &str) -> Result<(mailcore::Core, Actor), AppError> {
        let actor = acting(csrf).await?;
        check(&actor)?;
        Ok((crate::auth::ssr::core()?, actor))
    }

    /// A role from a form (empty: a user).
    pub fn role_of(r: &str) -> Result<mailcore::Role, mailcore::CoreError> {
        mailcore::Role::parse(if r.is_empty() { "user" } else { r })
    }

    /// Ends a domain-page change: back to that domain's page (the list of
    /// domains when `domain` is empty) with what happened; a refusal is a
    /// 403 and an outage a 503, not a line on the page.
    pub fn done(domain: &str, result: Result<String, mailcore::CoreError>) -> Result<(), AppError> {
        use crate::mail::encode;
        let base = if domain.is_empty() {
            "/admin?".to_owned()
        } else {
            format!("/admin/domain?d={}&", encode(domain))
        };
        match result {
            Ok(msg) => leptos_actix::redirect(&format!("{base}ok={}", encode(&msg))),
            Err(mailcore::CoreError::Forbidden) => {
                return Err(refuse(mailcore::CoreError::Forbidden));
            }
            Err(e) if e.is_temporary() => return Err(crate::auth::ssr::core_error(e)),
            Err(e) => leptos_actix::redirect(&format!("{base}error={}", encode(&e.to_string()))),
        }
        Ok(())
    }

    pub fn check(actor: &Actor) -> Result<(), AppError> {
        if mailcore::Core::may_administer(actor) {
            Ok(())
        } else {
            Err(crate::mail::ssr::forbid(
                "403 Forbidden: the admin area is for admins and domain admins",
            ))
        }
    }
}

#[server(prefix = "/api", endpoint = "admin_home")]
pub async fn admin_home() -> Result<Option<HomeData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    let Some((s, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let domains = core()?.admin_domains(&actor).await.map_err(refuse)?;
    Ok(Some(HomeData {
        me: s.account.address.clone(),
        csrf: s.csrf_token.clone(),
        is_admin: s.account.role == mailcore::Role::Admin,
        domains: domains
            .into_iter()
            .map(|d| DomainRow {
                catchall: match mailcore::admin::Catchall::of(&d.domain) {
                    mailcore::admin::Catchall::None => "none".into(),
                    mailcore::admin::Catchall::Account(lp) => format!("to {lp}@{}", d.domain.name),
                    mailcore::admin::Catchall::Reject(t) => format!("reject: {t}"),
                },
                name: d.domain.name,
                accounts: d.accounts,
                messages: d.messages,
                size: human_size(d.bytes.max(0) as u64),
            })
            .collect(),
    }))
}

#[server(prefix = "/api", endpoint = "admin_domain")]
pub async fn admin_domain(d: String) -> Result<Option<DomainData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    use mailcore::admin::Catchall;
    let Some((s, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let core = core()?;
    let sum = core.admin_domain(&actor, &d).await.map_err(refuse)?;
    let accounts = core.admin_accounts(&actor, &d).await.map_err(refuse)?;
    let aliases = core.admin_aliases(&actor, &d).await.map_err(refuse)?;
    let host = use_context::<crate::WebSettings>()
        .map(|w| w.hostname)
        .unwrap_or_else(|| "mail.example".into());
    let name = sum.domain.name.clone();
    let (mode, acct, text) = match Catchall::of(&sum.domain) {
        Catchall::None => ("none", String::new(), String::new()),
        Catchall::Account(lp) => ("account", lp, String::new()),
        Catchall::Reject(t) => ("reject", String::new(), t),
    };
    let rec = |purpose: &str, n: String, t: &str, v: String| DnsRecord {
        purpose: purpose.into(),
        name: n,
        rtype: t.into(),
        value: v,
    };
    let dns = vec![
        rec(
            "Mail for the domain comes here",
            format!("{name}."),
            "MX",
            format!("10 {host}."),
        ),
        rec(
            "Only this server sends the domain's mail (SPF)",
            format!("{name}."),
            "TXT",
            "\"v=spf1 mx -all\"".into(),
        ),
        rec(
            "What receivers do with mail that fails SPF/DKIM (DMARC)",
            format!("_dmarc.{name}."),
            "TXT",
            format!("\"v=DMARC1; p=quarantine; rua=mailto:postmaster@{name}\""),
        ),
        rec(
            "Mail clients find submission (RFC 6186)",
            format!("_submission._tcp.{name}."),
            "SRV",
            format!("0 1 587 {host}."),
        ),
        rec(
            "Mail clients find IMAP over TLS",
            format!("_imaps._tcp.{name}."),
            "SRV",
            format!("0 1 993 {host}."),
        ),
        rec(
            "Mail clients find POP3 over TLS",
            format!("_pop3s._tcp.{name}."),
            "SRV",
            format!("0 1 995 {host}."),
        ),
        rec(
            "Thunderbird autoconfig",
            format!("autoconfig.{name}."),
            "CNAME",
            format!("{host}."),
        ),
        rec(
            "Outlook autodiscover",
            format!("autodiscover.{name}."),
            "CNAME",
            format!("{host}."),
        ),
    ];
    Ok(Some(DomainData {
        me: s.account.address.clone(),
        csrf: s.csrf_token.clone(),
        is_admin: s.account.role == mailcore::Role::Admin,
        domain: name,
        messages: sum.messages,
        catchall_mode: mode.into(),
        catchall_account: acct,
        catchall_text: text,
        accounts: accounts
            .into_iter()
            .map(|a| AccountRow {
                address: a.address,
                role: a.role.as_str().into(),
                quota_mb: a.quota_bytes / (1024 * 1024),
                used: human_size(a.used_bytes.max(0) as u64),
                disabled: a.disabled,
            })
            .collect(),
        aliases: aliases
            .into_iter()
            .map(|a| (a.address, a.targets))
            .collect(),
        dns,
    }))
}

// The domain pages' changes: one server function per change, each behind
// its own form, taking only what it needs. The core decides whether this
// actor may make it; each answers with a redirect to the page it came from
// and a line saying what happened (or why not).

#[server(prefix = "/api", endpoint = "admin_add_domain")]
pub async fn admin_add_domain(csrf: String, domain: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin_add_domain(&actor, &domain).await;
    ssr::done(&domain, r.map(|_| format!("Domain {domain} added.")))
}

#[server(prefix = "/api", endpoint = "admin_remove_domain")]
pub async fn admin_remove_domain(
    csrf: String,
    domain: String,
    #[server(default)] confirm: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core
        .admin_remove_domain(&actor, &domain, confirm == "yes")
        .await;
    // Gone: back to the list of domains.
    let back = if r.is_ok() { "" } else { domain.as_str() };
    ssr::done(back, r.map(|_| format!("Domain {domain} removed.")))
}

#[server(prefix = "/api", endpoint = "admin_catchall")]
pub async fn admin_catchall(
    csrf: String,
    domain: String,
    mode: String,
    #[server(default)] account: String,
    #[server(default)] text: String,
) -> Result<(), AppError> {
    use mailcore::admin::Catchall;
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let m = match mode.as_str() {
        "account" => Catchall::Account(account),
        "reject" => Catchall::Reject(text),
        _ => Catchall::None,
    };
    let r = core.admin_set_catchall(&actor, &domain, m).await;
    ssr::done(&domain, r.map(|_| "Catchall saved.".to_owned()))
}

#[server(prefix = "/api", endpoint = "admin_add_account")]
pub async fn admin_add_account(
    csrf: String,
    domain: String,
    address: String,
    password: String,
    #[server(default)] role: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = async {
        let a = core
            .admin_add_account(&actor, &address, &password, ssr::role_of(&role)?)
            .await?;
        Ok(format!("Account {} added.", a.address))
    }
    .await;
    ssr::done(&domain, r)
}

#[server(prefix = "/api", endpoint = "admin_password")]
pub async fn admin_password(
    csrf: String,
    domain: String,
    address: String,
    password: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin_set_password(&actor, &address, &password).await;
    ssr::done(&domain, r.map(|_| format!("Password of {address} reset.")))
}

#[server(prefix = "/api", endpoint = "admin_disable")]
pub async fn admin_disable(csrf: String, domain: String, address: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin_set_disabled(&actor, &address, true).await;
    ssr::done(&domain, r.map(|_| format!("{address} disabled.")))
}

#[server(prefix = "/api", endpoint = "admin_enable")]
pub async fn admin_enable(csrf: String, domain: String, address: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin_set_disabled(&actor, &address, false).await;
    ssr::done(&domain, r.map(|_| format!("{address} enabled.")))
}

#[server(prefix = "/api", endpoint = "admin_quota")]
pub async fn admin_quota(
    csrf: String,
    domain: String,
    address: String,
    quota_mb: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = async {
        let mb: i64 = quota_mb.trim().parse().map_err(|_| {
            mailcore::CoreError::invalid("the quota is a number of MB (0 for none)")
        })?;
        core.admin_set_quota(&actor, &address, mb.saturating_mul(1024 * 1024))
            .await?;
        Ok(format!("Quota of {address} set."))
    }
    .await;
    ssr::done(&domain, r)
}

#[server(prefix = "/api", endpoint = "admin_role")]
pub async fn admin_role(
    csrf: String,
    domain: String,
    address: String,
    role: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = async {
        core.admin_set_role(&actor, &address, ssr::role_of(&role)?)
            .await?;
        Ok(format!("{address} is now {role}."))
    }
    .await;
    ssr::done(&domain, r)
}

#[server(prefix = "/api", endpoint = "admin_remove_account")]
pub async fn admin_remove_account(
    csrf: String,
    domain: String,
    address: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin_remove_account(&actor, &address).await;
    ssr::done(&domain, r.map(|_| format!("Account {address} removed.")))
}

#[server(prefix = "/api", endpoint = "admin_add_alias")]
pub async fn admin_add_alias(
    csrf: String,
    domain: String,
    address: String,
    targets: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let list: Vec<String> = targets
        .split([',', ' ', '\n', ';'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    let r = core.admin_add_alias(&actor, &address, &list).await;
    ssr::done(&domain, r.map(|_| format!("Alias {address} saved.")))
}

#[server(prefix = "/api", endpoint = "admin_remove_alias")]
pub async fn admin_remove_alias(
    csrf: String,
    domain: String,
    address: String,
    #[server(default)] target: String,
) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let t = (!target.is_empty()).then_some(target.as_str());
    let r = core.admin_remove_alias(&actor, &address, t).await;
    ssr::done(&domain, r.map(|_| format!("Alias {address} removed.")))
}

#[server(prefix = "/api", endpoint = "admin_queue")]
pub async fn admin_queue() -> Result<Option<QueueData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core, core_error};
    let Some((s, actor)) = actor().await? else {
        return Ok(None);
    };
    let core = core()?;
    core.require_operator(&actor).map_err(refuse)?;
    let now = core.clock().now();
    let st = core.queue_stats().await.map_err(core_error)?;
    let dests = core.queue_destinations().await.map_err(core_error)?;
    let entries = core
        .queue_list(&mailcore::queue::QueueFilter {
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(core_error)?;
    let when = |t: i64| {
        if t <= now {
            "now".to_owned()
        } else {
            format!("in {}", age(t - now))
        }
    };
    let mut destinations: Vec<DestRow> = st
        .by_domain
        .iter()
        .map(|(d, n)| {
            let info = dests.iter().find(|x| &x.domain == d);
            DestRow {
                domain: d.clone(),
                waiting: *n,
                held: info.is_some_and(|x| x.held),
                concurrency: info.map(|x| x.concurrency).unwrap_or(5),
                ceiling: info.and_then(|x| x.ceiling),
                last_reply: info.and_then(|x| x.last_reply.clone()).unwrap_or_default(),
                next_attempt: info
                    .map(|x| when(x.next_attempt_at))
                    .unwrap_or_else(|| "now".into()),
            }
        })
        .collect();
    // Destinations with state but nothing waiting still show their limits.
    for d in &dests {
        if !destinations.iter().any(|x| x.domain == d.domain) {
            destinations.push(DestRow {
                domain: d.domain.clone(),
                waiting: 0,
                held: d.held,
                concurrency: d.concurrency,
                ceiling: d.ceiling,
                last_reply: d.last_reply.clone().unwrap_or_default(),
                next_attempt: when(d.next_attempt_at),
            });
        }
    }
    let spool = core.spool().map(|sp| {
        let st = sp.stats();
        SpoolRow {
            records: st.records,
            bytes: st.bytes,
            oldest: st
                .oldest
                .map(|t| format!("{} ago", age(now - t)))
                .unwrap_or_else(|| "none".into()),
            per_minute: st.ingested_last_minute,
            largest_batch: st.largest_batch,
        }
    });
    Ok(Some(QueueData {
        spool,
        csrf: s.csrf_token.clone(),
        total: st.total,
        held: st.held,
        by_lane: st.by_lane,
        oldest: st
            .oldest_created_at
            .map(|t| format!("{} ({} ago)", mailcore::view::short_date(t), age(now - t)))
            .unwrap_or_else(|| "none".into()),
        destinations,
        entries: entries
            .into_iter()
            .map(|e| EntryRow {
                id: e.id,
                rcpt: e.rcpt_to,
                from: if e.mail_from.is_empty() {
                    "<>".into()
                } else {
                    e.mail_from
                },
                lane: e.lane.to_string(),
                status: e.status.to_string(),
                attempts: e.attempts,
                age: age(now - e.created_at),
                next_attempt: when(e.next_attempt_at),
                last_error: e.last_error.unwrap_or_default(),
            })
            .collect(),
    }))
}

#[server(prefix = "/api", endpoint = "queue_action")]
pub async fn queue_action(
    csrf: String,
    op: String,
    #[server(default)] id: Option<i32>,
    #[server(default)] domain: String,
) -> Result<(), AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    use mailcore::admin::QueueOp;
    use mailcore::queue::Target;
    let actor = acting(&csrf).await?;
    let op = match op.as_str() {
        "retry" => QueueOp::Retry,
        "hold" => QueueOp::Hold,
        "release" => QueueOp::Release,
        "delete" => QueueOp::Delete,
        other => {
            return Err(crate::error::ssr::raise(AppError::Invalid(format!(
                "unknown action {other}"
            ))));
        }
    };
    let target = match id {
        Some(id) => Target::Entry(id),
        None => Target::Domain(domain),
    };
    let n = core()?
        .admin_queue_op(&actor, op, &target)
        .await
        .map_err(refuse)?;
    leptos_actix::redirect(&format!(
        "/admin/queue?ok={}",
        encode(&format!("{n} entries changed."))
    ));
    Ok(())
}

#[server(prefix = "/api", endpoint = "admin_log")]
pub async fn admin_log(q: String) -> Result<Option<Vec<LogRow>>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core, core_error};
    let Some((_, actor)) = actor().await? else {
        return Ok(None);
    };
    let core = core()?;
    core.require_operator(&actor).map_err(refuse)?;
    let rows = core
        .delivery_log(&mailcore::queue::LogQuery {
            text: Some(q),
            queue_id: None,
            limit: 200,
        })
        .await
        .map_err(core_error)?;
    Ok(Some(
        rows.into_iter()
            .map(|r| LogRow {
                at: mailcore::view::short_date(r.created_at),
                queue_id: r.queue_id,
                message_id: r.message_id,
                from: r.mail_from,
                rcpt: r.rcpt_to,
                outcome: r.outcome.to_string(),
                host: r.remote_host.unwrap_or_default(),
                tls: r.tls,
                reply: r.reply,
            })
            .collect(),
    ))
}

#[server(prefix = "/api", endpoint = "admin_audit")]
pub async fn admin_audit() -> Result<Option<Vec<AuditRow>>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core, core_error};
    let Some((_, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let rows = core()?.audit_log(&actor, 500).await.map_err(core_error)?;
    Ok(Some(
        rows.into_iter()
            .map(|e| AuditRow {
                at: mailcore::view::short_date(e.at),
                actor: e.actor,
                ip: e.ip,
                action: e.action,
                domain: e.domain,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}

fn notice() -> impl IntoView {
    let q = use_query_map();
    move || {
        q.with(|q| {
            let ok = q
                .get("ok")
                .map(|m| view! { <p class="notice" role="status" data-testid="ok">{m}</p> });
            let err = q
                .get("error")
                .map(|m| view! { <p class="error" role="alert" data-testid="error">{m}</p> });
            (ok, err)
        })
    }
}

fn denied(e: AppError) -> AnyView {
    view! {
        <main class="login">
            <p class="error" role="alert">{e.to_string()}</p>
            <a href="/">"Back to mail"</a>
        </main>
    }
    .into_any()
}

fn signed_out() -> AnyView {
    view! {
        <main class="login">
            <p>"You are not signed in."</p>
            <a href="/login">"Sign in"</a>
        </main>
    }
    .into_any()
}

#[component]
fn AdminShell(me: String, is_admin: bool, children: Children) -> impl IntoView {
    view! {
        <header class="topbar">
            <a class="brand" href="/admin">"Tern admin"</a>
            <nav class="adminnav" aria-label="Admin">
                <a href="/admin">"Domains"</a>
                {is_admin.then(|| view! {
                    <a href="/admin/queue">"Queue"</a>
                    <a href="/admin/log">"Delivery log"</a>
                })}
                <a href="/admin/audit">"Audit log"</a>
                <a href="/">"Mail"</a>
            </nav>
            {(!me.is_empty()).then(|| view! {
                <span class="who" data-testid="signed-in-as">{format!("Signed in as {me}")}</span>
            })}
        </header>
        <main class="admin" id="content">{children()}</main>
    }
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| admin_home());
    view! {
        <PageTitle text="Admin · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(h)) => {
                        let csrf = h.csrf.clone();
                        let csrf2 = h.csrf.clone();
                        view! {
                            <AdminShell me=h.me.clone() is_admin=h.is_admin>
                                <h1>"Domains"</h1>
                                {notice()}
                                <table class="grid" data-testid="domains">
                                    <thead><tr><th>"Domain"</th><th>"Accounts"</th><th>"Messages"</th><th>"Size"</th><th>"Unknown addresses"</th></tr></thead>
                                    <tbody>
                                        {h.domains.iter().map(|d| view! {
                                            <tr>
                                                <td><a href=format!("/admin/domain?d={}", encode(&d.name))>{d.name.clone()}</a></td>
                                                <td>{d.accounts}</td>
                                                <td>{d.messages}</td>
                                                <td>{d.size.clone()}</td>
                                                <td>{d.catchall.clone()}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                {h.is_admin.then(move || view! {
                                    <h2>"Add a domain"</h2>
                                    <form method="post" action="/api/admin_add_domain" class="inline">
                                        <input type="hidden" name="csrf" value=csrf.clone()/>
                                        <label for="newdomain">"Domain name "</label>
                                        <input id="newdomain" name="domain" type="text" required placeholder="example.org"/>
                                        <button type="submit">"Add domain"</button>
                                    </form>
                                    <h2>"Remove a domain"</h2>
                                    <p class="hint">"Removing a domain deletes its accounts, their mail and its aliases, and mail for it is refused from then on. A domain that still holds mail is only removed when you tick the confirmation."</p>
                                    <form method="post" action="/api/admin_remove_domain" class="inline">
                                        <input type="hidden" name="csrf" value=csrf2.clone()/>
                                        <label for="rmdomain">"Domain name "</label>
                                        <input id="rmdomain" name="domain" type="text" required/>
                                        <label><input type="checkbox" name="confirm" value="yes"/>" Yes, delete its mail too"</label>
                                        <button type="submit">"Remove domain"</button>
                                    </form>
                                })}
                            </AdminShell>
                        }.into_any()
                    }
                    Ok(None) => signed_out(),
                    Err(e) => denied(e),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn AdminDomainPage() -> impl IntoView {
    let q = use_query_map();
    let d = move || q.with(|q| q.get("d").unwrap_or_default());
    let data = Resource::new(d, admin_domain);
    view! {
        <PageTitle text="Domain · Tern admin"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(x)) => view! { <DomainView x=x/> }.into_any(),
                    Ok(None) => signed_out(),
                    Err(e) => denied(e),
                }
            })}
        </Suspense>
    }
}

/// A form posting one domain-page change to its server function, named by
/// endpoint (`admin_role` posts to `/api/admin_role`); works without
/// JavaScript.
#[component]
fn Act(
    csrf: String,
    action: &'static str,
    domain: String,
    #[prop(optional)] address: String,
    children: Children,
) -> impl IntoView {
    view! {
        <form method="post" action=format!("/api/{action}") class="inline">
            <input type="hidden" name="csrf" value=csrf/>
            <input type="hidden" name="domain" value=domain/>
            {(!address.is_empty()).then(|| view! { <input type="hidden" name="address" value=address.clone()/> })}
            {children()}
        </form>
    }
}

#[component]
fn DomainView(x: DomainData) -> impl IntoView {
    let dom = x.domain.clone();
    let csrf = x.csrf.clone();
    let mode = x.catchall_mode.clone();
    let acct_opts: Vec<String> = x
        .accounts
        .iter()
        .filter_map(|a| a.address.split_once('@').map(|(l, _)| l.to_owned()))
        .collect();
    let role_opts: &[&str] = if x.is_admin {
        &["user", "domain_admin", "admin"]
    } else {
        &["user", "domain_admin"]
    };
    let catchall_view = {
        let dom = dom.clone();
        let csrf = csrf.clone();
        view! {
            <section aria-labelledby="catchall-h">
                <h2 id="catchall-h">"Mail for unknown addresses (catchall)"</h2>
                <form method="post" action="/api/admin_catchall" class="catchall">
                    <input type="hidden" name="csrf" value=csrf.clone()/>
                    <input type="hidden" name="domain" value=dom.clone()/>
                    <label>
                        <input type="radio" name="mode" value="none" checked=mode == "none"/>
                        " None: mail to an address that does not exist is refused with "
                        <code>"550 5.1.1 No such user here"</code>
                        ", and the sender gets a bounce."
                    </label>
                    <label>
                        <input type="radio" name="mode" value="account" checked=mode == "account"/>
                        " Deliver it to an account: every address of "{dom.clone()}" that is not an account or alias lands in this inbox. "
                    </label>
                    <select name="account" aria-label="Catchall account">
                        {acct_opts.iter().map(|lp| view! {
                            <option value=lp.clone() selected=*lp == x.catchall_account>{format!("{lp}@{dom}")}</option>
                        }).collect_view()}
                    </select>
                    <label>
                        <input type="radio" name="mode" value="reject" checked=mode == "reject"/>
                        " Reject it with your own reply: the sender's server gets "
                        <code>"550 5.1.1"</code>
                        " with this text (plain ASCII, one line, up to 200 characters):"
                    </label>
                    <input type="text" name="text" value=x.catchall_text.clone() aria-label="Reject reply text" maxlength="200" placeholder="This address is no longer in use; write to info@…"/>
                    <button type="submit">"Save catchall"</button>
                </form>
            </section>
        }
    };
    let accounts_view = {
        let dom = dom.clone();
        let csrf = csrf.clone();
        view! {
            <section aria-labelledby="acc-h">
                <h2 id="acc-h">"Accounts"</h2>
                <table class="grid" data-testid="accounts">
                    <thead><tr><th>"Address"</th><th>"Role"</th><th>"Used"</th><th>"Quota (MB, 0 = none)"</th><th>"Status"</th><th>"Password"</th><th></th></tr></thead>
                    <tbody>
                        {x.accounts.clone().into_iter().map(|a| {
                            let (c, d, ad) = (csrf.clone(), dom.clone(), a.address.clone());
                            let role = a.role.clone();
                            let (l_role, l_quota, l_pw) = (
                                format!("Role of {}", a.address),
                                format!("Quota of {}", a.address),
                                format!("New password for {}", a.address),
                            );
                            view! {
                                <tr>
                                    <td>{a.address.clone()}</td>
                                    <td>
                                        <Act csrf=c.clone() action="admin_role" domain=d.clone() address=ad.clone()>
                                            <select name="role" aria-label=l_role>
                                                {role_opts.iter().map(move |r| view! { <option value=*r selected=*r == role>{*r}</option> }).collect_view()}
                                            </select>
                                            <button type="submit">"Set"</button>
                                        </Act>
                                    </td>
                                    <td>{a.used.clone()}</td>
                                    <td>
                                        <Act csrf=c.clone() action="admin_quota" domain=d.clone() address=ad.clone()>
                                            <input type="number" min="0" name="quota_mb" value=a.quota_mb aria-label=l_quota class="num"/>
                                            <button type="submit">"Set"</button>
                                        </Act>
                                    </td>
                                    <td>
                                        <Act csrf=c.clone() action=if a.disabled { "admin_enable" } else { "admin_disable" } domain=d.clone() address=ad.clone()>
                                            {if a.disabled { "Disabled " } else { "Active " }}
                                            <button type="submit">{if a.disabled { "Enable" } else { "Disable" }}</button>
                                        </Act>
                                    </td>
                                    <td>
                                        <Act csrf=c.clone() action="admin_password" domain=d.clone() address=ad.clone()>
                                            <input type="password" name="password" autocomplete="new-password" minlength="8" required aria-label=l_pw/>
                                            <button type="submit">"Reset"</button>
                                        </Act>
                                    </td>
                                    <td>
                                        <Act csrf=c action="admin_remove_account" domain=d address=ad>
                                            <button type="submit">"Remove"</button>
                                        </Act>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
                <h3>"Add an account"</h3>
                <Act csrf=csrf.clone() action="admin_add_account" domain=dom.clone()>
                    <input type="email" name="address" required placeholder=format!("name@{dom}") aria-label="New account address"/>
                    <input type="password" name="password" autocomplete="new-password" minlength="8" required aria-label="Password (at least 8 characters)" placeholder="password"/>
                    <select name="role" aria-label="Role">
                        {role_opts.iter().map(|r| view! { <option value=*r>{*r}</option> }).collect_view()}
                    </select>
                    <button type="submit">"Add account"</button>
                </Act>
            </section>
        }
    };
    let aliases_view = {
        let dom = dom.clone();
        let csrf = csrf.clone();
        view! {
            <section aria-labelledby="al-h">
                <h2 id="al-h">"Aliases"</h2>
                <p class="hint">"An alias delivers to every target: accounts here, or outside addresses, which get the mail forwarded."</p>
                <ul class="aliases">
                    {x.aliases.iter().map(|(a, t)| {
                        let (c, d, ad) = (csrf.clone(), dom.clone(), a.clone());
                        view! {
                            <li>
                                <strong>{a.clone()}</strong>" → "{t.join(", ")}
                                <Act csrf=c action="admin_remove_alias" domain=d address=ad>
                                    <button type="submit">"Remove"</button>
                                </Act>
                            </li>
                        }
                    }).collect_view()}
                </ul>
                <Act csrf=csrf.clone() action="admin_add_alias" domain=dom.clone()>
                    <input type="email" name="address" required placeholder=format!("sales@{dom}") aria-label="Alias address"/>
                    <input type="text" name="targets" required placeholder="a@example.org, b@example.org" aria-label="Targets, separated by commas"/>
                    <button type="submit">"Add alias"</button>
                </Act>
            </section>
        }
    };
    let dns_view = {
        let dom = dom.clone();
        view! {
            <section aria-labelledby="dns-h">
                <h2 id="dns-h">"DNS records to publish"</h2>
                <p class="hint">"Copy these into the zone of "{dom.clone()}"."</p>
                <pre class="dns" data-testid="dns">
                    {x.dns.iter().map(|r| format!("; {}\n{} IN {} {}\n", r.purpose, r.name, r.rtype, r.value)).collect::<String>()}
                </pre>
            </section>
        }
    };
    view! {
        <AdminShell me=x.me.clone() is_admin=x.is_admin>
            <h1>{dom.clone()}</h1>
            {notice()}
            {catchall_view}
            {accounts_view}
            {aliases_view}
            {dns_view}
        </AdminShell>
    }
}

#[component]
pub fn AdminQueuePage() -> impl IntoView {
    let data = Resource::new(|| (), |_| admin_queue());
    view! {
        <PageTitle text="Queue · Tern admin"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(q)) => view! { <QueueView q=q/> }.into_any(),
                    Ok(None) => signed_out(),
                    Err(e) => denied(e),
                }
            })}
        </Suspense>
    }
}

#[component]
fn QAct(
    csrf: String,
    op: &'static str,
    #[prop(optional)] id: Option<i32>,
    #[prop(optional)] domain: String,
    label: &'static str,
) -> impl IntoView {
    view! {
        <form method="post" action="/api/queue_action" class="inline">
            <input type="hidden" name="csrf" value=csrf/>
            <input type="hidden" name="op" value=op/>
            {id.map(|i| view! { <input type="hidden" name="id" value=i/> })}
            {(!domain.is_empty()).then(|| view! { <input type="hidden" name="domain" value=domain.clone()/> })}
            <button type="submit">{label}</button>
        </form>
    }
}

#[component]
fn QueueView(q: QueueData) -> impl IntoView {
    let csrf = q.csrf.clone();
    view! {
        <AdminShell me=String::new() is_admin=true>
            <h1>"Queue"</h1>
            {notice()}
            <dl class="stats" data-testid="queue-stats">
                <dt>"Waiting"</dt><dd data-testid="waiting">{q.total}</dd>
                <dt>"Held"</dt><dd>{q.held}</dd>
                {q.by_lane.iter().map(|(l, n)| view! { <dt>{format!("{l} lane")}</dt><dd data-testid=format!("lane-{l}")>{*n}</dd> }).collect_view()}
                <dt>"Oldest entry"</dt><dd data-testid="oldest">{q.oldest.clone()}</dd>
            </dl>
            {q.spool.clone().map(|sp| view! {
                <h2>"Inbound spool (this node)"</h2>
                <p class="hint">"Mail accepted with 250 and not yet in the mail store. It drains by itself; it grows while the store is down."</p>
                <dl class="stats" data-testid="spool-stats">
                    <dt>"Waiting"</dt><dd data-testid="spool-records">{sp.records}</dd>
                    <dt>"Bytes"</dt><dd>{sp.bytes}</dd>
                    <dt>"Oldest"</dt><dd>{sp.oldest}</dd>
                    <dt>"Stored in the last minute"</dt><dd data-testid="spool-rate">{sp.per_minute}</dd>
                    <dt>"Largest group commit"</dt><dd>{sp.largest_batch}</dd>
                </dl>
            })}
            <h2>"Destinations"</h2>
            <table class="grid" data-testid="destinations">
                <thead><tr><th>"Destination"</th><th>"Waiting"</th><th>"Connections"</th><th>"Next attempt"</th><th>"Last reply"</th><th></th></tr></thead>
                <tbody>
                    {q.destinations.iter().map(|d| {
                        let c = csrf.clone();
                        view! {
                            <tr>
                                <td>{d.domain.clone()}{d.held.then_some(" (held)")}</td>
                                <td>{d.waiting}</td>
                                <td>{d.concurrency}{d.ceiling.map(|c| format!(" (ceiling {c})"))}</td>
                                <td>{d.next_attempt.clone()}</td>
                                <td class="reply">{d.last_reply.clone()}</td>
                                <td>
                                    <QAct csrf=c.clone() op="retry" domain=d.domain.clone() label="Retry now"/>
                                    {if d.held {
                                        view! { <QAct csrf=c.clone() op="release" domain=d.domain.clone() label="Release"/> }.into_any()
                                    } else {
                                        view! { <QAct csrf=c.clone() op="hold" domain=d.domain.clone() label="Hold"/> }.into_any()
                                    }}
                                    <QAct csrf=c op="delete" domain=d.domain.clone() label="Delete all"/>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h2>"Entries"</h2>
            <table class="grid" data-testid="entries">
                <thead><tr><th>"#"</th><th>"Recipient"</th><th>"Sender"</th><th>"Lane"</th><th>"Attempts"</th><th>"Age"</th><th>"Next"</th><th>"Last error"</th><th></th></tr></thead>
                <tbody>
                    {q.entries.iter().map(|e| {
                        let c = csrf.clone();
                        view! {
                            <tr>
                                <td>{e.id}</td>
                                <td>{e.rcpt.clone()}</td>
                                <td>{e.from.clone()}</td>
                                <td>{e.lane.clone()}{(e.status != "queued").then(|| format!(" ({})", e.status))}</td>
                                <td>{e.attempts}</td>
                                <td>{e.age.clone()}</td>
                                <td>{e.next_attempt.clone()}</td>
                                <td class="reply">{e.last_error.clone()}</td>
                                <td>
                                    <QAct csrf=c.clone() op="retry" id=e.id label="Retry"/>
                                    {if e.status == "held" {
                                        view! { <QAct csrf=c.clone() op="release" id=e.id label="Release"/> }.into_any()
                                    } else {
                                        view! { <QAct csrf=c.clone() op="hold" id=e.id label="Hold"/> }.into_any()
                                    }}
                                    <QAct csrf=c op="delete" id=e.id label="Delete"/>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </AdminShell>
    }
}

#[component]
pub fn AdminLogPage() -> impl IntoView {
    let q = use_query_map();
    let text = move || q.with(|q| q.get("q").unwrap_or_default());
    let data = Resource::new(text, admin_log);
    view! {
        <PageTitle text="Delivery log · Tern admin"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(rows)) => view! {
                        <AdminShell me=String::new() is_admin=true>
                            <h1>"Delivery log"</h1>
                            <form method="get" action="/admin/log" class="inline" role="search">
                                <input type="search" name="q" value=text() placeholder="message-id, sender or recipient" aria-label="Search the delivery log"/>
                                <button type="submit">"Search"</button>
                            </form>
                            <table class="grid" data-testid="log">
                                <thead><tr><th>"When (UTC)"</th><th>"Queue #"</th><th>"Message-ID"</th><th>"From"</th><th>"To"</th><th>"Outcome"</th><th>"Host"</th><th>"TLS"</th><th>"Reply"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|r| view! {
                                        <tr>
                                            <td>{r.at}</td><td>{r.queue_id}</td><td>{r.message_id}</td><td>{r.from}</td><td>{r.rcpt}</td>
                                            <td>{r.outcome}</td><td>{r.host}</td><td>{if r.tls { "yes" } else { "no" }}</td><td class="reply">{r.reply}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </AdminShell>
                    }.into_any(),
                    Ok(None) => signed_out(),
                    Err(e) => denied(e),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn AdminAuditPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| admin_audit());
    view! {
        <PageTitle text="Audit log · Tern admin"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(rows)) => view! {
                        <AdminShell me=String::new() is_admin=false>
                            <h1>"Audit log"</h1>
                            <table class="grid" data-testid="audit">
                                <thead><tr><th>"When (UTC)"</th><th>"Who"</th><th>"From IP"</th><th>"Action"</th><th>"Domain"</th><th>"Target"</th><th>"Detail"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|r| view! {
                                        <tr>
                                            <td>{r.at}</td><td>{r.actor}</td><td>{r.ip}</td><td>{r.action}</td>
                                            <td>{r.domain}</td><td>{r.target}</td><td>{r.detail}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </AdminShell>
                    }.into_any(),
                    Ok(None) => signed_out(),
                    Err(e) => denied(e),
                }
            })}
        </Suspense>
    }
}
