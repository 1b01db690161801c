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

mod audit;
mod domain;
mod home;
mod log;
mod queue;

pub use audit::*;
pub use domain::*;
pub use home::*;
pub use log::*;
pub use queue::*;

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

// The domain pages' changes: one server function per change, each behind
// its own form, taking only what it needs. The core decides whether this
// actor may make it; each answers with a redirect to the page it came from
// and a line saying what happened (or why not).

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
