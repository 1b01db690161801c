//! Mail client autoconfiguration, so the `autoconfig.` record the admin
//! DNS helper suggests leads somewhere: Thunderbird's
//! `/mail/config-v1.1.xml` (also under `/.well-known/autoconfig/`), built
//! from the hostname and the listeners this server really has.

use actix_web::{HttpResponse, web};

use crate::config::Config;

/// The servers a client may use, as (type, port, socket type), from the
/// configured listeners; a listener that is off is not offered.
pub fn servers(cfg: &Config) -> Vec<(&'static str, u16, &'static str)> {
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
    };
    let l = &cfg.listeners;
    let mut out = Vec::new();
    for (kind, addr, socket) in [
        ("imap", &l.imaps, "SSL"),
        ("imap", &l.imap, "STARTTLS"),
        ("pop3", &l.pop3s, "SSL"),
        ("pop3", &l.pop3, "STARTTLS"),
        ("smtp", &l.smtps, "SSL"),
        ("smtp", &l.submission, "STARTTLS"),
    ] {
        if let Some(p) = port(addr) {
            out.push((kind, p, socket));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn document(cfg: &Config, domain: &str) -> String {
    let host = xml_escape(&cfg.hostname);
    let domain = xml_escape(domain);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
         <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    \
         <displayName>Tern mail for {domain}</displayName>\n"
    );
    for (kind, port, socket) in servers(cfg) {
        let tag = if kind == "smtp" {
            "outgoingServer"
        } else {
            "incomingServer"
        };
        x.push_str(&format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      \
             <socketType>{socket}</socketType>\n      <username>%EMAILADDRESS%</username>\n      \
             <authentication>password-cleartext</authentication>\n    </{tag}>\n"
        ));
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

#[derive(serde::Deserialize)]
pub struct Q {
    #[serde(default)]
    emailaddress: String,
}

pub async fn config_xml(cfg: web::Data<Config>, q: web::Query<Q>) -> HttpResponse {
    let domain = q
        .emailaddress
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_else(|| cfg.hostname.clone());
    HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(document(&cfg, &domain))
}

/// `https://mta-sts.D/.well-known/mta-sts.txt` (RFC 8461 §3.3): this
/// host's policy, for a local domain D named by the Host header; 404 for
/// any other name, and when the mode is `none`.
pub async fn mta_sts_policy(
    req: actix_web::HttpRequest,
    settings: web::Data<app::WebSettings>,
    core: web::Data<mailcore::Core>,
) -> HttpResponse {
    let not_found = || {
        HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no MTA-STS policy here\n")
    };
    let host = req.connection_info().host().to_ascii_lowercase();
    let host = host.rsplit_once(':').map_or(host.as_str(), |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host.as_str()
        }
    });
    let (Some(domain), Some(policy)) = (
        host.strip_prefix("mta-sts."),
        settings.mta_sts_policy.as_ref(),
    ) else {
        return not_found();
    };
    match core.domain(domain).await {
        Ok(Some(_)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            // Senders cache by max_age and the TXT id, not HTTP.
            .insert_header(("Cache-Control", "max-age=300"))
            .body(policy.clone()),
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "MTA-STS policy: domain lookup failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("try again later\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_only_the_listeners_that_are_on() {
        let mut cfg = Config {
            hostname: "mail.example.org".into(),
            ..Default::default()
        };
        cfg.listeners.pop3 = String::new();
        cfg.listeners.pop3s = String::new();
        let x = document(&cfg, "example.org");
        assert!(x.contains("<incomingServer type=\"imap\">\n      <hostname>mail.example.org</hostname>\n      <port>3993</port>\n      <socketType>SSL</socketType>"), "{x}");
        assert!(x.contains("<outgoingServer type=\"smtp\">\n      <hostname>mail.example.org</hostname>\n      <port>3587</port>\n      <socketType>STARTTLS</socketType>"), "{x}");
        assert!(!x.contains("pop3"), "{x}");
        assert!(x.contains("<domain>example.org</domain>"));
    }
}
