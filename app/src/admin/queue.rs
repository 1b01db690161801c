//! `/admin/queue`: the outbound queue for operators (destinations,
//! entries, the spool), with retry, hold, release and delete.

use super::*;

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
    /// Every node's heartbeat (one row on a single node).
    pub nodes: Vec<NodeRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    pub name: String,
    pub up: bool,
    pub version: String,
    pub uptime: String,
    pub last_seen: String,
    pub spool: i64,
    pub in_flight: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRow {
    pub records: u64,
    pub bytes: u64,
    pub oldest: String,
    pub per_minute: u64,
    pub largest_batch: u64,
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
    let st = core.queue().stats().await.map_err(core_error)?;
    let dests = core.queue().destinations().await.map_err(core_error)?;
    let entries = core
        .queue()
        .list(&mailcore::queue::QueueFilter {
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
    let nodes = core
        .cluster_nodes()
        .await
        .map_err(core_error)?
        .into_iter()
        .map(|n| NodeRow {
            up: n.is_up(now),
            uptime: age(n.last_seen - n.started_at),
            last_seen: format!("{} ago", age(now - n.last_seen)),
            name: n.name,
            version: n.version,
            spool: n.spool_depth,
            in_flight: n.queue_in_flight,
        })
        .collect();
    Ok(Some(QueueData {
        nodes,
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
                id: e.id.get(),
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

/// What an operator's queue button does: the form's `op`, read into this
/// type before the server function runs (an unknown one is refused there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueCommand {
    Retry,
    Hold,
    Release,
    Delete,
}

impl QueueCommand {
    /// The form value, as serde reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueCommand::Retry => "retry",
            QueueCommand::Hold => "hold",
            QueueCommand::Release => "release",
            QueueCommand::Delete => "delete",
        }
    }
}

#[server(prefix = "/api", endpoint = "queue_action")]
pub async fn queue_action(
    csrf: String,
    op: QueueCommand,
    #[server(default)] id: Option<i32>,
    #[server(default)] domain: String,
) -> Result<(), AppError> {
    use self::ssr::*;
    use crate::auth::ssr::core;
    use mailcore::admin::QueueOp;
    use mailcore::queue::Target;
    let actor = acting(&csrf).await?;
    let op = match op {
        QueueCommand::Retry => QueueOp::Retry,
        QueueCommand::Hold => QueueOp::Hold,
        QueueCommand::Release => QueueOp::Release,
        QueueCommand::Delete => QueueOp::Delete,
    };
    let target = match id {
        Some(id) => Target::Entry(mailcore::QueueId(id)),
        None => Target::Domain(domain),
    };
    let n = core()?
        .admin(&actor)
        .queue_op(op, &target)
        .await
        .map_err(refuse)?;
    leptos_actix::redirect(&format!(
        "/admin/queue?ok={}",
        encode(&format!("{n} entries changed."))
    ));
    Ok(())
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
    op: QueueCommand,
    #[prop(optional)] id: Option<i32>,
    #[prop(optional)] domain: String,
    label: &'static str,
) -> impl IntoView {
    view! {
        <form method="post" action="/api/queue_action" class="inline">
            <input type="hidden" name="csrf" value=csrf/>
            <input type="hidden" name="op" value=op.as_str()/>
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
            <h2>"Nodes"</h2>
            <table class="grid" data-testid="nodes">
                <thead><tr><th>"Node"</th><th>"State"</th><th>"Version"</th><th>"Up for"</th><th>"Last heartbeat"</th><th>"Spool"</th><th>"Sending now"</th></tr></thead>
                <tbody>
                    {q.nodes.iter().map(|n| view! {
                        <tr>
                            <td>{n.name.clone()}</td>
                            <td>{if n.up { "up" } else { "gone" }}</td>
                            <td>{n.version.clone()}</td>
                            <td>{n.uptime.clone()}</td>
                            <td>{n.last_seen.clone()}</td>
                            <td>{n.spool}</td>
                            <td>{n.in_flight}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
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
                                    <QAct csrf=c.clone() op=QueueCommand::Retry domain=d.domain.clone() label="Retry now"/>
                                    {if d.held {
                                        view! { <QAct csrf=c.clone() op=QueueCommand::Release domain=d.domain.clone() label="Release"/> }.into_any()
                                    } else {
                                        view! { <QAct csrf=c.clone() op=QueueCommand::Hold domain=d.domain.clone() label="Hold"/> }.into_any()
                                    }}
                                    <QAct csrf=c op=QueueCommand::Delete domain=d.domain.clone() label="Delete all"/>
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
                                    <QAct csrf=c.clone() op=QueueCommand::Retry id=e.id label="Retry"/>
                                    {if e.status == "held" {
                                        view! { <QAct csrf=c.clone() op=QueueCommand::Release id=e.id label="Release"/> }.into_any()
                                    } else {
                                        view! { <QAct csrf=c.clone() op=QueueCommand::Hold id=e.id label="Hold"/> }.into_any()
                                    }}
                                    <QAct csrf=c op=QueueCommand::Delete id=e.id label="Delete"/>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </AdminShell>
    }
}
