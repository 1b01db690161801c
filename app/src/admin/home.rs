//! `/admin`: the domains this actor manages, and adding or removing one.

use super::*;

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

#[server(prefix = "/api", endpoint = "admin_home")]
pub async fn admin_home() -> Result<Option<HomeData>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    let Some((s, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let domains = core()?.admin(&actor).domains().await.map_err(refuse)?;
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

#[server(prefix = "/api", endpoint = "admin_add_domain")]
pub async fn admin_add_domain(csrf: String, domain: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.admin(&actor).add_domain(&domain).await;
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
        .admin(&actor)
        .remove_domain(&domain, confirm == "yes")
        .await;
    // Gone: back to the list of domains.
    let back = if r.is_ok() { "" } else { domain.as_str() };
    ssr::done(back, r.map(|_| format!("Domain {domain} removed.")))
}

/// A note on the public status page (`/status`): on the incident open
/// now, or on its own. Server admins only.
#[server(prefix = "/api", endpoint = "admin_status_note")]
pub async fn admin_status_note(csrf: String, note: String) -> Result<(), AppError> {
    let (core, actor) = ssr::admin_acting(&csrf).await?;
    let r = core.status_add_note(&actor, &note).await;
    ssr::done(
        "",
        r.map(|_| "Note added to the status page; it shows there within seconds.".to_owned()),
    )
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
                        let csrf3 = h.csrf.clone();
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
                                    <h2>"Status page"</h2>
                                    <p class="hint">"What Tern detects shows on "<a href="/status">"/status"</a>" by itself. A note you add here goes on the incident open now, or stands on its own (planned work); it is public, so write it for your users."</p>
                                    <form method="post" action="/api/admin_status_note" data-testid="status-note">
                                        <input type="hidden" name="csrf" value=csrf3.clone()/>
                                        <label for="statusnote">"Note "</label>
                                        <textarea id="statusnote" name="note" rows="3" cols="60" required maxlength="2000"></textarea>
                                        <button type="submit">"Add to the status page"</button>
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
