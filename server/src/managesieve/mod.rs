//! ManageSieve (RFC 5804) on 4190 (dev 7190): desktop clients (Thunderbird's
//! Sieve add-on, Roundcube's managesieve plugin, sieve-connect) edit the
//! same Sieve scripts the webmail's Rules page does. STARTTLS, then
//! AUTHENTICATE PLAIN. `proto` is the pure wire format; `session` the
//! state machine.

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
use session::{Session, Settings};

pub async fn start(
    core: &Core,
    cfg: &Config,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let m = &cfg.managesieve;
    let settings = Arc::new(Settings {
        max_line: 8192,
        idle: Duration::from_secs(m.idle_secs.max(1)),
        tls_handshake_timeout: Duration::from_secs(cfg.smtp.tls_handshake_timeout_secs),
    });
    let limits = Limits::new(
        m.max_connections,
        m.max_connections_per_ip,
        m.max_connections_per_account,
    );
    let listener_cfg = Listener {
        name: "managesieve",
        limits: limits.clone(),
        acceptor: TlsAcceptor::from(tls),
        implicit_tls: false,
        handshake_timeout: settings.tls_handshake_timeout,
        refusal: |r| format!("BYE (TRYLATER) \"{}\"\r\n", r.reason().replace('"', "'")),
    };
    let core = core.clone();
    Ok(spawn(&cfg.listeners.managesieve, listener_cfg, move |c| {
        Session::new(core.clone(), settings.clone(), limits.clone(), c).run()
    })
    .await?
    .into_iter()
    .collect())
}
