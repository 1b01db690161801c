//! `/settings`: the addresses the user sends as (their own, and aliases
//! that deliver to them), each with the display name on its From: line and
//! the signature the compose form starts with (`mailcore::identities`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::head::PageTitle;
use crate::mail::Frame;
use crate::pages::{Shell, problem, q};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRow {
    pub address: String,
    pub name: String,
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsPageData {
    pub frame: Frame,
    pub identities: Vec<IdentityRow>,
    /// Minutes from UTC, or None to follow the browser.
    pub zone: Option<i32>,
}

/// The UTC offsets offered: every half hour, and the three quarter-hour
/// ones in use (Nepal, Chatham, Eucla).
fn offsets() -> Vec<i32> {
    let mut v: Vec<i32> = (-24..=28).map(|h| h * 30).collect();
    v.extend([345, 525, 765]);
    v.sort_unstable();
    v
}

fn offset_label(m: i32) -> String {
    if m == 0 {
        return "UTC".into();
    }
    let sign = if m < 0 { '-' } else { '+' };
    let a = m.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", a / 60, a % 60)
}

#[server(prefix = "/api", endpoint = "settings_data")]
pub async fn settings_data() -> Result<Option<SettingsPageData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let identities = core()?
        .identities(&s.account)
        .await
        .map_err(core_error)?
        .into_iter()
        .map(|i| IdentityRow {
            address: i.address,
            name: i.name,
            signature: i.signature,
        })
        .collect();
    let zone = core()?.zone_pref(s.account.id).await.map_err(core_error)?;
    Ok(Some(SettingsPageData {
        frame: crate::mail::ssr::frame(&s).await?,
        identities,
        zone,
    }))
}

#[server(prefix = "/api", endpoint = "save_identity")]
pub async fn save_identity(
    csrf: String,
    address: String,
    #[server(default)] name: String,
    #[server(default)] signature: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::{core, core_error};
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    match core()?
        .set_identity(&s.account, &address, &name, &signature)
        .await
    {
        Ok(()) => leptos_actix::redirect("/settings?saved=1"),
        Err(mailcore::CoreError::Invalid(why)) => leptos_actix::redirect(&format!(
            "/settings?error={}",
            crate::mail::encode(&format!("Not saved: {why}."))
        )),
        Err(e) => return Err(core_error(e)),
    }
    Ok(())
}

/// The time zone dates are shown in: `browser`, or minutes from UTC.
#[server(prefix = "/api", endpoint = "save_zone")]
pub async fn save_zone(csrf: String, zone: String) -> Result<(), AppError> {
    use crate::auth::ssr::{core, core_error};
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let offset =
        match zone.as_str() {
            "browser" => None,
            m => Some(m.parse::<i32>().map_err(|_| {
                crate::error::ssr::raise(AppError::Invalid("not a time zone".into()))
            })?),
        };
    core()?
        .set_zone_pref(s.account.id, offset)
        .await
        .map_err(core_error)?;
    leptos_actix::redirect("/settings?saved=1");
    Ok(())
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let act = ServerAction::<SaveIdentity>::new();
    let zone_act = ServerAction::<SaveZone>::new();
    let saved = q("saved");
    let error = q("error");
    let data = Resource::new(
        move || (act.version().get(), zone_act.version().get()),
        |_| settings_data(),
    );
    view! {
        <PageTitle text="Settings · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let csrf = d.frame.csrf.clone();
                        let zone_csrf = csrf.clone();
                        let chosen = d.zone;
                        let err = error();
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"Settings"</h1>
                                {(saved() == "1").then(|| view! { <p class="ok" role="status" data-testid="ok">"Saved."</p> })}
                                {(!err.is_empty()).then(|| view! { <p class="error" role="alert">{err.clone()}</p> })}
                                <h2>"Time zone"</h2>
                                <ActionForm action=zone_act attr:class="inline">
                                    <input type="hidden" name="csrf" value=zone_csrf/>
                                    <label for="zone">"Show times in "</label>
                                    <select id="zone" name="zone">
                                        <option value="browser" selected=chosen.is_none()>"my browser's time zone (UTC without JavaScript)"</option>
                                        {offsets().into_iter().map(|m| view! {
                                            <option value=m.to_string() selected=chosen == Some(m)>{offset_label(m)}</option>
                                        }).collect_view()}
                                    </select>
                                    <button type="submit">"Save"</button>
                                </ActionForm>
                                <h2>"Addresses you send as"</h2>
                                <p class="hint">"Your own address and the aliases that deliver to you. Replies go out as the address a message was sent to, with its signature."</p>
                                {d.identities.into_iter().map(|i| {
                                    let csrf = csrf.clone();
                                    let (name_id, sig_id) = (format!("name-{}", i.address), format!("sig-{}", i.address));
                                    view! {
                                        <section class="identity" data-testid="identity">
                                            <h3>{i.address.clone()}</h3>
                                            <ActionForm action=act>
                                                <input type="hidden" name="csrf" value=csrf/>
                                                <input type="hidden" name="address" value=i.address.clone()/>
                                                <label for=name_id.clone()>"Name"</label>
                                                <input id=name_id name="name" type="text" maxlength="200" value=i.name.clone()/>
                                                <label for=sig_id.clone()>"Signature"</label>
                                                <textarea id=sig_id name="signature" rows="4">{i.signature.clone()}</textarea>
                                                <button type="submit">"Save"</button>
                                            </ActionForm>
                                        </section>
                                    }
                                }).collect_view()}
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
