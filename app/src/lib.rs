//! Tern's browser UI: Leptos components rendered on the server (feature
//! `ssr`) and hydrated in the browser (feature `hydrate`).
//!
//! Every page works as plain HTML forms with JavaScript off: actions are
//! `ActionForm`s over server functions, and each server function ends in a
//! redirect, so a form post without JavaScript lands on a rendered page.
//! Server-only code lives in `ssr` modules; the wasm build never links the
//! mail core.

pub mod admin;
pub mod auth;
#[cfg(feature = "hydrate")]
mod autosave;
pub mod error;
pub mod head;
#[cfg(feature = "hydrate")]
mod live;
pub mod mail;
#[cfg(feature = "ssr")]
pub mod mailhtml;
pub mod outside;
pub mod pages;
pub mod rules;
pub mod scheduled;
pub mod settings;
#[cfg(feature = "hydrate")]
mod shortcuts;

use leptos::prelude::*;
use leptos_meta::{MetaTags, provide_meta_context};

use crate::head::{PageTitle, provide_page_csp};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use crate::admin::{AdminAuditPage, AdminDomainPage, AdminLogPage, AdminPage, AdminQueuePage};

use crate::outside::{OutsideAddPage, OutsideBoxPage, OutsidePage, OutsideReadPage, UnifiedPage};
use crate::pages::{ComposePage, FoldersPage, LoginPage, MailPage, NotFound, ReadPage, ThreadPage};

/// What the pages and the compose handler need from the server config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebSettings {
    pub hostname: String,
    /// `smtp.max_message_size`: the webmail sends through the same rules.
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub autosave_secs: u64,
    /// `smtp.sender_checks`: without them, an `Authentication-Results:`
    /// in this host's name may be anyone's, and no badge is shown.
    pub sender_checks: bool,
    /// The MTA-STS policy this host serves, when its mode is not `none`.
    pub mta_sts_policy: Option<String>,
    /// `web.undo_send_secs`: how long a webmail send waits, undoable.
    pub undo_send_secs: u64,
    /// `3 1 1 <hex>` for the DANE record of this host's key.
    pub tlsa: Option<String>,
}

/// The HTML document around the app, rendered once per request.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                // The stylesheet is named like the scripts (`tern.<hash>`,
                // see server/src/web/assets.rs), so it is linked here, where
                // the options are, rather than in `App`.
                <link
                    rel="stylesheet"
                    id="tern"
                    href=format!("/{}/{}.css", options.site_pkg_dir, options.output_name)
                />
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_page_csp();
    #[cfg(feature = "hydrate")]
    shortcuts::install();
    view! {
        <PageTitle text="Tern"/>
        <Router>
            <Routes fallback=NotFound>
                // Async: the whole page, data included, is in the first response,
                // so it reads without JavaScript (out-of-order streaming would
                // need a script to swap the data in).
                <Route path=StaticSegment("") view=MailPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("mail") view=MailPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("read") view=ReadPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("thread") view=ThreadPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("compose") view=ComposePage ssr=SsrMode::Async/>
                <Route path=StaticSegment("folders") view=FoldersPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("scheduled") view=crate::scheduled::ScheduledPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("settings") view=crate::settings::SettingsPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("rules") view=crate::rules::RulesPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("outside") view=OutsidePage ssr=SsrMode::Async/>
                <Route path=StaticSegment("unified") view=UnifiedPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("outside"), StaticSegment("add")) view=OutsideAddPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("outside"), StaticSegment("box")) view=OutsideBoxPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("outside"), StaticSegment("read")) view=OutsideReadPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("login") view=LoginPage/>
                <Route path=StaticSegment("admin") view=AdminPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("admin"), StaticSegment("domain")) view=AdminDomainPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("admin"), StaticSegment("queue")) view=AdminQueuePage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("admin"), StaticSegment("log")) view=AdminLogPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("admin"), StaticSegment("audit")) view=AdminAuditPage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}

/// Tells the server the browser's offset from UTC (a `tz` cookie, read by
/// `mail::ssr::zone_for`), so pages show times in the reader's zone; a zone
/// chosen in Settings wins. Set on every page load, so it follows daylight
/// saving time.
#[cfg(feature = "hydrate")]
fn remember_time_zone() {
    use wasm_bindgen::JsCast;
    let offset = -(web_sys::js_sys::Date::new_0().get_timezone_offset() as i32);
    if let Some(doc) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.dyn_into::<web_sys::HtmlDocument>().ok())
    {
        let _ = doc.set_cookie(&format!(
            "tz={offset}; path=/; max-age=31536000; SameSite=Lax"
        ));
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    remember_time_zone();
    leptos::mount::hydrate_body(App);
}
