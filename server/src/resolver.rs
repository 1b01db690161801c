//! The one way Tern makes a hickory resolver (the relay's MX lookups,
//! outside accounts' discovery, the sender checks on port 25): the
//! system's (/etc/resolv.conf), or a single DNS server given as `ip:port`
//! (`outside.nameserver`, `smtp.nameserver`; the tests point them at a DNS
//! server of their own on 127.0.0.1). Each answer waits at most 5 seconds,
//! twice, so a dead server costs a sender seconds, not a hung session.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

pub fn resolver(nameserver: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match nameserver {
        Some(ns) => {
            let mut server = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut server.connections {
                c.port = ns.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().unwrap_or_else(|e| {
            // Lookups then fail with temporary errors, which the logs and
            // the queue show; everything else keeps working.
            tracing::warn!(error = %e, "no usable system DNS configuration; using hickory's defaults");
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioRuntimeProvider::default(),
            )
        }),
    };
    let o = builder.options_mut();
    o.timeout = Duration::from_secs(5);
    o.attempts = 2;
    builder.build().map_err(|e| format!("DNS resolver: {e}"))
}
