//! Finding an outside address's servers from the address alone, in the
//! order Thunderbird and the RFCs suggest: the provider's autoconfig file,
//! RFC 6186 SRV records, the domain's MX host, then common host names.

use std::time::Duration;

use mailcore::outside::{Discovered, Endpoint, FoundBy, OutsideSettings, Protocol, Security};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Outside;
use super::dns::Srv;
use super::net::{self, Bounded, Budget, Conn};

/// Largest autoconfig answer read (real ones are a few KiB).
const MAX_AUTOCONFIG: u64 = 256 * 1024;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Outside {
    pub(super) async fn find(&self, address: &str) -> Option<Discovered> {
        let (local, domain) = address.rsplit_once('@')?;
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if local.is_empty() || !mailcore::outside::valid_host(&domain) {
            return None;
        }
        if let Some(d) = self.by_autoconfig(address, &domain).await {
            return Some(d);
        }
        if let Some(d) = self.by_srv(address, &domain).await {
            return Some(d);
        }
        if let Some(d) = self.by_mx(address, &domain).await {
            return Some(d);
        }
        self.by_guess(address, &domain).await
    }

    async fn by_autoconfig(&self, address: &str, domain: &str) -> Option<Discovered> {
        let q = format!(
            "/mail/config-v1.1.xml?emailaddress={}",
            app::mail::encode(address)
        );
        let wk = format!(
            "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={}",
            app::mail::encode(address)
        );
        let auto = format!("autoconfig.{domain}");
        let tries = [
            (true, auto.as_str(), q.as_str()),
            (true, domain, wk.as_str()),
            (false, auto.as_str(), q.as_str()),
            (false, domain, wk.as_str()),
        ];
        for (https, host, path) in tries {
            let url = format!("{}://{host}{path}", if https { "https" } else { "http" });
            match self.http_get(https, host, path).await {
                Ok(body) => {
                    if let Some(settings) = parse_autoconfig(&body, address) {
                        return Some(Discovered {
                            settings,
                            found_by: FoundBy::Autoconfig(url),
                        });
                    }
                    tracing::debug!(%url, "autoconfig answer has no usable server");
                }
                Err(e) => tracing::debug!(%url, error = %e, "no autoconfig"),
            }
        }
        None
    }

    /// A small HTTP/1.1 GET: status 200 and a body of bounded size, or an
    /// error. Redirects are not followed (a moved file reads as absent).
    async fn http_get(&self, https: bool, host: &str, path: &str) -> Result<String, String> {
        let port = if https {
            self.cfg.autoconfig_https_port
        } else {
            self.cfg.autoconfig_http_port
        };
        let tcp = net::connect(
            &*self.dns,
            host,
            port,
            self.cfg.allow_private,
            PROBE_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        let conn = if https {
            Conn::Tls(Box::new(
                net::tls(tcp, host, None, PROBE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        } else {
            Conn::Plain(tcp)
        };
        let mut s = Bounded::new(conn, Budget::new(MAX_AUTOCONFIG));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Tern\r\nAccept: application/xml, text/xml\r\nConnection: close\r\n\r\n"
        );
        let mut raw = Vec::new();
        let io = async {
            s.write_all(req.as_bytes()).await?;
            s.flush().await?;
            s.read_to_end(&mut raw).await
        };
        tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .map_err(|_| "no answer in 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        parse_http(&raw)
    }

    async fn by_srv(&self, address: &str, domain: &str) -> Option<Discovered> {
        let pick = |mut v: Vec<Srv>| {
            // RFC 6186 §3.4: a target of "." says the service is not
            // offered. Lowest priority first, then the heaviest weight.
            v.retain(|r| !r.target.is_empty() && r.port != 0);
            v.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
            v.into_iter().next()
        };
        let mut incoming = None;
        for (name, protocol, security) in [
            ("_imaps._tcp", Protocol::Imap, Security::Tls),
            ("_imap._tcp", Protocol::Imap, Security::StartTls),
            ("_pop3s._tcp", Protocol::Pop3, Security::Tls),
            ("_pop3._tcp", Protocol::Pop3, Security::StartTls),
        ] {
            if let Ok(v) = self.dns.srv(&format!("{name}.{domain}")).await
                && let Some(r) = pick(v)
            {
                incoming = Some((protocol, Endpoint::new(r.target, r.port, security)));
                break;
            }
        }
        let (protocol, incoming) = incoming?;
        let mut outgoing = None;
        for (name, security) in [
            ("_submissions._tcp", Security::Tls),
            ("_submission._tcp", Security::StartTls),
        ] {
            if let Ok(v) = self.dns.srv(&format!("{name}.{domain}")).await
                && let Some(r) = pick(v)
            {
                outgoing = Some(Endpoint::new(r.target, r.port, security));
                break;
            }
        }
        Some(Discovered {
            settings: OutsideSettings {
                address: address.to_owned(),
                username: address.to_owned(),
                protocol,
                incoming,
                outgoing,
            },
            found_by: FoundBy::Srv,
        })
    }

    async fn by_mx(&self, address: &str, domain: &str) -> Option<Discovered> {
        let host = self.dns.mx(domain).await.ok()?.into_iter().next()?;
        let settings = self.probe_host(address, &host, &host).await?;
        Some(Discovered {
            settings,
            found_by: FoundBy::Mx(host),
        })
    }

    async fn by_guess(&self, address: &str, domain: &str) -> Option<Discovered> {
        for prefix in ["imap", "mail", "pop", "pop3"] {
            let host = format!("{prefix}.{domain}");
            let smtp = if prefix == "mail" {
                host.clone()
            } else {
                format!("smtp.{domain}")
            };
            if let Some(settings) = self.probe_host(address, &host, &smtp).await {
                return Some(Discovered {
                    settings,
                    found_by: FoundBy::Guess(host),
                });
            }
        }
        None
    }

    /// The first of IMAPS, IMAP, POP3S, POP3 that accepts a connection on
    /// `host`, and submission on `smtp` (465, else 587).
    async fn probe_host(&self, address: &str, host: &str, smtp: &str) -> Option<OutsideSettings> {
        let mut found = None;
        for (port, protocol, security) in [
            (993, Protocol::Imap, Security::Tls),
            (143, Protocol::Imap, Security::StartTls),
            (995, Protocol::Pop3, Security::Tls),
            (110, Protocol::Pop3, Security::StartTls),
        ] {
            if self.answers(host, port).await {
                found = Some((protocol, Endpoint::new(host, port, security)));
                break;
            }
        }
        let (protocol, incoming) = found?;
        let mut outgoing = None;
        for (port, security) in [(465, Security::Tls), (587, Security::StartTls)] {
            if self.answers(smtp, port).await {
                outgoing = Some(Endpoint::new(smtp, port, security));
                break;
            }
        }
        Some(OutsideSettings {
            address: address.to_owned(),
            username: address.to_owned(),
            protocol,
            incoming,
            outgoing,
        })
    }

    async fn answers(&self, host: &str, port: u16) -> bool {
        net::connect(
            &*self.dns,
            host,
            port,
            self.cfg.allow_private,
            PROBE_TIMEOUT,
        )
        .await
        .is_ok()
    }
}

/// Status 200 and the body (chunked or not) as text.
fn parse_http(raw: &[u8]) -> Result<String, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("HTTP {code}"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_txt = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).ok_or("short chunk")?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).ok_or("short chunk")?;
    }
}

/// Reads Thunderbird's autoconfig format (config-v1.1.xml): the best
/// incoming server (IMAP before POP3, TLS before STARTTLS; plain text is
/// never used) and the best outgoing one.
pub fn parse_autoconfig(xml: &str, address: &str) -> Option<OutsideSettings> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let (local, domain) = address.rsplit_once('@')?;
    let fill = |t: &str| {
        t.replace("%EMAILADDRESS%", address)
            .replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)
    };
    let child = |n: roxmltree::Node, tag: &str| {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
    };
    let server = |n: roxmltree::Node| -> Option<(Endpoint, String)> {
        let host = fill(&child(n, "hostname")?);
        let port: u16 = child(n, "port")?.parse().ok()?;
        let security = match child(n, "socketType")?.to_ascii_uppercase().as_str() {
            "SSL" | "TLS" => Security::Tls,
            "STARTTLS" => Security::StartTls,
            _ => return None,
        };
        if !mailcore::outside::valid_host(&host) || port == 0 {
            return None;
        }
        let user = child(n, "username")
            .map(|u| fill(&u))
            .unwrap_or_else(|| address.to_owned());
        Some((Endpoint::new(host, port, security), user))
    };
    let provider = doc
        .descendants()
        .find(|n| n.has_tag_name("emailProvider"))?;
    let rank = |p: Protocol, s: Security| match (p, s) {
        (Protocol::Imap, Security::Tls) => 0,
        (Protocol::Imap, Security::StartTls) => 1,
        (Protocol::Pop3, Security::Tls) => 2,
        (Protocol::Pop3, Security::StartTls) => 3,
    };
    let mut incoming: Option<(u8, Protocol, Endpoint, String)> = None;
    let mut outgoing: Option<(u8, Endpoint)> = None;
    for n in provider.children().filter(|n| n.is_element()) {
        let kind = n.attribute("type").unwrap_or_default().to_ascii_lowercase();
        if n.has_tag_name("incomingServer") {
            let Some(p) = Protocol::parse(&kind) else {
                continue;
            };
            if let Some((ep, user)) = server(n) {
                let r = rank(p, ep.security);
                if incoming.as_ref().is_none_or(|(best, ..)| r < *best) {
                    incoming = Some((r, p, ep, user));
                }
            }
        } else if n.has_tag_name("outgoingServer")
            && kind == "smtp"
            && let Some((ep, _)) = server(n)
        {
            let r = u8::from(ep.security == Security::StartTls);
            if outgoing.as_ref().is_none_or(|(best, _)| r < *best) {
                outgoing = Some((r, ep));
            }
        }
    }
    let (_, protocol, incoming, username) = incoming?;
    Some(OutsideSettings {
        address: address.to_owned(),
        username,
        protocol,
        incoming,
        outgoing: outgoing.map(|(_, e)| e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="example.com">
    <domain>example.com</domain>
    <incomingServer type="pop3">
      <hostname>pop.example.com</hostname><port>995</port>
      <socketType>SSL</socketType><username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.example.com</hostname><port>143</port>
      <socketType>STARTTLS</socketType><username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>plain.example.com</hostname><port>143</port>
      <socketType>plain</socketType><username>x</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.%EMAILDOMAIN%</hostname><port>587</port>
      <socketType>STARTTLS</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

    #[test]
    fn autoconfig_prefers_imap_and_never_plain_text() {
        let s = parse_autoconfig(SAMPLE, "jo@example.com").unwrap();
        assert_eq!(s.protocol, Protocol::Imap);
        assert_eq!(
            s.incoming,
            Endpoint::new("imap.example.com", 143, Security::StartTls)
        );
        assert_eq!(s.username, "jo");
        assert_eq!(
            s.outgoing,
            Some(Endpoint::new("smtp.example.com", 587, Security::StartTls))
        );
        assert!(parse_autoconfig("<clientConfig/>", "jo@example.com").is_none());
        assert!(parse_autoconfig("not xml <", "jo@example.com").is_none());
    }

    #[test]
    fn http_answers_plain_and_chunked() {
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap(),
            "hi"
        );
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")
                .unwrap(),
            "hello"
        );
        assert!(parse_http(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
