//! DNS for outside accounts: addresses, RFC 6186 SRV records and MX hosts,
//! behind a trait; the real one is hickory, pointed at the system's
//! resolver or at `outside.nameserver` (tests run a DNS server on
//! 127.0.0.1 that answers for their made-up domains).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// One SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

#[async_trait::async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String>;
    /// An empty list when the name has no SRV records.
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, String>;
    /// MX host names, most preferred first; empty when there are none.
    async fn mx(&self, domain: &str) -> Result<Vec<String>, String>;
}

pub struct HickoryResolve {
    resolver: TokioResolver,
}

impl HickoryResolve {
    /// `nameserver`: `ip:port`, or None for /etc/resolv.conf.
    pub fn new(nameserver: Option<SocketAddr>) -> Result<Self, String> {
        Ok(HickoryResolve {
            resolver: crate::resolver::resolver(nameserver)?,
        })
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn no_records(e: &hickory_resolver::net::NetError) -> bool {
    e.is_nx_domain() || e.is_no_records_found()
}

#[async_trait::async_trait]
impl Resolve for HickoryResolve {
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        match self.resolver.lookup_ip(fqdn(host)).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, String> {
        match self.resolver.srv_lookup(fqdn(name)).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(r) => Some(Srv {
                        priority: r.priority,
                        weight: r.weight,
                        port: r.port,
                        target: r.target.to_ascii().trim_end_matches('.').to_owned(),
                    }),
                    _ => None,
                })
                .collect()),
            Err(e) if no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn mx(&self, domain: &str) -> Result<Vec<String>, String> {
        match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(l) => {
                let mut v: Vec<(u16, String)> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((
                            m.preference,
                            m.exchange.to_ascii().trim_end_matches('.').to_owned(),
                        )),
                        _ => None,
                    })
                    .filter(|(_, h)| !h.is_empty())
                    .collect();
                v.sort();
                Ok(v.into_iter().map(|(_, h)| h).collect())
            }
            Err(e) if no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}
