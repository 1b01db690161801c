//! Hostile HTML mail made safe to show (server side only).
//!
//! Two layers, so that one mistake is not enough:
//! 1. ammonia keeps a whitelist of tags and attributes: no script, no
//!    event handlers, no `javascript:` URLs, no `<base>`, `<meta>`, forms
//!    or frames. Links get `target=_blank rel="noopener noreferrer"`.
//!    Unless the user asked for them, remote images (`src`, `srcset`,
//!    `background`, CSS `url()`) are removed here and counted, so the page
//!    can offer to show them.
//! 2. The result is served in a sandboxed iframe (no `allow-scripts`, no
//!    `allow-same-origin`) with a CSP that allows no script and, unless
//!    the user asked, no remote image either (see the web server's
//!    `/msg/body`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Cleaned {
    pub html: String,
    /// Remote references removed because remote content is not allowed.
    pub blocked: usize,
}

fn is_remote(v: &str) -> bool {
    let v = v.trim_start().to_ascii_lowercase();
    v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//")
}

pub fn sanitize(html: &str, allow_remote: bool) -> Cleaned {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let mut b = ammonia::Builder::default();
    b.link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .add_generic_attributes(["style", "align", "valign", "bgcolor", "width", "height"])
        .add_tag_attributes("table", ["border", "cellpadding", "cellspacing"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tags(["font", "center"])
        .url_schemes(HashSet::from(["http", "https", "mailto", "cid", "data"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(move |tag, attr, value| {
            let lower = value.to_ascii_lowercase();
            // Old IE's CSS expressions and script URLs hidden in CSS.
            if attr == "style"
                && (lower.contains("expression(")
                    || lower.contains("javascript:")
                    || lower.contains("behavior:")
                    || lower.contains("-moz-binding"))
            {
                return None;
            }
            // data: is for inline images only, never for links.
            if attr == "href" && lower.trim_start().starts_with("data:") {
                return None;
            }
            if !allow_remote {
                let remote = match attr {
                    "src" | "background" | "poster" => is_remote(value),
                    "srcset" => {
                        lower.contains("http:") || lower.contains("https:") || lower.contains("//")
                    }
                    "style" => lower.contains("url("),
                    _ => false,
                };
                // ammonia asks about attributes of tags it then drops
                // (an <iframe src>), so only count what would have shown.
                let shown = tag == "img" || attr == "style" || attr == "background";
                if remote && shown {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                if remote {
                    return None;
                }
            }
            Some(Cow::Borrowed(value))
        });
    let html = b.clean(html).to_string();
    Cleaned {
        html,
        blocked: blocked.load(Ordering::Relaxed),
    }
}

/// The CSP for the iframe's document: no script of any kind, no plugins,
/// no forms, no base, and images only inline unless remote ones were
/// asked for. `sandbox` also applies if the URL is opened directly.
pub fn frame_csp(allow_remote: bool) -> String {
    let img = if allow_remote {
        "data: cid: http: https:"
    } else {
        "data: cid:"
    };
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src {img}; font-src 'none'; \
         form-action 'none'; base-uri 'none'; frame-ancestors 'self'; \
         sandbox allow-popups allow-popups-to-escape-sandbox"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_and_tricks_go() {
        let dirty = r#"<p onclick="x()">hi<script>alert(1)</script></p>
<svg onload="alert(2)"><circle/></svg>
<a href="javascript:alert(3)">js</a> <a href="https://example.org/">ok</a>
<meta http-equiv="refresh" content="0;url=https://evil.example/">
<base href="https://evil.example/"><div style="width: expression(alert(4))">e</div>
<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input></form>
<img src="https://tracker.example/p.gif"><img src="data:image/png;base64,AAAA">"#;
        let c = sanitize(dirty, false);
        for bad in [
            "script",
            "onclick",
            "onload",
            "javascript",
            "refresh",
            "<base",
            "expression",
            "iframe",
            "<form",
            "tracker",
        ] {
            assert!(
                !c.html.to_ascii_lowercase().contains(bad),
                "{bad} survived: {}",
                c.html
            );
        }
        assert!(
            c.html.contains(
                r#"<a href="https://example.org/" target="_blank" rel="noopener noreferrer">ok</a>"#
            ),
            "{}",
            c.html
        );
        assert!(c.html.contains("data:image/png"));
        assert_eq!(c.blocked, 1);
        let shown = sanitize(dirty, true);
        assert!(shown.html.contains("https://tracker.example/p.gif"));
        assert_eq!(shown.blocked, 0);
        assert!(frame_csp(false).contains("img-src data: cid:;"));
    }
}
