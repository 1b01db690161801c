//! The DNS records a local domain needs, for the DNS helper (`tern domain
//! dns D` and the admin domain page): where its mail goes (MX), who may
//! send as it (SPF, RFC 7208), its DKIM keys (RFC 6376), what receivers do
//! with mail that fails both (DMARC, RFC 7489), and how mail clients find
//! the server (SRV, RFC 6186; Thunderbird's autoconfig), and how senders
//! reach it over authenticated TLS (MTA-STS, RFC 8461; DANE, RFC 7672;
//! TLS reporting, RFC 8460).

use crate::dkim::DkimKey;

/// Asks DNS whether a record is published (the server's hickory
/// resolver): `ok`, `missing`, `differs: ...` or `unknown (...)`. The admin
/// page gets one from the server, as the core knows nothing of DNS.
#[async_trait::async_trait]
pub trait DnsChecker: Send + Sync + 'static {
    async fn check(&self, r: &DnsRecord) -> String;
}

/// What the host publishes beyond the domain's own keys.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    /// The MTA-STS policy served at `https://mta-sts.D/.well-known/mta-sts.txt`
    /// ([`mta_sts_policy`]); None when the mode is `none`.
    pub mta_sts_policy: Option<String>,
    /// `3 1 1 <hex>`: the host certificate's key, for a DANE TLSA record.
    pub tlsa: Option<String>,
}

/// The MTA-STS policy text (RFC 8461 §3.2) for a host's domains.
pub fn mta_sts_policy(hostname: &str, mode: &str, max_age: u64) -> String {
    format!(
        "version: STSv1\r\nmode: {mode}\r\nmx: {}\r\nmax_age: {max_age}\r\n",
        hostname.trim_end_matches('.')
    )
}

