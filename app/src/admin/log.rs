//! `/admin/log`: the delivery log, one row per recipient per attempt.

use super::*;

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
        .queue()
        .log(&mailcore::queue::LogQuery {
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
                queue_id: r.queue_id.get(),
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
