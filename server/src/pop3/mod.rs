//! POP3 on 110 (STLS, RFC 2595) and 995 (implicit TLS, RFC 8314).
//! `proto` is the pure wire format; `session` the state machine.

pub mod proto;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::limits::Limits;
use crate::listen::{Listener, spawn};
use session::{Locks, Session, Settings};

pub async fn start(
    core: &Core,
    cfg: &Config,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let p = &cfg.pop3;
    let settings = Arc::new(Settings {
        max_line: 4096,
        autologout: Duration::from_secs(p.autologout_secs.max(1)),
        tls_handshake_timeout: Duration::from_secs(cfg.smtp.tls_handshake_timeout_secs),
    });
    let limits = Limits::new(
        p.max_connections,
        p.max_connections_per_ip,
        p.max_connections_per_account,
    );
    let locks = Arc::new(Locks::new(Duration::from_secs(p.lock_lease_secs)));
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = Vec::new();
    for (addr, implicit) in [(&cfg.listeners.pop3, false), (&cfg.listeners.pop3s, true)] {
        let listener_cfg = Listener {
            name: "pop3",
            limits: limits.clone(),
            acceptor: acceptor.clone(),
            implicit_tls: implicit,
            handshake_timeout: settings.tls_handshake_timeout,
            refusal: |r| format!("-ERR [SYS/TEMP] {}\r\n", r.reason()),
        };
        let (core, settings, limits, locks) = (
            core.clone(),
            settings.clone(),
            limits.clone(),
            locks.clone(),
        );
        tasks.extend(
            spawn(addr, listener_cfg, move |c| {
                Session::new(
                    core.clone(),
                    settings.clone(),
                    limits.clone(),
                    locks.clone(),
                    c,
                )
                .run()
            })
            .await?,
        );
    }
    Ok(tasks)
}
