//! Draft autosave on the compose page (JavaScript on): every
//! `web.autosave_secs`, if the form changed, it is posted to `/compose`
//! with `action=autosave`, and the draft UID that comes back goes into the
//! form so the next save replaces that draft instead of adding one.
//!
//! File inputs are left out: a file is uploaded once, when the user sends
//! or saves, not on every tick.

use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{FormData, HtmlFormElement, HtmlInputElement, RequestInit, Response};

fn js(e: wasm_bindgen::JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

async fn save() -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let doc = window.document().ok_or("no document")?;
    let form: HtmlFormElement = doc
        .get_element_by_id("composeform")
        .ok_or("no form")?
        .dyn_into()
        .map_err(|_| "not a form")?;
    let fd = FormData::new_with_form(&form).map_err(js)?;
    fd.delete("attachment");
    fd.set_with_str("action", "autosave").map_err(js)?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&fd);
    let resp: Response = JsFuture::from(window.fetch_with_str_and_init("/compose", &init))
        .await
        .map_err(js)?
        .dyn_into()
        .map_err(|_| "no response")?;
    if !resp.ok() {
        return Err(format!("the server answered {}", resp.status()));
    }
    let uid = JsFuture::from(resp.text().map_err(js)?)
        .await
        .map_err(js)?
        .as_string()
        .unwrap_or_default();
    if let Ok(Some(el)) = doc.query_selector("input[name=draft_uid]")
        && let Ok(input) = el.dyn_into::<HtmlInputElement>()
    {
        input.set_value(uid.trim());
    }
    Ok(uid)
}

pub fn start(secs: u64, dirty: StoredValue<bool>, status: RwSignal<String>) {
    let handle = set_interval_with_handle(
        move || {
            if !dirty.get_value() {
                return;
            }
            dirty.set_value(false);
            leptos::task::spawn_local(async move {
                match save().await {
                    Ok(_) => status.set("Draft saved automatically.".into()),
                    Err(e) => {
                        dirty.set_value(true);
                        status.set(format!("Draft not saved: {e}"));
                    }
                }
            });
        },
        Duration::from_secs(secs),
    );
    if let Ok(h) = handle {
        on_cleanup(move || h.clear());
    }
}
