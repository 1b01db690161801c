//! Pages. Each renders complete HTML on the server (so everything works
//! with JavaScript off) and hydrates in the browser, where actions run
//! without a page reload.

use crate::head::PageTitle;
use leptos::prelude::*;

use crate::error::AppError;
use leptos_router::hooks::use_query_map;

use crate::auth::{FolderInfo, Login, Logout, LogoutEverywhere, UNAVAILABLE};
use crate::mail::{
    ComposeForm, FolderAction, Frame, ListData, MessageAction, MsgRow, ReadData, ThreadData,
    compose_data, encode, mail_list, read_message, thread,
};

/// "1 message", "2 messages": a count with its noun, singular for one.
pub fn count(n: impl Into<i128>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

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
    let notice = move || {
        query.with(|q| match q.get("signed_out").as_deref() {
            Some("everywhere") => {
                Some("You are signed out everywhere: in every browser and mail app.")
            }
            _ => None,
        })
    };
    view! {
        <PageTitle text="Sign in · Tern"/>
        <main class="login">
            <h1>"Tern"</h1>
            <p class="tagline">"Sign in to your mail"</p>
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || notice().map(|n| view! { <p class="notice" role="status" data-testid="notice">{n}</p> })}
            <ActionForm action=login>
                <input type="hidden" name="next" value=move || query.with(|q| q.get("next").unwrap_or_default())/>
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

/// What a page shows instead of its content: not signed in, or an error
/// (a storage outage reads as "mail is safe, try again", with a 503).
pub(crate) fn problem(e: Option<AppError>) -> AnyView {
    match e {
        None | Some(AppError::NotSignedIn) => view! {
            <main class="login">
                <p>"You are not signed in."</p>
                <a href="/login">"Sign in"</a>
            </main>
        }
        .into_any(),
        Some(AppError::Unavailable) => view! {
            <PageTitle text="Service unavailable · Tern"/>
            <main class="login">
                <h1>"Mail is temporarily unavailable"</h1>
                <p class="error" role="alert">{UNAVAILABLE}</p>
                <p>
                    "Your mail is safe: nothing is lost, and mail sent to you is being kept until service resumes. "
                    "This page will work again without you doing anything."
                </p>
            </main>
        }
        .into_any(),
        Some(e) => view! {
            <PageTitle text="Error · Tern"/>
            <main class="login">
                <p class="error" role="alert">{e.to_string()}</p>
                <a href="/">"Back to mail"</a>
            </main>
        }
        .into_any(),
    }
}

fn folder_label(name: &str) -> String {
    if name == "INBOX" {
        "Inbox".into()
    } else {
        name.to_owned()
    }
}

/// Whether any message of the list is ticked (in the browser).
#[cfg(feature = "hydrate")]
fn any_selected() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| {
            d.query_selector("li.msg input[type=checkbox]:checked")
                .ok()
                .flatten()
        })
        .is_some()
}

/// The labels the pages offer (IMAP's `$Label1`..`$Label5`).
const LABELS: [&str; 5] = ["Important", "Work", "Personal", "To do", "Later"];

