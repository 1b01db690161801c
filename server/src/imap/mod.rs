//! IMAP on 143 (STARTTLS, LOGINDISABLED before it) and 993 (implicit TLS,
//! RFC 8314). `proto` is the pure command syntax, `session` the state
//! machine, `fetch` the FETCH items and SEARCH over stored messages.

mod cmd;
pub mod fetch;
pub mod proto;
pub mod response;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::limits::Limits;
use crate::listen::{Listener, spawn};
use session::{Session, Settings};

pub async fn start(
    core: &Core,
    cfg: &Config,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let c = &cfg.imap;
    let settings = Arc::new(Settings {
        max_line: c.max_line,
        max_literal_pre_auth: c.max_literal_pre_auth,
        max_literal: cfg.smtp.max_message_size as u64,
        autologout: Duration::from_secs(c.autologout_secs.max(1800)),
        autologout_pre_auth: Duration::from_secs(c.autologout_pre_auth_secs.max(1)),
        tls_handshake_timeout: Duration::from_secs(cfg.smtp.tls_handshake_timeout_secs),
    });
    let limits = Limits::new(
        c.max_connections,
        c.max_connections_per_ip,
        c.max_connections_per_account,
    );
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = Vec::new();
    for (addr, implicit) in [(&cfg.listeners.imap, false), (&cfg.listeners.imaps, true)] {
        let listener_cfg = Listener {
            name: "imap",
            limits: limits.clone(),
            acceptor: acceptor.clone(),
            implicit_tls: implicit,
            handshake_timeout: settings.tls_handshake_timeout,
            refusal: |r| format!("* BYE [UNAVAILABLE] {}\r\n", r.reason()),
        };
        let (core, settings, limits) = (core.clone(), settings.clone(), limits.clone());
        tasks.extend(
            spawn(addr, listener_cfg, move |c| {
                Session::new(core.clone(), settings.clone(), limits.clone(), c).run()
            })
            .await?,
        );
    }
    Ok(tasks)
}
