//! What a page puts in `<head>` beyond the shell: its title, and on the
//! server the page's Content-Security-Policy.
//!
//! Invariants:
//! - Every page title goes through [`PageTitle`]. leptos_meta 0.8 writes the
//!   `<Title>` text into the server's HTML as it is, unescaped, so a Subject
//!   of `</title><script>…` would be markup there. We escape it on the server;
//!   in the browser the same text goes to `document.title`, which is plain
//!   text and must not be escaped (or the user would read `&lt;`).
//! - Every page rendered by Leptos carries a script CSP whose nonce is the
//!   one Leptos puts on its own hydration scripts, so a missed escape
//!   anywhere still cannot run script.

use leptos::prelude::*;
use leptos_meta::Title;

/// HTML text escaping for the few places that bypass the view macro's own.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The title as it must be handed to leptos_meta on this side.
pub fn title_text(text: String) -> String {
    if cfg!(feature = "ssr") {
        escape_html(&text)
    } else {
        text
    }
}

/// `<title>` for a page; see the module notes for why not `Title` itself.
#[component]
pub fn PageTitle(#[prop(into)] text: String) -> impl IntoView {
    view! { <Title text=title_text(text)/> }
}

/// The policy for app pages. Scripts: only those carrying this response's
/// nonce (the hydration loader), and the wasm it instantiates. Styles come
/// from our own stylesheet only. The message body frame is same-origin
/// `/msg/body`, which has its own stricter policy.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; frame-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Sets the page's CSP header on the server response; nothing in the browser.
pub fn provide_page_csp() {
    #[cfg(feature = "ssr")]
    {
        use actix_web::http::header::{CONTENT_SECURITY_POLICY, HeaderValue};
        let (Some(nonce), Some(res)) = (
            leptos::nonce::use_nonce(),
            use_context::<leptos_actix::ResponseOptions>(),
        ) else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&page_csp(&nonce)) {
            res.insert_header(CONTENT_SECURITY_POLICY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_titles() {
        assert_eq!(
            escape_html(r#"hi </title><script>x("a'b")</script>&"#),
            "hi &lt;/title&gt;&lt;script&gt;x(&quot;a&#39;b&quot;)&lt;/script&gt;&amp;"
        );
        #[cfg(feature = "ssr")]
        assert_eq!(title_text("<b>".into()), "&lt;b&gt;");
    }

    #[test]
    fn csp_is_strict_about_scripts() {
        let p = page_csp("abc");
        assert!(p.contains("script-src 'nonce-abc' 'strict-dynamic' 'wasm-unsafe-eval';"));
        assert!(p.contains("object-src 'none'"));
        assert!(p.contains("base-uri 'none'"));
        assert!(!p.contains("unsafe-eval'") || p.contains("wasm-unsafe-eval"));
        assert!(!p.contains("script-src 'self'"));
    }
}
