//! SMTP: the MX listener (25), submission (587, STARTTLS) and SMTPS (465,
//! implicit TLS, RFC 8314), all over one session engine.
//!
//! `proto` parses and renders (pure), `session` is the per-connection state
//! machine, `limits` counts connections. Listeners hand each accepted
//! socket to a session only after the connection limits admit it.

pub mod proto;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::limits::Limits;
use crate::netio::BoxIo;
use session::{Mode, Session, Settings};

pub async fn start(
    core: &Core,
    cfg: &Config,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let s = &cfg.smtp;
    let settings = Arc::new(Settings {
        hostname: cfg.hostname.clone(),
        max_message_size: s.max_message_size,
        max_recipients: s.max_recipients,
        max_errors: s.max_errors,
        command_timeout: Duration::from_secs(s.command_timeout_secs),
        data_timeout: Duration::from_secs(s.data_timeout_secs),
        tls_handshake_timeout: Duration::from_secs(s.tls_handshake_timeout_secs),
        ..Settings::default()
    });
    let limits = Limits::new(
        s.max_connections,
        s.max_connections_per_ip,
        s.max_connections_per_account,
    );
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = Vec::new();
    for (addr, mode) in [
        (&cfg.listeners.smtp, Mode::Mx),
        (&cfg.listeners.submission, Mode::Submission),
        (&cfg.listeners.smtps, Mode::Smtps),
    ] {
        if addr.is_empty() {
            continue;
        }
        let listener = TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("smtp listener {addr}: {e}"))?;
        tracing::info!(%addr, ?mode, "smtp listening");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            mode,
            core.clone(),
            settings.clone(),
            limits.clone(),
            acceptor.clone(),
        )));
    }
    Ok(tasks)
}

async fn accept_loop(
    listener: TcpListener,
    mode: Mode,
    core: Core,
    settings: Arc<Settings>,
    limits: Arc<Limits>,
    acceptor: TlsAcceptor,
) {
    loop {
        let (mut sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let guard = match limits.connect(peer.ip()) {
            Ok(g) => g,
            Err(refused) => {
                tracing::info!(%peer, ?refused, "smtp connection refused");
                tokio::spawn(async move {
                    let _ = sock.write_all(refused.reply().as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
                continue;
            }
        };
        let (core, settings, limits, acceptor) = (
            core.clone(),
            settings.clone(),
            limits.clone(),
            acceptor.clone(),
        );
        tokio::spawn(async move {
            let _guard = guard;
            let _ = sock.set_nodelay(true);
            let (io, secure): (BoxIo, bool) = if mode == Mode::Smtps {
                match tokio::time::timeout(settings.tls_handshake_timeout, acceptor.accept(sock))
                    .await
                {
                    Ok(Ok(tls)) => (Box::new(tls), true),
                    _ => {
                        tracing::info!(%peer, "smtps handshake failed or timed out");
                        return;
                    }
                }
            } else {
                (Box::new(sock), false)
            };
            let tls = (!secure).then_some(acceptor);
            Session::new(core, settings, limits, mode, peer, io, tls, secure)
                .run()
                .await;
        });
    }
}
