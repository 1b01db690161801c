//! `/status` and `/status/feed.atom`: the public status page (issue 22).
//!
//! Both render the board the status monitor keeps in memory
//! (`mailcore::status`), never the database, so they answer in well under
//! a millisecond and keep answering, with the reason, while the store is
//! down. Plain HTML with no script (a meta refresh keeps it current), a
//! small stylesheet of its own, cacheable for a few seconds, and nothing
//! private: services, states, plain words, remote domains with their reply
//! codes, and the notes an admin wrote for the public.

use std::fmt::Write as _;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use app::head::escape_html as esc;
use mailcore::Core;
use mailcore::status::{Board, Incident, Note, State};

use crate::config::Config;

/// How long a browser or proxy may reuse the page.
const MAX_AGE_SECS: u32 = 5;
/// How often an open page reloads itself.
const REFRESH_SECS: u32 = 30;

const CSP: &str = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const CSS: &str = r#":root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6475;--bg:#fff;--line:#d8dde6;--ok:#1b7f3b;--warn:#9a6200;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#a3abba;--bg:#14171d;--line:#2f3542;--ok:#5cc98a;--warn:#f0b45a;--bad:#ff8a80}}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,sans-serif}
main{max-width:52rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.6rem;margin:0 0 .5rem}h2{font-size:1.2rem;margin:2rem 0 .5rem}h3{font-size:1rem;margin:0}
.overall{font-size:1.2rem;font-weight:600;padding:.75rem 1rem;border-radius:.4rem;border:1px solid var(--line)}
.muted,.when{color:var(--muted);font-size:.9rem}
table{width:100%;border-collapse:collapse}th,td{text-align:left;vertical-align:top;padding:.6rem .4rem;border-bottom:1px solid var(--line)}
th{font-weight:600;width:30%}td.state{width:7rem;font-weight:600;white-space:nowrap}
.s-operating{color:var(--ok)}.s-degraded{color:var(--warn)}.s-down{color:var(--bad)}
ol.incidents{list-style:none;padding:0}ol.incidents>li{border-left:4px solid var(--line);padding:.25rem 0 .25rem 1rem;margin:0 0 1.25rem}
ol.incidents>li.open{border-color:var(--warn)}ul.notes{padding-left:1.2rem}blockquote{margin:.25rem 0}
a{color:inherit}
"#;

fn rfc3339(t: i64) -> String {
    mail_parser::DateTime::from_timestamp(t).to_rfc3339()
}

fn when(t: i64) -> String {
    format!("{} UTC", mailcore::view::short_date(t))
}

fn overall(b: &Board) -> &'static str {
    if b.checked_at == 0 {
        return "Checking the services…";
    }
    match b.worst() {
        State::Operating => "All services are operating normally.",
        State::Degraded => "Some services are degraded.",
        State::Down => "Some services are down.",
    }
}

fn anchor(i: &Incident) -> String {
    match i.id {
        Some(id) => format!("incident-{id}"),
        None => format!("incident-{}-{}", i.service.as_str(), i.opened_at),
    }
}

fn duration_words(secs: i64) -> String {
    let m = (secs.max(0) + 59) / 60;
    match m {
        0 | 1 => "about a minute".into(),
        m if m < 120 => format!("{m} minutes"),
        m => format!("{} h {} min", m / 60, m % 60),
    }
}

/// When an incident ran: "Since …; ongoing." or "… to … (12 minutes).",
/// alike on the page and in the feed.
fn span(i: &Incident) -> String {
    match i.closed_at {
        None => format!("Since {}; ongoing.", when(i.opened_at)),
        Some(c) => format!(
            "{} to {} ({}).",
            when(i.opened_at),
            when(c),
            duration_words(c - i.opened_at)
        ),
    }
}

