//! `/admin/domain?d=`: one domain's accounts, aliases, catchall and DNS
//! records. Each change is its own server function behind its own form,
//! taking only what it needs; the core decides whether this actor may
//! make it, and each answers with a redirect to the page it came from and
//! a line saying what happened (or why not).

use super::*;

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
    /// As a zone file line (long TXT values split in 255-byte strings).
    pub line: String,
    /// What DNS publishes now (`ok`, `missing`, `differs: ...`), when the
    /// page was asked to check.
    pub state: Option<String>,
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

#[server(prefix = "/api", endpoint = "admin_domain")]
pub async fn admin_domain(
    d: String,
    #[server(default)] live: bool,
) -> Result<Option<DomainData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    use mailcore::admin::Catchall;
    let Some((s, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let core = core()?;
    let sum = core.admin(&actor).domain(&d).await.map_err(refuse)?;
    let accounts = core.admin(&actor).accounts(&d).await.map_err(refuse)?;
    let aliases = core.admin(&actor).aliases(&d).await.map_err(refuse)?;
    let settings = use_context::<crate::WebSettings>().unwrap_or_default();
    let host = if settings.hostname.is_empty() {
        "mail.example".to_owned()
    } else {
        settings.hostname.clone()
    };
    let publish = mailcore::dns_records::Publish {
        mta_sts_policy: settings.mta_sts_policy.clone(),
        tlsa: settings.tlsa.clone(),
    };
    let name = sum.domain.name.clone();
    let (mode, acct, text) = match Catchall::of(&sum.domain) {
        Catchall::None => ("none", String::new(), String::new()),
        Catchall::Account(lp) => ("account", lp, String::new()),
        Catchall::Reject(t) => ("reject", String::new(), t),
    };
    // The same list as `tern domain dns`, DKIM keys included.
    let keys = core
        .admin(&actor)
        .dkim_keys(&name)
        .await
        .map_err(crate::auth::ssr::core_error)?;
    let checker = live
        .then(use_context::<std::sync::Arc<dyn mailcore::dns_records::DnsChecker>>)
        .flatten();
    let mut dns = Vec::new();
    for r in mailcore::dns_records::records(&host, &name, &keys, &publish) {
        let state = match &checker {
            Some(c) => Some(c.check(&r).await),
            None => None,
        };
        dns.push(DnsRecord {
            purpose: r.why.clone(),
            line: r.zone_line(),
            state,
        });
    }
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
    let r = core.admin(&actor).set_catchall(&domain, m).await;
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
            .admin(&actor)
            .add_account(&address, &password, ssr::role_of(&role)?)
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
    let r = core.admin(&actor).set_password(&address, &password).await;
    ssr::done(&domain, r.map(|_| format!("Password of {address} reset.")))
}

#[server(prefix = "/api", endpoint = "admin_disable")]
pub async fn admin_disable(csrf: String, domain: String, address: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin(&actor).set_disabled(&address, true).await;
    ssr::done(&domain, r.map(|_| format!("{address} disabled.")))
}

/// New DKIM keys for the domain; the old ones stop signing and stay
/// listed (publish both) for the grace period.
#[server(prefix = "/api", endpoint = "admin_dkim_rotate")]
pub async fn admin_dkim_rotate(csrf: String, domain: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin(&actor).dkim_rotate(&domain).await;
    ssr::done(
        &domain,
        r.map(|keys| {
            let new: Vec<String> = keys
                .iter()
                .filter(|k| k.signing())
                .map(|k| k.selector.clone())
                .collect();
            format!(
                "New DKIM keys {}: publish their records below; the old ones stay listed for 7 days.",
                new.join(" and ")
            )
        }),
    )
}

#[server(prefix = "/api", endpoint = "admin_enable")]
pub async fn admin_enable(csrf: String, domain: String, address: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin(&actor).set_disabled(&address, false).await;
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
        core.admin(&actor)
            .set_quota(&address, mb.saturating_mul(1024 * 1024))
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
        core.admin(&actor)
            .set_role(&address, ssr::role_of(&role)?)
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
    let r = core.admin(&actor).remove_account(&address).await;
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
    let r = core.admin(&actor).add_alias(&address, &list).await;
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
    let r = core.admin(&actor).remove_alias(&address, t).await;
    ssr::done(&domain, r.map(|_| format!("Alias {address} removed.")))
}

#[component]
pub fn AdminDomainPage() -> impl IntoView {
    let q = use_query_map();
    let d = move || {
        q.with(|q| {
            (
                q.get("d").unwrap_or_default(),
                q.get("check").is_some_and(|c| c == "1"),
            )
        })
    };
    let data = Resource::new(d, |(d, check)| admin_domain(d, check));
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
                <p class="hint">"Copy these into the zone of "{dom.clone()}". "
                    <a href=format!("/admin/domain?d={}&check=1", encode(&dom)) data-testid="dns-check">"Check what DNS publishes now"</a>
                </p>
                <pre class="dns" data-testid="dns">
                    {x.dns.iter().map(|r| match &r.state {
                        Some(s) => format!("; {} [{s}]\n{}\n", r.purpose, r.line),
                        None => format!("; {}\n{}\n", r.purpose, r.line),
                    }).collect::<String>()}
                </pre>
                <Act csrf=csrf.clone() action="admin_dkim_rotate" domain=dom.clone()>
                    <button type="submit" data-testid="dkim-rotate">"Rotate DKIM keys"</button>
                </Act>
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
