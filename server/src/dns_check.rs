//! The DNS helper's live check (`tern domain dns D --check`): each record
//! the domain needs, asked of DNS, and whether what DNS answers matches.

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use mailcore::dns_records::DnsRecord;

/// What DNS says about one needed record.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    Ok,
    Missing,
    /// Records of the type are there, none the one needed; the first one.
    Differs(String),
    /// The lookup failed (a timeout, a refused query): nothing is known.
    Unknown(String),
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Published::Ok => f.write_str("ok"),
            Published::Missing => f.write_str("missing"),
            Published::Differs(found) => write!(f, "differs: {found}"),
            Published::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// One answer in the form `DnsRecord::value` has.
fn as_value(rd: &RData) -> Option<String> {
    Some(match rd {
        RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange.to_ascii()),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            s.target.to_ascii()
        ),
        RData::CNAME(c) => c.0.to_ascii(),
        RData::TLSA(t) => format!(
            "{} {} {} {}",
            u8::from(t.cert_usage),
            u8::from(t.selector),
            u8::from(t.matching),
            t.cert_data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        _ => return None,
    })
}

/// Lower-cased (but for TXT, whose case matters), without final dots.
fn normal(rtype: &str, v: &str) -> String {
    let v = v
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .collect::<Vec<_>>()
        .join(" ");
    if rtype == "TXT" {
        v
    } else {
        v.to_ascii_lowercase()
    }
}

pub async fn check(resolver: &TokioResolver, r: &DnsRecord) -> Published {
    let Ok(rtype) = r.rtype.parse::<RecordType>() else {
        return Published::Unknown(format!("type {}", r.rtype));
    };
    let answers = match resolver.lookup(format!("{}.", r.name), rtype).await {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Published::Missing,
        Err(e) => return Published::Unknown(e.to_string()),
    };
    let found: Vec<String> = answers
        .answers()
        .iter()
        .filter(|a| a.record_type() == rtype)
        .filter_map(|a| as_value(&a.data))
        .collect();
    let want = normal(r.rtype, &r.value);
    if found.iter().any(|f| normal(r.rtype, f) == want) {
        return Published::Ok;
    }
    // Of a name's TXT records only those of the same kind matter (an SPF
    // record among site-verification strings).
    let kind = want.split([';', ' ']).next().unwrap_or("").to_owned();
    let same_kind: Vec<&String> = found
        .iter()
        .filter(|f| r.rtype != "TXT" || f.starts_with(&kind))
        .collect();
    match same_kind.first() {
        Some(f) => Published::Differs((*f).clone()),
        None => Published::Missing,
    }
}

/// The checker the admin page uses: `smtp.nameserver` or the system's
/// resolver, as `tern domain dns D --check`.
pub struct Checker(pub TokioResolver);

#[async_trait::async_trait]
impl mailcore::dns_records::DnsChecker for Checker {
    async fn check(&self, r: &DnsRecord) -> String {
        check(&self.0, r).await.to_string()
    }
}
