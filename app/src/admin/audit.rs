//! `/admin/audit`: who changed what in the admin area, when, from where.

use super::*;

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

#[server(prefix = "/api", endpoint = "admin_audit")]
pub async fn admin_audit() -> Result<Option<Vec<AuditRow>>, AppError> {
    use self::ssr::*;
    use crate::auth::ssr::{core, core_error};
    let Some((_, actor)) = actor().await? else {
        return Ok(None);
    };
    check(&actor)?;
    let rows = core()?
        .admin(&actor)
        .audit_log(500)
        .await
        .map_err(core_error)?;
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