fn notes_html(out: &mut String, notes: &[Note]) {
    if notes.is_empty() {
        return;
    }
    out.push_str("<ul class=\"notes\">");
    for n in notes {
        let _ = write!(
            out,
            "<li data-testid=\"note\"><span class=\"when\">{}</span><blockquote>{}</blockquote></li>",
            when(n.created_at),
            esc(&n.body)
        );
    }
    out.push_str("</ul>");
}

/// The page, from the board.
pub fn render_page(hostname: &str, b: &Board) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let host = esc(hostname);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<title>Status of {host}</title>\
<link rel=\"stylesheet\" href=\"/status.css\">\
<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Status of {host}\" href=\"/status/feed.atom\">\
</head><body><main>\
<h1>Status of {host}</h1>\
<p class=\"overall s-{}\" role=\"status\" data-testid=\"overall\">{}</p>",
        b.worst().as_str(),
        overall(b)
    );
    if b.checked_at > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">Checked {}. This page reloads every {REFRESH_SECS} seconds.</p>",
            when(b.checked_at)
        );
    }
    out.push_str("<table class=\"services\"><tbody>");
    for s in &b.services {
        let _ = write!(
            out,
            "<tr data-service=\"{}\" data-state=\"{}\"><th scope=\"row\">{}</th><td class=\"state s-{}\">{}</td><td>{}</td></tr>",
            s.service.as_str(),
            s.state.as_str(),
            esc(s.service.title()),
            s.state.as_str(),
            s.state.title(),
            esc(&s.summary)
        );
    }
    out.push_str("</tbody></table>");
    if let Some(r) = b.delivery_success {
        let _ = write!(
            out,
            "<p class=\"muted\" data-testid=\"ratio\">{:.0}% of outgoing delivery attempts in the last 15 minutes succeeded.</p>",
            r * 100.0
        );
    }
    if !b.notes.is_empty() {
        out.push_str("<h2>From the operators</h2>");
        notes_html(&mut out, &b.notes);
    }
    out.push_str("<h2>Incidents in the last 7 days</h2>");
    if b.incidents.is_empty() {
        out.push_str("<p data-testid=\"no-incidents\">No incidents.</p>");
    } else {
        out.push_str("<ol class=\"incidents\">");
        for i in &b.incidents {
            let open = i.closed_at.is_none();
            let _ = write!(
                out,
                "<li id=\"{}\" class=\"{}\" data-testid=\"incident\" data-service=\"{}\" data-open=\"{open}\"><h3>{}: <span class=\"s-{}\">{}</span>{}</h3><p class=\"when\">",
                anchor(i),
                if open { "open" } else { "closed" },
                i.service.as_str(),
                esc(i.service.title()),
                i.state.as_str(),
                i.state.title(),
                if open { "" } else { " (resolved)" }
            );
            let _ = write!(out, "{}</p><p>{}</p>", span(i), esc(&i.summary));
            notes_html(&mut out, &i.notes);
            out.push_str("</li>");
        }
        out.push_str("</ol>");
    }
    out.push_str(
        "<p class=\"muted\"><a href=\"/status/feed.atom\">Atom feed</a> · <a href=\"/\">Webmail</a></p></main></body></html>",
    );
    out
}

