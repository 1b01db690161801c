//! Pages. Each renders complete HTML on the server.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::auth::{Login, Logout, UNAVAILABLE, folders, whoami};

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let query = use_query_map();
    let error = move || {
        query.with(|q| match q.get("error").as_deref() {
            Some("invalid") => Some("Wrong address or password.".to_owned()),
            Some("throttled") => Some(format!(
                "Too many failed sign-ins. Try again in {} seconds.",
                q.get("retry").unwrap_or_else(|| "a few".into())
            )),
            Some("unavailable") => Some(UNAVAILABLE.to_owned()),
            _ => None,
        })
    };
    view! {
        <Title text="Sign in · Tern"/>
        <main class="login">
            <h1>"Tern"</h1>
            <p class="tagline">"Sign in to your mail"</p>
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <ActionForm action=login>
                <label for="address">"Email address"</label>
                <input
                    id="address"
                    type="email"
                    name="address"
                    autocomplete="username"
                    required
                    autofocus
                />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    type="password"
                    name="password"
                    autocomplete="current-password"
                    required
                />
                <button type="submit" disabled=move || login.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
        </main>
    }
}

#[component]
pub fn HomePage() -> impl IntoView {
    let who = Resource::new(|| (), |_| whoami());
    let boxes = Resource::new(|| (), |_| folders());
    let logout = ServerAction::<Logout>::new();
    view! {
        <Title text="Mail · Tern"/>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match who.await {
                    Ok(Some(me)) => {
                        let list = boxes.await.unwrap_or_default();
                        view! {
                            <header class="topbar">
                                <span class="brand">"Tern"</span>
                                <span class="who" data-testid="signed-in-as">
                                    {format!("Signed in as {}", me.address)}
                                </span>
                                <ActionForm action=logout>
                                    <button type="submit">"Sign out"</button>
                                </ActionForm>
                            </header>
                            <nav class="folders" aria-label="Folders">
                                <ul>
                                    {list
                                        .into_iter()
                                        .map(|f| {
                                            view! {
                                                <li>
                                                    <span class="name">{f.name}</span>
                                                    {(f.unseen > 0)
                                                        .then(|| {
                                                            view! { <span class="unseen">{f.unseen}</span> }
                                                        })}
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            </nav>
                        }
                            .into_any()
                    }
                    Ok(None) => {
                        view! {
                            <main class="login">
                                <p>"You are not signed in."</p>
                                <a href="/login">"Sign in"</a>
                            </main>
                        }
                            .into_any()
                    }
                    Err(e) => {
                        let text = e.to_string();
                        let text = if text.contains(UNAVAILABLE) { UNAVAILABLE.to_owned() } else { format!("Error: {text}") };
                        view! {
                            <main class="login">
                                <p class="error" role="alert">{text}</p>
                            </main>
                        }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_actix::ResponseOptions>() {
            resp.set_status(actix_web::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Not found · Tern"/>
        <main class="login">
            <h1>"Not found"</h1>
            <a href="/">"Back to mail"</a>
        </main>
    }
}