/// The policy's id for the `_mta-sts` TXT record: it changes exactly when
/// the policy does, which is what tells senders to fetch it again (§3.1).
pub fn mta_sts_id(policy: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, policy.as_bytes());
    d.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `3 1 1 <sha256 of the SubjectPublicKeyInfo>` (DANE-EE, RFC 7671 §5.1:
/// survives certificate renewal with the same key).
pub fn tlsa_value(spki_der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("3 1 1 {hex}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// Fully qualified, without the final dot.
    pub name: String,
    pub rtype: &'static str,
    /// As the record's data, TXT values unquoted.
    pub value: String,
    /// What it is for, in words.
    pub why: String,
}

impl DnsRecord {
    /// The record as a zone file line. A TXT value longer than one
    /// character-string (255 bytes, RFC 1035 §3.3) is split into several,
    /// which receivers join (an RSA-2048 DKIM key is about 400).
    pub fn zone_line(&self) -> String {
        let data = if self.rtype == "TXT" {
            self.value
                .as_bytes()
                .chunks(255)
                .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            self.value.clone()
        };
        format!("{}. 3600 IN {} {data}", self.name, self.rtype)
    }
}

/// Every record `domain` needs when its mail host is `hostname`.
pub fn records(
    hostname: &str,
    domain: &str,
    keys: &[DkimKey],
    publish: &Publish,
) -> Vec<DnsRecord> {
    let host = hostname.trim_end_matches('.');
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let rec = |name: String, rtype, value: String, why: &str| DnsRecord {
        name,
        rtype,
        value,
        why: why.to_owned(),
    };
    let mut out = vec![
        rec(
            d.clone(),
            "MX",
            format!("10 {host}."),
            "other servers deliver mail for the domain here",
        ),
        rec(
            d.clone(),
            "TXT",
            "v=spf1 mx -all".into(),
            "SPF: only the domain's mail hosts send as it",
        ),
    ];
    for k in keys {
        let why = match k.publish_until() {
            None => format!("DKIM: {} key, signing", k.algorithm.as_str()),
            Some(t) => format!(
                "DKIM: {} key, rotated out; keep it published until {} (mail it signed may still be checked)",
                k.algorithm.as_str(),
                mail_parser::DateTime::from_timestamp(t).to_rfc3339()
            ),
        };
        out.push(rec(k.record_name(), "TXT", k.record_value(), &why));
    }
    out.push(rec(
        format!("_dmarc.{d}"),
        "TXT",
        format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}"),
        "DMARC: receivers put mail that fails SPF and DKIM alignment in junk, and report to postmaster",
    ));
    for (service, port, why) in [
        (
            "_submissions._tcp",
            465,
            "mail clients find submission over TLS (RFC 8314)",
        ),
        (
            "_submission._tcp",
            587,
            "mail clients find submission with STARTTLS",
        ),
        ("_imaps._tcp", 993, "mail clients find IMAP over TLS"),
        ("_pop3s._tcp", 995, "mail clients find POP3 over TLS"),
    ] {
        out.push(rec(
            format!("{service}.{d}"),
            "SRV",
            format!("0 1 {port} {host}."),
            why,
        ));
    }
    if let Some(policy) = &publish.mta_sts_policy {
        out.push(rec(
            format!("_mta-sts.{d}"),
            "TXT",
            format!("v=STSv1; id={}", mta_sts_id(policy)),
            "MTA-STS: senders fetch the policy (only TLS with a valid certificate for the MX); the id changes with the policy",
        ));
        out.push(rec(
            format!("mta-sts.{d}"),
            "CNAME",
            format!("{host}."),
            "MTA-STS: this host serves the policy over HTTPS (web.listen_tls on 443, with a certificate for this name)",
        ));
        out.push(rec(
            format!("_smtp._tls.{d}"),
            "TXT",
            format!("v=TLSRPTv1; rua=mailto:postmaster@{d}"),
            "TLS reporting (RFC 8460): senders mail postmaster a daily report of TLS failures",
        ));
    }
    if let Some(tlsa) = &publish.tlsa {
        out.push(rec(
            format!("_25._tcp.{host}"),
            "TLSA",
            tlsa.clone(),
            "DANE: senders that validate DNSSEC accept only this key on port 25 (publish in a DNSSEC-signed zone, and again before changing the key)",
        ));
    }
    out.push(rec(
        format!("autoconfig.{d}"),
        "CNAME",
        format!("{host}."),
        "Thunderbird and others fetch their settings here",
    ));
    out.push(rec(
        format!("autodiscover.{d}"),
        "CNAME",
        format!("{host}."),
        "Outlook fetches its settings here",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::DkimAlgorithm;

    #[test]
    fn long_txt_values_split_into_character_strings() {
        let key = DkimKey {
            domain: "example.org".into(),
            selector: "t20261206r".into(),
            algorithm: DkimAlgorithm::Rsa,
            public_key: "A".repeat(392),
            created_at: 0,
            retired_at: None,
        };
        let r = records(
            "mail.example.org",
            "Example.org",
            &[key],
            &Publish::default(),
        );
        let dkim = r.iter().find(|r| r.name.contains("_domainkey")).unwrap();
        assert_eq!(dkim.name, "t20261206r._domainkey.example.org");
        let line = dkim.zone_line();
        // The quoted character-strings are every other piece between quotes.
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2, "{line}");
        assert!(strings.iter().all(|s| s.len() <= 255), "{line}");
        assert_eq!(
            strings.concat(),
            format!("v=DKIM1; k=rsa; p={}", "A".repeat(392))
        );
        assert_eq!(
            r[0].zone_line(),
            "example.org. 3600 IN MX 10 mail.example.org."
        );
        assert!(
            r.iter()
                .any(|r| r.name == "_dmarc.example.org" && r.value.contains("p=quarantine"))
        );
        assert!(!r.iter().any(|r| r.name.contains("mta-sts")));
    }

    #[test]
    fn mta_sts_and_tlsa_records() {
        let policy = mta_sts_policy("mail.example.org.", "enforce", 86400);
        assert_eq!(
            policy,
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 86400\r\n"
        );
        let p = Publish {
            mta_sts_policy: Some(policy.clone()),
            tlsa: Some(tlsa_value(b"key")),
        };
        let r = records("mail.example.org", "example.org", &[], &p);
        let txt = r.iter().find(|r| r.name == "_mta-sts.example.org").unwrap();
        assert_eq!(txt.value, format!("v=STSv1; id={}", mta_sts_id(&policy)));
        assert_eq!(mta_sts_id(&policy).len(), 20);
        assert_ne!(
            mta_sts_id(&policy),
            mta_sts_id(&mta_sts_policy("mail.example.org", "testing", 86400))
        );
        let tlsa = r.iter().find(|r| r.rtype == "TLSA").unwrap();
        assert_eq!(tlsa.name, "_25._tcp.mail.example.org");
        assert_eq!(
            tlsa.value,
            "3 1 1 2c70e12b7a0646f92279f427c7b38e7334d8e5389cff167a1dc30e73f826b683"
        );
    }
}
