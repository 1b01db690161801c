//! Live changes for an open folder (JavaScript on): listens to a server
//! stream (`/mail/events` for the user's own folders, fed by the change
//! feed; `/outside/events` for an outside folder, by IMAP IDLE at the
//! provider) and sets `count` when the folder's count moves. The stream
//! closes with the page's view.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

pub fn watch(url: String, count: RwSignal<Option<u32>>) {
    let Ok(es) = EventSource::new(&url) else {
        return;
    };
    let on_exists = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if let Some(n) = e.data().as_string().and_then(|d| d.trim().parse().ok()) {
            count.set(Some(n));
        }
    });
    let _ = es.add_event_listener_with_callback("exists", on_exists.as_ref().unchecked_ref());
    on_exists.forget();
    // An error event from the server ends the stream for good: do not let
    // the browser reconnect to a folder that cannot be watched.
    let closer = es.clone();
    let on_error = Closure::<dyn FnMut(MessageEvent)>::new(move |_e: MessageEvent| closer.close());
    let _ = es.add_event_listener_with_callback("error", on_error.as_ref().unchecked_ref());
    on_error.forget();
    let stored = StoredValue::new_local(es);
    on_cleanup(move || stored.with_value(|es| es.close()));
}
