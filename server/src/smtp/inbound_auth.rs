//! Who really sent mail that comes from other servers (port 25): SPF
//! (RFC 7208) for the MAIL FROM and HELO identities, DKIM (RFC 6376) and
//! DMARC (RFC 7489), checked by Stalwart's mail-auth, and written into one
//! `Authentication-Results:` header (RFC 8601) naming this host. Any such
//! header already in the message that claims to be from this host is
//! removed first (RFC 8601 §5): a sender must not be able to vouch for
//! itself in our name.
//!
//! The verdict, at the end of DATA:
//! - a `From:` in one of this server's own domains that neither SPF nor
//!   DKIM vouches for (aligned with that domain) is refused with `550
//!   5.7.1`: nobody outside may send as our users, whether or not the
//!   domain publishes DMARC;
//! - other DMARC failures follow the sender domain's policy: `p=reject` is
//!   refused, `p=quarantine` goes to the recipients' Junk folders, and
//!   `p=none` is delivered; each with the result in the header;
//! - when the answer depends on a DNS lookup that failed, `451 4.7.0`: the
//!   sender retries, rather than a wrong verdict now;
//! - bounces (`MAIL FROM:<>`) are checked with the HELO identity, as
//!   RFC 7208 §2.3 says, and flow like any other mail;
//! - an ARC chain (RFC 8617) is verified and its result written too
//!   (`arc=`). When the chain passes and its last sealer is one the
//!   operator trusts (`smtp.arc_trusted_sealers`: a mailing list, a
//!   forwarder, which break DKIM and SPF by design), a DMARC failure or a
//!   local `From:` without SPF or DKIM is delivered instead of refused,
//!   as the large receivers do (RFC 8617 §7.2).
//!
//! DNS goes through hickory: the system resolver, or `smtp.nameserver`
//! (tests point it at a DNS server of their own on 127.0.0.1).

use std::net::{IpAddr, SocketAddr};

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use mailcore::Core;
use mailcore::address::domain_aligned;

/// What to do with a message after the checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it with this header on top (and others' claims to be this
    /// host taken out).
    Deliver { header: String },
    /// The same, to each recipient's Junk folder (DMARC `p=quarantine`).
    Junk { header: String },
    /// `550 5.7.1` and why.
    Reject(String),
    /// `451 4.7.0` and why.
    TempFail(String),
}

pub struct InboundAuth {
    auth: MessageAuthenticator,
    hostname: String,
    /// Lower case, without final dots.
    trusted_sealers: Vec<String>,
}

impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAuth")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl InboundAuth {
    /// `nameserver`: `ip:port`, or None for /etc/resolv.conf.
    pub fn new(hostname: &str, nameserver: Option<SocketAddr>) -> Result<Self, String> {
        Ok(InboundAuth {
            auth: MessageAuthenticator(crate::resolver::resolver(nameserver)?),
            hostname: hostname.to_owned(),
            trusted_sealers: Vec::new(),
        })
    }

    /// `list`: comma-separated sealer domains to trust.
    pub fn trust_arc_sealers(mut self, list: &str) -> Self {
        self.trusted_sealers = list
            .split(',')
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        self
    }

    pub async fn check(
        &self,
        core: &Core,
        raw: &[u8],
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Verdict {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return Verdict::Reject("The message header could not be parsed".into());
        };
        let spf = self
            .auth
            .verify_spf(SpfParameters::verify(ip, helo, &self.hostname, mail_from))
            .await;
        let dkim = self.auth.verify_dkim(&msg).await;
        let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&msg, &dkim, mail_from_domain, &spf))
            .await;
        let from_domain = msg
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        tracing::debug!(spf = ?spf.result(), dkim = dkim.len(), dmarc_spf = ?dmarc.spf_result(), dmarc_dkim = ?dmarc.dkim_result(), policy = ?dmarc.policy(), from = %from_domain, "sender checks");
        let arc = self.auth.verify_arc(&msg).await;
        // The sealer of the last ARC set, when the whole chain verifies.
        let sealer = (*arc.result() == DkimResult::Pass)
            .then(|| arc.sets().last())
            .flatten()
            .map(|s| s.seal.header.d.trim_end_matches('.').to_ascii_lowercase());
        let trusted_arc = sealer
            .as_ref()
            .is_some_and(|d| self.trusted_sealers.iter().any(|t| t == d));
        let header = AuthenticationResults::new(&self.hostname)
            .with_dkim_results(&dkim, &from_domain)
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc)
            .to_header();

        // Our own domains: only SPF or DKIM aligned with the domain vouch.
        let local =
            !from_domain.is_empty() && matches!(core.domain(&from_domain).await, Ok(Some(_)));
        if local {
            let dkim_ok = dkim.iter().any(|o| {
                *o.result() == DkimResult::Pass
                    && o.signature()
                        .is_some_and(|s| domain_aligned(&s.d, &from_domain))
            });
            let spf_ok =
                spf.result() == SpfResult::Pass && domain_aligned(mail_from_domain, &from_domain);
            if !(dkim_ok || spf_ok) && trusted_arc {
                tracing::info!(from = %from_domain, sealer = ?sealer, "local From: without SPF or DKIM, delivered on a trusted ARC chain");
            } else if !(dkim_ok || spf_ok) {
                let temp = spf.result() == SpfResult::TempError
                    || dkim
                        .iter()
                        .any(|o| matches!(o.result(), DkimResult::TempError(_)));
                if temp {
                    return Verdict::TempFail(
                        "A DNS lookup failed while checking the sender; try again later".into(),
                    );
                }
                return Verdict::Reject(format!(
                    "{from_domain} is a domain of this server, and neither SPF nor DKIM shows this message came from it"
                ));
            }
            return Verdict::Deliver { header };
        }
        // DMARC's verdict: the better of its SPF and DKIM results, or a
        // failure when the domain has a record and neither aligned.
        match dmarc.result() {
            DmarcResult::Fail(_) if trusted_arc => {
                tracing::info!(from = %from_domain, sealer = ?sealer, "DMARC failure delivered on a trusted ARC chain");
                Verdict::Deliver { header }
            }
            DmarcResult::TempError(_) => Verdict::TempFail(
                "A DNS lookup failed while checking the sender (DMARC); try again later".into(),
            ),
            DmarcResult::Fail(_) if dmarc.policy() == Policy::Reject => Verdict::Reject(format!(
                "DMARC: {from_domain} asks receivers to reject mail that fails its checks (p=reject), and this message fails them"
            )),
            DmarcResult::Fail(_) if dmarc.policy() == Policy::Quarantine => {
                Verdict::Junk { header }
            }
            _ => Verdict::Deliver { header },
        }
    }

    /// The message without `Authentication-Results:` fields that claim to
    /// be from this host (RFC 8601 §5), with `header` on top.
    pub fn stamp(&self, header: &str, raw: &[u8]) -> Vec<u8> {
        let mut out = header.as_bytes().to_vec();
        out.extend(strip_our_results(raw, &self.hostname));
        out
    }
}

/// Removes `Authentication-Results:` fields (with their continuation
/// lines) whose authserv-id is `hostname`, from the header only.
pub fn strip_our_results(raw: &[u8], hostname: &str) -> Vec<u8> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 2);
    let (head, body) = raw.split_at(end);
    let mut out = Vec::with_capacity(raw.len());
    let mut dropping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation {
            if !dropping {
                out.extend_from_slice(line);
            }
            continue;
        }
        dropping = false;
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':')
            && name.trim().eq_ignore_ascii_case("authentication-results")
        {
            let id = value
                .trim_start()
                .split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap_or("");
            if id.eq_ignore_ascii_case(hostname) {
                dropping = true;
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_results_are_taken_out() {
        let raw = b"Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=a@b\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.test; in the body stays\r\n";
        let out = String::from_utf8(strip_our_results(raw, "MX.example.test")).unwrap();
        assert_eq!(
            out,
            "Authentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.test; in the body stays\r\n"
        );
        assert!(domain_aligned("mail.example.org", "example.org"));
        assert!(domain_aligned("Example.org.", "example.org"));
        assert!(!domain_aligned("badexample.org", "example.org"));
    }
}
