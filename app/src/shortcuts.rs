//! Keyboard shortcuts, once the app has hydrated (Gmail's keys):
//! `j`/`k` next/previous message, `r` reply, `a` reply all, `f` forward,
//! `c` compose, `/` search, `#` delete.
//!
//! The keys are data, not code: a page marks the element that does the
//! job with `data-key="r"` and so on, and this listener clicks it (or
//! focuses it, for the search box). In a list, `j`/`k` move the focus
//! between messages and Enter opens one. Keys typed into a field are left
//! alone.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement, HtmlInputElement, KeyboardEvent};

fn doc() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

fn in_field(ev: &KeyboardEvent) -> bool {
    ev.target()
        .and_then(|t| t.dyn_into::<Element>().ok())
        .map(|e| {
            matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                || e.has_attribute("contenteditable")
        })
        .unwrap_or(false)
}

/// In a message list, moves the focus `step` rows from the focused one.
fn move_in_list(step: i32) -> bool {
    let Some(d) = doc() else { return false };
    let Ok(links) = d.query_selector_all("li.msg a.open") else {
        return false;
    };
    let n = links.length() as i32;
    if n == 0 {
        return false;
    }
    let active = d.active_element();
    let mut cur = -1;
    for i in 0..n {
        if let (Some(node), Some(a)) = (links.item(i as u32), active.as_ref())
            && node.is_same_node(Some(a))
        {
            cur = i;
        }
    }
    let next = if cur < 0 {
        0
    } else {
        (cur + step).clamp(0, n - 1)
    };
    if let Some(el) = links
        .item(next as u32)
        .and_then(|x| x.dyn_into::<HtmlElement>().ok())
    {
        let _ = el.focus();
    }
    true
}

fn trigger(key: &str) -> bool {
    let Some(d) = doc() else { return false };
    let sel = format!("[data-key=\"{key}\"]");
    let Ok(Some(el)) = d.query_selector(&sel) else {
        return false;
    };
    if let Some(input) = el.dyn_ref::<HtmlInputElement>() {
        let _ = input.focus();
        input.select();
        return true;
    }
    if let Some(h) = el.dyn_ref::<HtmlElement>() {
        h.click();
        return true;
    }
    false
}

pub fn install() {
    let handle = window_event_listener(leptos::ev::keydown, |ev: KeyboardEvent| {
        if ev.ctrl_key() || ev.meta_key() || ev.alt_key() || in_field(&ev) {
            return;
        }
        let key = ev.key();
        let done = match key.as_str() {
            "j" => move_in_list(1) || trigger("j"),
            "k" => move_in_list(-1) || trigger("k"),
            "r" | "a" | "f" | "c" | "/" | "#" => trigger(&key),
            _ => false,
        };
        if done {
            ev.prevent_default();
        }
    });
    on_cleanup(move || handle.remove());
}
