//! `/scheduled`: mail waiting to be sent, kept on the server
//! (`mailcore::scheduled`): the webmail's "send later", messages in their
//! undo window, and submission clients' FUTURERELEASE. Each can be sent
//! now, cancelled (back to Drafts) or edited (back to the compose form).
//! The undo after a send is the same as "edit" on the one message.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::head::PageTitle;
use crate::mail::Frame;
use crate::pages::{Shell, problem, q};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRow {
    pub id: i32,
    pub subject: String,
    pub recipients: String,
    /// `2026-12-06 18:00 UTC+01:00`, in the reader's zone.
    pub when: String,
    /// "send later", "undo window" or "mail app".
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledData {
    pub frame: Frame,
    pub rows: Vec<ScheduledRow>,
}

#[server(prefix = "/api", endpoint = "scheduled_list")]
pub async fn scheduled_list() -> Result<Option<ScheduledData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    use mailcore::scheduled::ScheduleKind;
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let zone = crate::mail::ssr::zone(&s).await?;
    let rows = core()?
        .scheduled(s.account.id)
        .await
        .map_err(core_error)?
        .into_iter()
        .map(|m| ScheduledRow {
            id: m.id,
            subject: m.subject,
            recipients: m.recipients.join(", "),
            when: format!("{} {}", zone.date(m.send_at), zone.label()),
            kind: match m.kind {
                ScheduleKind::Later => "send later",
                ScheduleKind::Undo => "undo window",
                ScheduleKind::Smtp => "mail app",
            }
            .into(),
        })
        .collect();
    Ok(Some(ScheduledData {
        frame: crate::mail::ssr::frame(&s).await?,
        rows,
    }))
}

/// What the buttons of a scheduled message do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduledOp {
    /// Send it at once.
    Now,
    /// Take it back to Drafts.
    Cancel,
    /// Take it back into the compose form.
    Edit,
}

/// Acts on one scheduled message. `Edit` (which is also the undo after a
/// send) opens the compose form on the message, attachments and Bcc
/// included; when it has already gone out, says it is too late.
#[server(prefix = "/api", endpoint = "scheduled_action")]
pub async fn scheduled_action(csrf: String, id: i32, op: ScheduledOp) -> Result<(), AppError> {
    use crate::auth::ssr::{core, core_error};
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    if op == ScheduledOp::Now {
        let ok = core
            .send_scheduled_now(s.account.id, id)
            .await
            .map_err(core_error)?;
        leptos_actix::redirect(if ok {
            "/scheduled?done=now"
        } else {
            "/scheduled?done=gone"
        });
        return Ok(());
    }
    let Some(draft) = core
        .cancel_scheduled(s.account.id, id)
        .await
        .map_err(core_error)?
    else {
        leptos_actix::redirect("/mail?f=Sent&late=1");
        return Ok(());
    };
    let drafts = core
        .mail(s.account.id)
        .mailbox("Drafts")
        .await
        .map_err(core_error)?
        .ok_or_else(|| core_error(mailcore::CoreError::NotFound("Drafts".into())))?;
    let uid = drafts
        .append(
            &draft,
            mailcore::Flags::DRAFT.union(mailcore::Flags::SEEN),
            None,
        )
        .await
        .map_err(core_error)?;
    leptos_actix::redirect(&match op {
        ScheduledOp::Edit => format!("/compose?draft={uid}&undone=1"),
        _ => "/scheduled?done=cancelled".to_owned(),
    });
    Ok(())
}

#[component]
pub fn ScheduledPage() -> impl IntoView {
    let act = ServerAction::<ScheduledAction>::new();
    let done = q("done");
    let data = Resource::new(move || act.version().get(), |_| scheduled_list());
    view! {
        <PageTitle text="Scheduled · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let csrf = d.frame.csrf.clone();
                        let note = match done().as_str() {
                            "now" => Some("Sending now."),
                            "cancelled" => Some("Cancelled: the message is in Drafts."),
                            "gone" => Some("That message has already been sent."),
                            _ => None,
                        };
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"Scheduled"</h1>
                                {note.map(|n| view! { <p class="ok" role="status" data-testid="ok">{n}</p> })}
                                {if d.rows.is_empty() {
                                    view! { <p class="empty">"Nothing is waiting to be sent."</p> }.into_any()
                                } else {
                                    view! {
                                        <table class="scheduled" data-testid="scheduled">
                                            <thead><tr><th>"Subject"</th><th>"To"</th><th>"Sends at"</th><th>"Kind"</th><th></th></tr></thead>
                                            <tbody>
                                                {d.rows.iter().map(|r| {
                                                    let id = r.id.to_string();
                                                    let (c1, c2, c3) = (csrf.clone(), csrf.clone(), csrf.clone());
                                                    let (i1, i2, i3) = (id.clone(), id.clone(), id);
                                                    view! {
                                                        <tr>
                                                            <td>{r.subject.clone()}</td>
                                                            <td>{r.recipients.clone()}</td>
                                                            <td>{r.when.clone()}</td>
                                                            <td>{r.kind.clone()}</td>
                                                            <td class="actions">
                                                                <ActionForm action=act attr:class="inline">
                                                                    <input type="hidden" name="csrf" value=c1/>
                                                                    <input type="hidden" name="id" value=i1/>
                                                                    <button type="submit" name="op" value="now">"Send now"</button>
                                                                </ActionForm>
                                                                <ActionForm action=act attr:class="inline">
                                                                    <input type="hidden" name="csrf" value=c2/>
                                                                    <input type="hidden" name="id" value=i2/>
                                                                    <button type="submit" name="op" value="edit">"Edit"</button>
                                                                </ActionForm>
                                                                <ActionForm action=act attr:class="inline">
                                                                    <input type="hidden" name="csrf" value=c3/>
                                                                    <input type="hidden" name="id" value=i3/>
                                                                    <button type="submit" name="op" value="cancel">"Cancel"</button>
                                                                </ActionForm>
                                                            </td>
                                                        </tr>
                                                    }
                                                }).collect_view()}
                                            </tbody>
                                        </table>
                                    }.into_any()
                                }}
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}
