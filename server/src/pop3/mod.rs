//! POP3 on 110 (STLS, RFC 2595) and 995 (implicit TLS, RFC 8314).
//! `proto` is the pure wire format; `session` the state machine.

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
    let locks = Arc::new(Locks::default());
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = Vec::new();
    for (addr, implicit) in [(&cfg.listeners.pop3, false), (&cfg.listeners.pop3s, true)] {
        if addr.is_empty() {
            continue;
        }
        let listener = TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("pop3 listener {addr}: {e}"))?;
        tracing::info!(%addr, implicit_tls = implicit, "pop3 listening");
        let (core, settings, limits, locks, acceptor) = (
            core.clone(),
            settings.clone(),
            limits.clone(),
            locks.clone(),
            acceptor.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let (mut sock, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let guard = match limits.connect(peer.ip()) {
                    Ok(g) => g,
                    Err(refused) => {
                        let text = refused.reply().replacen("421 4.7.0", "-ERR [SYS/TEMP]", 1);
                        tokio::spawn(async move {
                            let _ = sock.write_all(text.as_bytes()).await;
                        });
                        continue;
                    }
                };
                let (core, settings, limits, locks, acceptor) = (
                    core.clone(),
                    settings.clone(),
                    limits.clone(),
                    locks.clone(),
                    acceptor.clone(),
                );
                tokio::spawn(async move {
                    let _guard = guard;
                    let (io, secure): (BoxIo, bool) = if implicit {
                        match tokio::time::timeout(
                            settings.tls_handshake_timeout,
                            acceptor.accept(sock),
                        )
                        .await
                        {
                            Ok(Ok(t)) => (Box::new(t), true),
                            _ => return,
                        }
                    } else {
                        (Box::new(sock), false)
                    };
                    let tls = (!secure).then_some(acceptor);
                    Session::new(core, settings, limits, locks, peer, io, tls, secure)
                        .run()
                        .await;
                });
            }
        }));
    }
    Ok(tasks)
}