/// The feed (RFC 4287): one entry per incident and per note of its own.
pub fn render_feed(hostname: &str, b: &Board) -> String {
    let base = format!("https://{}/status", esc(hostname));
    let mut out = String::with_capacity(4 * 1024);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
<title>Status of {}</title><id>{base}</id><updated>{}</updated>\
<link rel=\"alternate\" href=\"{base}\"/><link rel=\"self\" href=\"{base}/feed.atom\"/>\
<author><name>{}</name></author>\n",
        esc(hostname),
        rfc3339(b.updated_at()),
        esc(hostname)
    );
    for i in &b.incidents {
        let updated = i
            .notes
            .iter()
            .map(|n| n.created_at)
            .chain([i.closed_at.unwrap_or(i.opened_at), i.updated_at])
            .max()
            .unwrap_or(i.opened_at);
        let mut text = format!("{}\n\n{}", span(i), i.summary);
        for n in &i.notes {
            let _ = write!(text, "\n\n{}: {}", when(n.created_at), n.body);
        }
        let _ = write!(
            out,
            "<entry><id>{base}#{a}</id><title>{}: {}{}</title><published>{}</published><updated>{}</updated>\
<link rel=\"alternate\" href=\"{base}#{a}\"/><content type=\"text\">{}</content></entry>",
            esc(i.service.title()),
            i.state.title(),
            if i.closed_at.is_some() {
                " (resolved)"
            } else {
                ""
            },
            rfc3339(i.opened_at),
            rfc3339(updated),
            esc(&text),
            a = anchor(i),
        );
        out.push('\n');
    }
    for n in &b.notes {
        let _ = write!(
            out,
            "<entry><id>{base}#note-{}</id><title>From the operators</title><published>{t}</published><updated>{t}</updated>\
<link rel=\"alternate\" href=\"{base}\"/><content type=\"text\">{}</content></entry>",
            n.id,
            esc(&format!("{}: {}", when(n.created_at), n.body)),
            t = rfc3339(n.created_at),
        );
        out.push('\n');
    }
    out.push_str("</feed>\n");
    out
}

fn respond(content_type: &str, body: String, started: Instant) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", format!("public, max-age={MAX_AGE_SECS}")))
        .insert_header(("Content-Security-Policy", CSP))
        // How long rendering took, for the operator's browser tools.
        .insert_header((
            "Server-Timing",
            format!("render;dur={:.3}", started.elapsed().as_secs_f64() * 1000.0),
        ))
        .body(body)
}

pub async fn page(core: web::Data<Core>, cfg: web::Data<Config>) -> HttpResponse {
    let started = Instant::now();
    let body = render_page(&cfg.hostname, &core.status_board());
    respond("text/html; charset=utf-8", body, started)
}

pub async fn feed(core: web::Data<Core>, cfg: web::Data<Config>) -> HttpResponse {
    let started = Instant::now();
    let body = render_feed(&cfg.hostname, &core.status_board());
    respond("application/atom+xml; charset=utf-8", body, started)
}

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CSS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailcore::status::{Service, ServiceStatus};

    fn board() -> Board {
        Board {
            checked_at: 1_796_574_000,
            services: vec![ServiceStatus {
                service: Service::Outbound,
                state: State::Degraded,
                summary: "Mail to <b>x.test</b> is being retried".into(),
            }],
            incidents: vec![Incident {
                id: Some(7),
                service: Service::Outbound,
                state: State::Degraded,
                summary: "Mail to <b>x.test</b> & co".into(),
                opened_at: 1_796_573_000,
                closed_at: None,
                updated_at: 1_796_574_000,
                notes: vec![Note {
                    id: 1,
                    incident_id: Some(7),
                    author: "admin@example.test".into(),
                    body: "</blockquote><script>alert(1)</script>".into(),
                    created_at: 1_796_573_500,
                }],
            }],
            notes: Vec::new(),
            delivery_success: Some(0.5),
        }
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let html = render_page("mx.<example>.test", &board());
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<title>Status of mx.&lt;example&gt;.test</title>"));
        assert!(html.contains("Some services are degraded."));
        assert!(html.contains("data-open=\"true\""));
        assert!(html.contains("Since 2026-12-06 16:03 UTC; ongoing."));
        // Who wrote a note is for the record, not the public.
        assert!(!html.contains("admin@example.test"));
    }

    #[test]
    fn the_feed_is_atom_with_escaped_text() {
        let xml = render_feed("mx.example.test", &board());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
        assert!(xml.contains("<id>https://mx.example.test/status#incident-7</id>"));
        assert!(xml.contains("<title>Outgoing delivery: Degraded</title>"));
        assert!(xml.contains("&lt;script&gt;"));
        assert!(!xml.contains("<script>"));
        assert!(
            xml.contains("<updated>2026-12-06T16:20:00Z</updated>"),
            "{xml}"
        );
    }
}