/// The frame of every signed-in page: top bar with search, folder list.
#[component]
pub(crate) fn Shell(
    frame: Frame,
    #[prop(optional)] folder: String,
    #[prop(optional)] query: String,
    children: Children,
) -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    let logout_everywhere = ServerAction::<LogoutEverywhere>::new();
    let search_folder = if folder.is_empty() {
        "INBOX".to_owned()
    } else {
        folder.clone()
    };
    view! {
        <a class="skip" href="#content">"Skip to messages"</a>
        <header class="topbar">
            <a class="brand" href="/">"Tern"</a>
            <form class="search" method="get" action="/mail" role="search">
                <input type="hidden" name="f" value=search_folder/>
                <input
                    type="search"
                    name="q"
                    value=query
                    placeholder="Search mail"
                    aria-label="Search mail"
                    data-key="/"
                />
            </form>
            <a class="button primary" href="/compose" data-key="c">"Compose"</a>
            <span class="who" data-testid="signed-in-as">{format!("Signed in as {}", frame.me)}</span>
            <ActionForm action=logout>
                <button type="submit">"Sign out"</button>
            </ActionForm>
            <ActionForm action=logout_everywhere attr:class="everywhere">
                <input type="hidden" name="csrf" value=frame.csrf.clone()/>
                <button type="submit" data-testid="sign-out-everywhere" title="Also ends sessions in other browsers and in mail apps (IMAP, POP3)">
                    "Sign out everywhere"
                </button>
            </ActionForm>
        </header>
        <div class="layout">
            <nav class="folders" aria-label="Folders">
                <ul>
                    {frame
                        .folders
                        .iter()
                        .map(|f: &FolderInfo| {
                            let current = f.name == folder;
                            view! {
                                <li class:current=current>
                                    <a
                                        href=format!("/mail?f={}", encode(&f.name))
                                        aria-current=if current { Some("page") } else { None }
                                    >
                                        <span class="name">{folder_label(&f.name)}</span>
                                        {(f.unseen > 0)
                                            .then(|| {
                                                view! {
                                                    <span class="unseen" aria-label=format!("{} unread", f.unseen)>
                                                        {f.unseen}
                                                    </span>
                                                }
                                            })}
                                    </a>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
                <a class="manage" href="/folders">"Manage folders"</a>
                <a class="manage" href="/scheduled" data-testid="scheduled-link">"Scheduled"</a>
                <a class="manage" href="/rules" data-testid="rules-link">"Rules"</a>
                <a class="manage" href="/settings" data-testid="settings-link">"Settings"</a>
                <a class="manage" href="/unified" data-testid="all-inboxes">"All inboxes"</a>
                <a class="manage" href="/outside" data-testid="other-accounts">"Other accounts"</a>
            </nav>
            <main id="content" class="content">
                {(!frame.degraded.is_empty()).then(|| view! {
                    <div class="notice degraded" role="status" data-testid="service-banner">
                        <p>"Some services are not working normally ("<a href="/status">"status page"</a>"):"</p>
                        <ul>{frame.degraded.iter().map(|d| view! { <li>{d.clone()}</li> }).collect_view()}</ul>
                    </div>
                })}
                {frame.held.clone().map(|h| view! { <p class="notice held" role="status" data-testid="held">{h}</p> })}
                {frame.outbound.clone().map(|o| view! { <p class="notice held" role="status" data-testid="outbound-waiting">{o}</p> })}
                {children()}
            </main>
        </div>
    }
}

pub(crate) fn q(name: &'static str) -> impl Fn() -> String + Copy {
    let query = use_query_map();
    move || query.with(|q| q.get(name).unwrap_or_default())
}

#[component]
pub fn MailPage() -> impl IntoView {
    let f = q("f");
    let page = q("page");
    let search = q("q");
    let act = ServerAction::<MessageAction>::new();
    // Bumped when new mail arrives in the open folder (JavaScript on): the
    // list is read again and the new rows appear in place.
    let refresh = RwSignal::new(0u32);
    let data = Resource::new(
        move || {
            (
                f(),
                page().parse::<u64>().unwrap_or(1),
                search(),
                act.version().get(),
                refresh.get(),
            )
        },
        |(f, page, q, _, _)| mail_list(f, page, q),
    );
    view! {
        <PageTitle text="Mail · Tern"/>
        // Transition, not Suspense: a refresh keeps the list on screen
        // until the new one is ready.
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => view! { <MailList d=d act=act refresh=refresh/> }.into_any(),
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Transition>
    }
}

fn list_href(d: &ListData, page: u64) -> String {
    let mut h = format!("/mail?f={}&page={page}", encode(&d.folder));
    if !d.query.is_empty() {
        h.push_str(&format!("&q={}", encode(&d.query)));
    }
    h
}

#[component]
fn MailList(
    d: ListData,
    act: ServerAction<MessageAction>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let back = list_href(&d, d.page);
    let heading = if d.query.is_empty() {
        folder_label(&d.folder)
    } else {
        format!("Search: {}", d.query)
    };
    let searching = !d.query.is_empty();
    let move_targets: Vec<String> = d
        .frame
        .folders
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| *n != d.folder)
        .collect();
    let count = if searching {
        let n = if d.total > mailcore_cap() {
            format!("{}+", mailcore_cap())
        } else {
            d.total.to_string()
        };
        format!(
            "{n} found{}",
            d.search_ms
                .map(|ms| format!(" in {ms} ms"))
                .unwrap_or_default()
        )
    } else {
        count(d.total, "message", "messages")
    };
    let prev = (d.page > 1).then(|| list_href(&d, d.page - 1));
    let next = (d.page < d.pages).then(|| list_href(&d, d.page + 1));
    let pageinfo = format!("Page {} of {}", d.page, d.pages);
    // JavaScript on: a change to this folder made anywhere (another
    // client, another node) shows while the page is open (/mail/events).
    let live = RwSignal::new(None::<u32>);
    #[cfg(feature = "hydrate")]
    if !searching {
        crate::live::watch(format!("/mail/events?f={}", encode(&d.folder)), live);
    }
    let shown = d.total;
    let reload = list_href(&d, 1);
    // New mail on the first page, with nothing selected: read the list
    // again, so it shows in place. Otherwise (a selection would be lost,
    // or another page is open) the banner offers it.
    let first_page = d.page == 1;
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Some(n) = live.get()
            && u64::from(n) > shown
            && first_page
            && !any_selected()
        {
            refresh.update(|r| *r += 1);
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (refresh, first_page);
    let banner = move || {
        live.get().filter(|n| u64::from(*n) != shown).map(|n| {
            let text = if u64::from(n) > shown {
                "New mail has arrived. "
            } else {
                "This folder has changed. "
            };
            view! {
                <p class="notice" role="status" data-testid="new-mail">
                    {text} <a href=reload.clone() rel="external">"Show it"</a>
                </p>
            }
        })
    };
    let folder = d.folder.clone();
    let csrf = d.frame.csrf.clone();
    let rows = d.rows.clone();
    let empty = rows.is_empty();
    // After a send from the webmail: "Sent." with an undo while the
    // message waits out web.undo_send_secs on the server.
    let undo_csrf = csrf.clone();
    let sent_note = (q("sent")() == "1").then(move || {
        let undo = q("undo")();
        let undo_form = undo.parse::<i32>().ok().map(|id| {
            let act = ServerAction::<crate::scheduled::ScheduledAction>::new();
            view! {
                <ActionForm action=act attr:class="inline">
                    <input type="hidden" name="csrf" value=undo_csrf.clone()/>
                    <input type="hidden" name="id" value=id.to_string()/>
                    <button type="submit" name="op" value="edit" data-testid="undo">"Undo"</button>
                </ActionForm>
            }
        });
        view! { <p class="notice" role="status" data-testid="sent-note">"Sent. " {undo_form}</p> }
    });
    let snoozed = q("snoozed")();
    let snoozed_note = (!snoozed.is_empty()).then(|| {
        view! { <p class="notice" role="status" data-testid="snoozed-note">{format!("Snoozed until {snoozed}. It will be back at the top of this folder, unread.")}</p> }
    });
    let late_note = (q("late")() == "1").then(|| {
        view! { <p class="error" role="alert" data-testid="too-late">"Too late to undo: the message has been sent."</p> }
    });
    view! {
        <Shell frame=d.frame.clone() folder=d.folder.clone() query=d.query.clone()>
            {sent_note}
            {snoozed_note}
            {late_note}
            <div class="listhead">
                <h1>{heading}</h1>
                <span class="count" data-testid="count">{count}</span>
            </div>
            {banner}
            <ActionForm action=act attr:class="msglist">
                <input type="hidden" name="csrf" value=csrf/>
                <input type="hidden" name="f" value=folder.clone()/>
                <input type="hidden" name="back" value=back/>
                <div class="toolbar" role="toolbar" aria-label="Actions on selected messages">
                    <button type="submit" name="op" value="read">"Mark read"</button>
                    <button type="submit" name="op" value="unread">"Mark unread"</button>
                    <button type="submit" name="op" value="flag">"Flag"</button>
                    <button type="submit" name="op" value="unflag">"Unflag"</button>
                    <button type="submit" name="op" value="archive">"Archive"</button>
                    <button type="submit" name="op" value="delete" data-key="#">"Delete"</button>
                    <label class="moveto">
                        "Move to "
                        <select name="target" aria-label="Move to folder">
                            {move_targets
                                .into_iter()
                                .map(|n| view! { <option value=n.clone()>{folder_label(&n)}</option> })
                                .collect_view()}
                        </select>
                    </label>
                    <button type="submit" name="op" value="move">"Move"</button>
                    <label class="moveto">
                        "Label "
                        <select name="label" aria-label="Label to add">
                            {LABELS.iter().map(|l| view! { <option value=*l>{*l}</option> }).collect_view()}
                        </select>
                    </label>
                    <button type="submit" name="op" value="label">"Label"</button>
                </div>
                {if empty {
                    view! { <p class="empty">{if searching { "No messages match." } else { "No messages here." }}</p> }.into_any()
                } else {
                    view! {
                        <ul class="messages">
                            {rows.into_iter().map(|r| view! { <Row r=r searching=searching/> }).collect_view()}
                        </ul>
                    }
                        .into_any()
                }}
            </ActionForm>
            <nav class="pager" aria-label="Pages">
                {prev.map(|h| view! { <a href=h rel="prev">"Newer"</a> })}
                <span>{pageinfo}</span>
                {next.map(|h| view! { <a href=h rel="next">"Older"</a> })}
            </nav>
        </Shell>
    }
}

/// The search count cap (mailcore::search::COUNT_CAP; the browser build
/// does not link the core).
const fn mailcore_cap() -> u64 {
    1000
}

#[component]
fn Row(r: MsgRow, searching: bool) -> impl IntoView {
    let href = format!("/read?f={}&uid={}", encode(&r.folder), r.uid);
    let label = format!("Select message from {}: {}", r.from, r.subject);
    let subject = if r.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        r.subject.clone()
    };
    view! {
        <li class="msg" class:unread=!r.seen data-uid=r.uid>
            <input type="checkbox" name="uids[]" value=r.uid aria-label=label/>
            <span class="marks">
                {(!r.seen).then(|| view! { <span class="dot" title="Unread" aria-label="Unread">"●"</span> })}
                {r.flagged.then(|| view! { <span class="flag" title="Flagged" aria-label="Flagged">"★"</span> })}
                {r.answered.then(|| view! { <span title="Answered" aria-label="Answered">"↩"</span> })}
                {r.attachment.then(|| view! {
                    <svg class="att" role="img" aria-label="Has attachments" viewBox="0 0 16 16" width="14" height="14">
                        <title>"Has attachments"</title>
                        <path d="M11 4v7a3 3 0 0 1-6 0V3.5a2 2 0 0 1 4 0V10a1 1 0 0 1-2 0V4" fill="none" stroke="currentColor" stroke-width="1.4" stroke-linecap="round"/>
                    </svg>
                })}
            </span>
            <a class="open" href=href>
                <span class="from">{r.from.clone()}</span>
                {r.snoozed_until.clone().map(|t| view! {
                    <span class="until" data-testid="snoozed-until">{format!("until {t}")}</span>
                })}
                {r.delivery.clone().map(|d| {
                    let class = format!("delivery {}", d.replace([' ', ','], "-"));
                    view! { <span class=class data-testid="delivery-summary">{d}</span> }
                })}
                {(!r.labels.is_empty()).then(|| view! {
                    <span class="labels">
                        {r.labels.iter().map(|l| view! { <span class="label">{l.clone()}</span> }).collect_view()}
                    </span>
                })}
                <span class="subject">{subject}</span>
                <span class="snippet">{r.snippet.clone()}</span>
            </a>
            {searching.then(|| view! { <span class="where">{folder_label(&r.folder)}</span> })}
            <time class="date">{r.date.clone()}</time>
        </li>
    }
}

#[component]
pub fn ReadPage() -> impl IntoView {
    let f = q("f");
    let uid = q("uid");
    let images = q("images");
    let act = ServerAction::<MessageAction>::new();
    // `images` is part of the key so that "Show images" re-renders the
    // frame after a client-side navigation too.
    let data = Resource::new(
        move || {
            (
                f(),
                uid().parse::<i64>().unwrap_or(0),
                act.version().get(),
                images(),
            )
        },
        |(f, uid, _, _)| read_message(f, uid),
    );
    view! {
        <PageTitle text="Message · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => view! { <Message d=d act=act images=images() == "1"/> }.into_any(),
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Message(d: ReadData, act: ServerAction<MessageAction>, images: bool) -> impl IntoView {
    let snooze = ServerAction::<crate::mail::SnoozeMessage>::new();
    let (label_csrf, label_f, label_uid) = (d.frame.csrf.clone(), d.folder.clone(), d.uid);
    let (snooze_csrf, snooze_f) = (d.frame.csrf.clone(), d.folder.clone());
    let fq = encode(&d.folder);
    let here = format!("/read?f={fq}&uid={}", d.uid);
    let label_back = here.clone();
    let reply = format!("/compose?mode=reply&f={fq}&uid={}", d.uid);
    let reply_all = format!("/compose?mode=all&f={fq}&uid={}", d.uid);
    let forward = format!("/compose?mode=forward&f={fq}&uid={}", d.uid);
    let frame_src = format!("/msg/body?f={fq}&uid={}&images={}", d.uid, u8::from(images));
    let show_images = format!("{here}&images=1");
    let older = d.older_uid.map(|u| format!("/read?f={fq}&uid={u}"));
    let newer = d.newer_uid.map(|u| format!("/read?f={fq}&uid={u}"));
    let thread_href = format!("/thread?id={}", d.thread_id);
    let subject = if d.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        d.subject.clone()
    };
    let title = format!("{subject} · Tern");
    view! {
        <PageTitle text=title/>
        <Shell frame=d.frame.clone() folder=d.folder.clone()>
            <article class="message" aria-labelledby="subject">
                <nav class="msgnav" aria-label="Message">
                    <a href=format!("/mail?f={fq}")>"← Back to " {folder_label(&d.folder)}</a>
                    {newer.map(|h| view! { <a href=h data-key="k">"Newer"</a> })}
                    {older.map(|h| view! { <a href=h data-key="j">"Older"</a> })}
                </nav>
                <h1 id="subject">{subject}</h1>
                {(!d.labels.is_empty()).then(|| view! {
                    <div class="labels" aria-label="Labels">
                        {d.labels.clone().into_iter().map(|l| {
                            let remove = format!("Remove the label {l}");
                            let (label_csrf, label_f, label_back) = (label_csrf.clone(), label_f.clone(), label_back.clone());
                            view! {
                                <span class="label"><span class="name">{l.clone()}</span>
                                    <ActionForm action=act attr:class="inline">
                                        <input type="hidden" name="csrf" value=label_csrf/>
                                        <input type="hidden" name="f" value=label_f/>
                                        <input type="hidden" name="uids[]" value=label_uid/>
                                        <input type="hidden" name="back" value=label_back/>
                                        <input type="hidden" name="label" value=l.clone()/>
                                        <button type="submit" name="op" value="unlabel" class="unlabel" aria-label=remove>"×"</button>
                                    </ActionForm>
                                </span>
                            }
                        }).collect_view()}
                    </div>
                })}
                <dl class="headers">
                    <dt>"From"</dt><dd><span data-testid="from">{d.from.clone()}</span>
                        {d.sender_verified.map(|ok| if ok {
                            view! { <span class="badge verified" data-testid="sender-badge" title="SPF, DKIM or DMARC checked by this server vouch for the sender">"verified sender"</span> }
                        } else {
                            view! { <span class="badge unverified" data-testid="sender-badge" title="Nothing this server checked vouches for the sender: the From address may be forged">"could not verify"</span> }
                        })}
                    </dd>
                    <dt>"To"</dt><dd>{d.to.clone()}</dd>
                    {(!d.cc.is_empty()).then(|| view! { <dt>"Cc"</dt><dd>{d.cc.clone()}</dd> })}
                    <dt>"Date"</dt><dd>{d.date.clone()}</dd>
                </dl>
                {(!d.delivery.is_empty()).then(|| view! {
                    <section class="delivery" aria-labelledby="delivery-h" data-testid="delivery">
                        <h2 id="delivery-h">"Delivery"</h2>
                        <ul>
                            {d.delivery.iter().map(|r| view! {
                                <li>
                                    <span class=format!("badge {}", r.class)>{r.class.clone()}</span>
                                    " " <strong>{r.rcpt.clone()}</strong> ": " {r.text.clone()}
                                </li>
                            }).collect_view()}
                        </ul>
                    </section>
                })}
                <div class="actions">
                    <a class="button" href=reply data-key="r">"Reply"</a>
                    <a class="button" href=reply_all data-key="a">"Reply all"</a>
                    <a class="button" href=forward data-key="f">"Forward"</a>
                    {(d.thread_len > 1).then(|| view! { <a class="button" href=thread_href.clone()>{format!("Conversation ({})", d.thread_len)}</a> })}
                    <ActionForm action=act attr:class="inline">
                        <input type="hidden" name="csrf" value=d.frame.csrf.clone()/>
                        <input type="hidden" name="f" value=d.folder.clone()/>
                        <input type="hidden" name="uids[]" value=d.uid/>
                        <input type="hidden" name="back" value=here.clone()/>
                        {if d.flagged {
                            view! { <button type="submit" name="op" value="unflag">"Unflag"</button> }.into_any()
                        } else {
                            view! { <button type="submit" name="op" value="flag">"Flag"</button> }.into_any()
                        }}
                        <button type="submit" name="op" value="unread">"Mark unread"</button>
                        <button type="submit" name="op" value="archive">"Archive"</button>
                        <button type="submit" name="op" value="delete" data-key="#">"Delete"</button>
                        <select name="label" aria-label="Label to add">
                            {LABELS.iter().map(|l| view! { <option value=*l>{*l}</option> }).collect_view()}
                        </select>
                        <button type="submit" name="op" value="label">"Add label"</button>
                    </ActionForm>
                </div>
                <details class="snooze">
                    <summary data-testid="snooze">"Snooze"</summary>
                    <ActionForm action=snooze attr:class="inline">
                        <input type="hidden" name="csrf" value=snooze_csrf/>
                        <input type="hidden" name="f" value=snooze_f/>
                        <input type="hidden" name="uid" value=d.uid/>
                        <button type="submit" name="when" value="3h">"For 3 hours"</button>
                        <button type="submit" name="when" value="tomorrow">{format!("Tomorrow 08:00 {}", d.zone)}</button>
                        <button type="submit" name="when" value="week">{format!("Next Monday 08:00 {}", d.zone)}</button>
                        <label for="snooze_at">{format!(" Until ({}) ", d.zone)}</label>
                        <input id="snooze_at" name="at" type="datetime-local"/>
                        <button type="submit" name="when" value="at" data-testid="snooze-at">"Snooze until then"</button>
                    </ActionForm>
                </details>
                {(d.has_html && d.blocked_images > 0 && !images).then(|| view! {
                    <p class="notice" role="status">
                        {format!("{} remote image(s) hidden to protect your privacy. ", d.blocked_images)}
                        // A full page load (rel=external): the frame is rebuilt from
                        // scratch with the new policy rather than patched in place.
                        <a href=show_images.clone() rel="external">"Show images in this message"</a>
                    </p>
                })}
                {if d.has_html {
                    view! {
                        <iframe
                            class="htmlbody"
                            title="Message body"
                            src=frame_src
                            sandbox="allow-popups allow-popups-to-escape-sandbox"
                            referrerpolicy="no-referrer"
                        ></iframe>
                    }.into_any()
                } else {
                    view! { <pre class="textbody" data-testid="body">{d.text.clone()}</pre> }.into_any()
                }}
                {(!d.attachments.is_empty()).then(|| {
                    let fq = fq.clone();
                    let uid = d.uid;
                    let more = (d.attachment_count > d.attachments.len()).then(|| {
                        view! {
                            <p class="more" data-testid="attachments-more">
                                {format!(
                                    "Showing the first {} of {} attachments.",
                                    d.attachments.len(),
                                    d.attachment_count
                                )}
                            </p>
                        }
                    });
                    view! {
                        <section class="attachments" aria-label="Attachments">
                            <h2>"Attachments"</h2>
                            {more}
                            <ul>
                                {d.attachments.iter().map(|a| view! {
                                    <li>
                                        <a href=format!("/msg/att?f={fq}&uid={uid}&n={}", a.index) download>{a.filename.clone()}</a>
                                        " "
                                        <span class="size">{a.size.clone()}</span>
                                        " "
                                        <span class="ctype">{a.content_type.clone()}</span>
                                    </li>
                                }).collect_view()}
                            </ul>
                        </section>
                    }
                })}
            </article>
        </Shell>
    }
}

#[component]
pub fn ThreadPage() -> impl IntoView {
    let id = q("id");
    let data = Resource::new(move || id().parse::<i64>().unwrap_or(0), thread);
    view! {
        <PageTitle text="Conversation · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => view! { <Thread d=d/> }.into_any(),
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Thread(d: ThreadData) -> impl IntoView {
    view! {
        <Shell frame=d.frame.clone()>
            <h1>"Conversation: " {d.subject.clone()}</h1>
            <ol class="thread">
                {d.rows.iter().map(|r| view! {
                    <li class="msg" class:unread=!r.seen>
                        <a class="open" href=format!("/read?f={}&uid={}", encode(&r.folder), r.uid)>
                            <span class="from">{r.from.clone()}</span>
                            <span class="subject">{r.subject.clone()}</span>
                            <span class="snippet">{r.snippet.clone()}</span>
                        </a>
                        <span class="where">{folder_label(&r.folder)}</span>
                        <time class="date">{r.date.clone()}</time>
                    </li>
                }).collect_view()}
            </ol>
        </Shell>
    }
}

#[component]
pub fn ComposePage() -> impl IntoView {
    let mode = q("mode");
    let f = q("f");
    let uid = q("uid");
    let draft = q("draft");
    let to = q("to");
    let error = q("error");
    let saved = q("saved");
    let undone = q("undone");
    let outside = q("a");
    let outside_id = q("id");
    let data = Resource::new(
        move || {
            (
                mode(),
                f(),
                uid().parse::<i64>().ok(),
                draft().parse::<i64>().ok(),
                to(),
                outside().parse::<i32>().ok(),
                outside_id(),
            )
        },
        |(m, f, u, d, to, a, id)| compose_data(m, f, u, d, to, a, id),
    );
    view! {
        <PageTitle text="Compose · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => view! { <Compose d=d error=error() saved=saved() == "1" undone=undone() == "1"/> }.into_any(),
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Compose(d: ComposeForm, error: String, saved: bool, undone: bool) -> impl IntoView {
    let limit = format!("Attachments up to {} MB in total.", d.max_size_mb);
    let dirty = StoredValue::new(false);
    let status = RwSignal::new(String::new());
    let body_ref = NodeRef::<leptos::html::Textarea>::new();
    let sender = StoredValue::new(d.from.clone());
    let signatures = StoredValue::new(d.signatures.clone());
    // A new From brings its own signature (with JavaScript; without, the
    // form keeps the one it was made with).
    let swap_signature = move |ev: leptos::ev::Event| {
        let new = event_target_value(&ev);
        let old = sender.get_value();
        sender.set_value(new.clone());
        let sig = |a: &str| {
            signatures.with_value(|s| {
                s.iter()
                    .find(|(x, _)| x == a)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default()
            })
        };
        if let Some(t) = body_ref.get() {
            t.set_value(&crate::mail::swap_signature(
                &t.value(),
                &sig(&old),
                &sig(&new),
            ));
            dirty.set_value(true);
        }
    };
    #[cfg(feature = "hydrate")]
    crate::autosave::start(d.autosave_secs, dirty, status);
    view! {
        <a class="skip" href="#to">"Skip to the form"</a>
        <header class="topbar">
            <a class="brand" href="/">"Tern"</a>
            <span class="who" data-testid="signed-in-as">{format!("Signed in as {}", d.me)}</span>
        </header>
        <main class="compose">
            <h1>{match d.mode.as_str() { "forward" => "Forward", "reply" | "all" => "Reply", _ => "New message" }}</h1>
            {(!error.is_empty()).then(|| view! { <p class="error" role="alert">{error.clone()}</p> })}
            {saved.then(|| view! { <p class="notice" role="status">"Draft saved."</p> })}
            {undone.then(|| view! { <p class="notice" role="status" data-testid="undone">"Not sent. The message is back here, as a draft, to change or send again."</p> })}
            <form
                method="post"
                action="/compose"
                enctype="multipart/form-data"
                class="composeform"
                id="composeform"
                on:input=move |_| dirty.set_value(true)
            >
                <input type="hidden" name="csrf" value=d.csrf.clone()/>
                <input type="hidden" name="mode" value=d.mode.clone()/>
                <input type="hidden" name="ref_f" value=d.ref_f.clone()/>
                <input type="hidden" name="ref_uid" value=d.ref_uid.map(|u| u.to_string()).unwrap_or_default()/>
                <input type="hidden" name="draft_uid" value=d.draft_uid.map(|u| u.to_string()).unwrap_or_default()/>
                <input type="hidden" name="ref_a" value=d.ref_a.map(|u| u.to_string()).unwrap_or_default()/>
                <input type="hidden" name="ref_id" value=d.ref_id.clone()/>
                {(!d.from_choices.is_empty()).then(|| view! {
                    <label for="from">"From"</label>
                    <select id="from" name="from" on:change=swap_signature>
                        {d.from_choices.iter().map(|(v, label)| view! {
                            <option value=v.clone() selected=*v == d.from>{label.clone()}</option>
                        }).collect_view()}
                    </select>
                })}
                <label for="to">"To"</label>
                <input id="to" name="to" type="text" list="people" value=d.to.clone() autocomplete="off" multiple/>
                <label for="cc">"Cc"</label>
                <input id="cc" name="cc" type="text" list="people" value=d.cc.clone() autocomplete="off"/>
                <label for="bcc">"Bcc"</label>
                <input id="bcc" name="bcc" type="text" list="people" value=d.bcc.clone() autocomplete="off"/>
                <datalist id="people">
                    {d.correspondents.iter().map(|c| view! { <option value=c.clone()></option> }).collect_view()}
                </datalist>
                <label for="subject">"Subject"</label>
                <input id="subject" name="subject" type="text" value=d.subject.clone()/>
                <label for="body">"Message"</label>
                <textarea id="body" name="body" rows="16" node_ref=body_ref>{d.body.clone()}</textarea>
                {(!d.forwarded.is_empty()).then(|| view! {
                    <p class="notice">"Attachments included: " {d.forwarded.join(", ")}</p>
                })}
                <label for="attachment">"Attach files"</label>
                <input id="attachment" name="attachment" type="file" multiple/>
                <p class="hint">{limit}" Separate addresses with commas."</p>
                <p class="hint" role="status" data-testid="autosave">{move || status.get()}</p>
                <div class="actions">
                    <button type="submit" name="action" value="send" class="primary">"Send"</button>
                    <button type="submit" name="action" value="draft">"Save draft"</button>
                    <a href="/">"Cancel"</a>
                </div>
                <details class="later">
                    <summary>"Send later"</summary>
                    <label for="send_at">{format!("Send at ({})", d.zone)}</label>
                    <input id="send_at" name="send_at" type="datetime-local"/>
                    <button type="submit" name="action" value="later" data-testid="send-later">"Schedule"</button>
                </details>
            </form>
        </main>
    }
}

#[component]
pub fn FoldersPage() -> impl IntoView {
    let act = ServerAction::<FolderAction>::new();
    let error = q("error");
    let data = Resource::new(
        move || act.version().get(),
        |_| mail_list(String::new(), 1, String::new()),
    );
    view! {
        <PageTitle text="Folders · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let csrf = d.frame.csrf.clone();
                        let special = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"];
                        let err = error();
                        let csrf_new = csrf.clone();
                        let csrf_import = csrf.clone();
                        // A running import's progress, the page reloading
                        // itself (with or without JavaScript) until it is
                        // over; its outcome once, right after.
                        let import_note = d.frame.import.clone().and_then(|n| {
                            if n.running {
                                Some(view! {
                                    <leptos_meta::Meta http_equiv="refresh" content="1"/>
                                    <p class="notice" role="status" data-testid="importing">{n.text}</p>
                                }.into_any())
                            } else if !q("importing")().is_empty() {
                                let class = if n.failed { "error" } else { "ok" };
                                Some(view! { <p class=class role="status" data-testid="imported">{n.text}</p> }.into_any())
                            } else {
                                None
                            }
                        });
                        let names: Vec<String> = d.frame.folders.iter().map(|f| f.name.clone()).collect();
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"Folders"</h1>
                                <p><a href="/mail/export?format=maildir" rel="external" download="" data-testid="export-all">"Export all mail (Maildir zip)"</a></p>
                                {(!err.is_empty()).then(|| view! { <p class="error" role="alert">{err.clone()}</p> })}
                                {import_note}
                                <ActionForm action=act attr:class="inline">
                                    <input type="hidden" name="csrf" value=csrf_new/>
                                    <input type="hidden" name="op" value="create"/>
                                    <label for="newfolder">"New folder "</label>
                                    <input id="newfolder" name="name" type="text" required/>
                                    <button type="submit">"Create"</button>
                                </ActionForm>
                                <ul class="folderlist">
                                    {d.frame.folders.iter().map(|f| view! {
                                        <FolderRow
                                            f=f.clone()
                                            csrf=csrf.clone()
                                            act=act
                                            fixed=special.contains(&f.name.as_str())
                                        />
                                    }).collect_view()}
                                </ul>
                                <h2>"Import a folder (mbox)"</h2>
                                <p class="hint">"Messages already in the folder (same Message-ID) are skipped, so an import can be run again. Up to 100 MB here; larger files with tern import."</p>
                                <form method="post" action="/mail/import" enctype="multipart/form-data" class="inline" data-testid="import">
                                    <input type="hidden" name="csrf" value=csrf_import/>
                                    <label for="import-into">"Into "</label>
                                    <select id="import-into" name="f">
                                        {names.into_iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view()}
                                    </select>
                                    <label for="import-file">" File "</label>
                                    <input id="import-file" name="file" type="file" accept=".mbox,application/mbox,text/plain" required/>
                                    <button type="submit">"Import"</button>
                                </form>
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

#[component]
fn FolderRow(
    f: FolderInfo,
    csrf: String,
    act: ServerAction<FolderAction>,
    fixed: bool,
) -> impl IntoView {
    let name = f.name.clone();
    let label = format!("New name for {name}");
    let controls = (!fixed).then(move || {
        let (csrf2, name2) = (csrf.clone(), name.clone());
        view! {
            <ActionForm action=act attr:class="inline">
                <input type="hidden" name="csrf" value=csrf2/>
                <input type="hidden" name="op" value="rename"/>
                <input type="hidden" name="name" value=name2/>
                <input name="new_name" type="text" aria-label=label required/>
                <button type="submit">"Rename"</button>
            </ActionForm>
            <ActionForm action=act attr:class="inline">
                <input type="hidden" name="csrf" value=csrf/>
                <input type="hidden" name="op" value="delete"/>
                <input type="hidden" name="name" value=name/>
                <button type="submit">"Delete"</button>
            </ActionForm>
        }
    });
    view! {
        <li>
            <span class="name">{folder_label(&f.name)}</span>
            " "
            <span class="count">{format!("{}, {} unread", count(f.total, "message", "messages"), f.unseen)}</span>
            " "
            <a href=format!("/mail/export?f={}", encode(&f.name)) rel="external" download="" data-testid="export">"Export (mbox)"</a>
            " "
            <a href=format!("/mail/export?f={}&format=maildir", encode(&f.name)) rel="external" download="" data-testid="export-maildir">"(Maildir zip)"</a>
            {controls}
        </li>
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
        <PageTitle text="Not found · Tern"/>
        <main class="login">
            <h1>"Not found"</h1>
            <a href="/">"Back to mail"</a>
        </main>
    }
}

#[cfg(feature = "ssr")]
const _: () = assert!(mailcore_cap() == mailcore::search::COUNT_CAP);
