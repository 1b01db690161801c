//! DNS for outbound mail, behind a trait so tests can point destinations at
//! fake MX servers on 127.0.0.1 (DESIGN.md: DNS is injected).

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// What the MX query for a domain said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX hosts as (preference, host name).
    Hosts(Vec<(u16, String)>),
    /// The domain exists but has no MX: RFC 5321 §5.1 says to use the
    /// domain's own address records as an implicit MX.
    NoMx,
    /// `MX 0 .` (RFC 7505): the domain accepts no mail at all.
    NullMx,
    /// NXDOMAIN: there is no such domain.
    NoDomain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsError {
    pub message: String,
    /// A server failure or timeout: ask again later.
    pub temporary: bool,
}

#[async_trait::async_trait]
pub trait Dns: Send + Sync + 'static {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError>;
    /// The addresses to connect to for a host, with the SMTP port.
    async fn addrs(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError>;
}

/// The system resolver (/etc/resolv.conf) through hickory.
pub struct HickoryDns {
    resolver: TokioResolver,
    port: u16,
}

impl HickoryDns {
    pub fn new(port: u16) -> Result<Self, String> {
        Ok(HickoryDns {
            resolver: crate::resolver::resolver(None)?,
            port,
        })
    }
}

fn dns_error(e: hickory_resolver::net::NetError) -> DnsError {
    DnsError {
        message: e.to_string(),
        temporary: !e.is_nx_domain(),
    }
}

#[async_trait::async_trait]
impl Dns for HickoryDns {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn).await {
            Ok(l) => {
                let hosts: Vec<(u16, String)> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_ascii().trim_end_matches('.').to_owned(),
                        )),
                        _ => None,
                    })
                    .collect();
                Ok(classify_mx(hosts))
            }
            Err(e) if e.is_nx_domain() => Ok(MxAnswer::NoDomain),
            Err(e) if e.is_no_records_found() => Ok(MxAnswer::NoMx),
            Err(e) => Err(dns_error(e)),
        }
    }

    async fn addrs(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let l = self.resolver.lookup_ip(fqdn).await.map_err(dns_error)?;
        Ok(l.iter().map(|ip| SocketAddr::new(ip, self.port)).collect())
    }
}

/// RFC 7505 §3: a null MX is a single record with preference 0 and an
/// empty exchange ("."), which `trim_end_matches('.')` turns into "".
pub fn classify_mx(mut hosts: Vec<(u16, String)>) -> MxAnswer {
    if hosts.is_empty() {
        return MxAnswer::NoMx;
    }
    if hosts.iter().any(|(_, h)| h.is_empty()) {
        return MxAnswer::NullMx;
    }
    hosts.sort_by_key(|(p, _)| *p);
    MxAnswer::Hosts(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_mx_and_preference_order() {
        assert_eq!(classify_mx(vec![(0, String::new())]), MxAnswer::NullMx);
        assert_eq!(classify_mx(vec![]), MxAnswer::NoMx);
        assert_eq!(
            classify_mx(vec![(20, "b".into()), (10, "a".into())]),
            MxAnswer::Hosts(vec![(10, "a".into()), (20, "b".into())])
        );
    }
}
