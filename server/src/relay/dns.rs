//! DNS for outbound mail, behind a trait so tests can point destinations at
//! fake MX servers on 127.0.0.1 (DESIGN.md: DNS is injected).

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use super::tls_auth::Tlsa;

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

/// What a TXT query said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxtAnswer {
    /// Each record's character-strings joined.
    Records(Vec<String>),
    /// No such name, or no TXT there.
    None,
}

/// The TLSA records at `_25._tcp.<host>` and whether the resolver vouched
/// for them with DNSSEC (the AD bit, RFC 4035 §3.2.3). Only secure
/// records may be used for DANE (RFC 7672 §2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsaAnswer {
    pub records: Vec<Tlsa>,
    pub secure: bool,
}

#[async_trait::async_trait]
pub trait Dns: Send + Sync + 'static {
    async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError>;
    /// The addresses to connect to for a host, with the SMTP port.
    async fn addrs(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError>;
    /// TXT records at a name (MTA-STS's `_mta-sts.D`).
    async fn txt(&self, name: &str) -> Result<TxtAnswer, DnsError>;
    /// TLSA records for an MX host's SMTP port (RFC 7672 §2.2.3).
    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError>;
}

/// The system resolver (/etc/resolv.conf), or `relay.nameserver`, through
/// hickory.
pub struct HickoryDns {
    resolver: TokioResolver,
    port: u16,
    /// Where TLSA questions go, asking for the AD bit.
    nameserver: SocketAddr,
}

impl HickoryDns {
    pub fn new(port: u16, nameserver: Option<SocketAddr>) -> Result<Self, String> {
        let ns = match nameserver {
            Some(ns) => ns,
            None => hickory_resolver::system_conf::read_system_conf()
                .ok()
                .and_then(|(c, _)| c.name_servers().first().map(|n| SocketAddr::new(n.ip, 53)))
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53))),
        };
        Ok(HickoryDns {
            resolver: crate::resolver::resolver(nameserver)?,
            port,
            nameserver: ns,
        })
    }

    /// The resolver, for the MTA-STS policy fetch.
    pub fn resolver(&self) -> TokioResolver {
        self.resolver.clone()
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

    async fn txt(&self, name: &str) -> Result<TxtAnswer, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.txt_lookup(fqdn).await {
            Ok(l) => Ok(TxtAnswer::Records(
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(t) => Some(
                            t.txt_data
                                .iter()
                                .map(|b| String::from_utf8_lossy(b))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(TxtAnswer::None),
            Err(e) => Err(dns_error(e)),
        }
    }

    async fn tlsa(&self, host: &str) -> Result<TlsaAnswer, DnsError> {
        let name = format!("_25._tcp.{}.", host.trim_end_matches('.'));
        tlsa_query(self.nameserver, &name).await
    }
}

/// One TLSA question to `ns` with the AD bit set, as RFC 6840 §5.7 asks a
/// client that wants to know whether the answer was validated. Like
/// Postfix (`smtp_dns_support_level = dnssec`) and mox, Tern trusts the
/// AD bit of its resolver, which is why DANE wants a validating resolver
/// on the same host (unbound on 127.0.0.1); hickory's stub resolver does
/// not pass the bit up, so the question is asked here directly.
pub async fn tlsa_query(ns: SocketAddr, name: &str) -> Result<TlsaAnswer, DnsError> {
    use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_resolver::proto::rr::{Name, RecordType};
    use hickory_resolver::proto::serialize::binary::{BinDecodable, BinEncodable};
    let temp = |m: String| DnsError {
        message: m,
        temporary: true,
    };
    let qname = Name::from_ascii(name).map_err(|e| DnsError {
        message: format!("{name}: {e}"),
        temporary: false,
    })?;
    let id: u16 = rand::random();
    let mut q = Message::query();
    q.metadata.id = id;
    q.metadata.message_type = MessageType::Query;
    q.metadata.op_code = OpCode::Query;
    q.metadata.recursion_desired = true;
    q.metadata.authentic_data = true;
    q.add_query(Query::query(qname, RecordType::TLSA));
    let bytes = q.to_bytes().map_err(|e| temp(e.to_string()))?;
    let bind: SocketAddr = if ns.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut answer = None;
    for _ in 0..2 {
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| temp(e.to_string()))?;
        sock.connect(ns).await.map_err(|e| temp(e.to_string()))?;
        sock.send(&bytes).await.map_err(|e| temp(e.to_string()))?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let n = sock.recv(&mut buf).await?;
                if let Ok(m) = Message::from_bytes(&buf[..n])
                    && m.metadata.id == id
                {
                    return Ok::<_, std::io::Error>(m);
                }
            }
        })
        .await
        {
            Ok(Ok(m)) => {
                answer = Some(m);
                break;
            }
            Ok(Err(e)) => return Err(temp(format!("{name}: {e}"))),
            Err(_) => continue,
        }
    }
    let m = answer.ok_or_else(|| temp(format!("{name}: no answer from {ns}")))?;
    match m.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Ok(TlsaAnswer {
                records: vec![],
                secure: m.metadata.authentic_data,
            });
        }
        // RFC 7672 §2.1.1: a failed TLSA lookup is not "no TLSA": the
        // host is not tried until DNS answers.
        rc => return Err(temp(format!("{name}: {rc}"))),
    }
    if m.metadata.truncation {
        return Err(temp(format!("{name}: answer truncated")));
    }
    let records = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .collect();
    Ok(TlsaAnswer {
        records,
        secure: m.metadata.authentic_data,
    })
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
