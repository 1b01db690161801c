//! The accept loop every mail listener shares: admit a connection against
//! the limits (or tell the client why not, in the protocol's own words),
//! finish implicit TLS within a deadline, then hand the stream to the
//! protocol's session.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::limits::{Limits, Refused};
use crate::netio::BoxIo;

/// Refusals on implicit-TLS ports finish a handshake first; at most this
/// many at once per listener, each within this deadline.
const MAX_REFUSAL_HANDSHAKES: usize = 32;
const REFUSAL_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// Per-protocol command latency (`tern_command_duration_seconds`), by the
/// typed command's name: from the parsed command to its reply written
/// (DATA and BDAT include receiving and spooling the message).
pub fn observe_command(protocol: &'static str, command: &'static str, started: std::time::Instant) {
    metrics::histogram!(
        "tern_command_duration_seconds",
        "protocol" => protocol,
        "command" => command
    )
    .record(started.elapsed().as_secs_f64());
}

/// A new connection as a session receives it.
pub struct Conn {
    pub io: BoxIo,
    pub peer: SocketAddr,
    /// True when TLS is already up (implicit TLS ports).
    pub secure: bool,
    /// For STARTTLS/STLS on plain ports; None once TLS is up.
    pub starttls: Option<TlsAcceptor>,
}

pub struct Listener {
    pub name: &'static str,
    pub limits: Arc<Limits>,
    pub acceptor: TlsAcceptor,
    pub implicit_tls: bool,
    pub handshake_timeout: Duration,
    /// The refusal line in the protocol's syntax.
    pub refusal: fn(&Refused) -> String,
}

/// Binds `addr` and runs the accept loop on it in a task: how every mail
/// listener starts. An empty address means the port is off (None).
pub async fn spawn<F, Fut>(
    addr: &str,
    l: Listener,
    session: F,
) -> Result<Option<tokio::task::JoinHandle<()>>, String>
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{} listener {addr}: {e}", l.name))?;
    tracing::info!(%addr, implicit_tls = l.implicit_tls, "{} listening", l.name);
    Ok(Some(tokio::spawn(accept_loop(listener, l, session))))
}

pub async fn accept_loop<F, Fut>(listener: TcpListener, l: Listener, session: F)
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let session = Arc::new(session);
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSAL_HANDSHAKES));
    loop {
        let (mut sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = l.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let guard = match l.limits.connect(peer.ip()) {
            Ok(g) => g,
            Err(refused) => {
                tracing::info!(listener = l.name, %peer, ?refused, "connection refused");
                let line = (l.refusal)(&refused);
                if !l.implicit_tls {
                    tokio::spawn(async move {
                        let _ = sock.write_all(line.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    });
                    continue;
                }
                // On 465/993/995 the client speaks TLS first: a refusal in
                // clear text reads as WRONG_VERSION_NUMBER. Finish the
                // handshake within a short deadline and refuse in the
                // protocol's words, with close_notify. Under a flood the
                // handshakes are capped; past the cap the socket is just
                // closed.
                let Ok(permit) = refusals.clone().try_acquire_owned() else {
                    continue;
                };
                let acceptor = l.acceptor.clone();
                let deadline = l.handshake_timeout.min(REFUSAL_HANDSHAKE_DEADLINE);
                tokio::spawn(async move {
                    let _permit = permit;
                    let refuse = async {
                        let mut tls = acceptor.accept(sock).await?;
                        tls.write_all(line.as_bytes()).await?;
                        tls.shutdown().await
                    };
                    let _ = tokio::time::timeout(deadline, refuse).await;
                });
                continue;
            }
        };
        metrics::counter!("tern_connections_total", "protocol" => l.name).increment(1);
        let (session, acceptor) = (session.clone(), l.acceptor.clone());
        let (implicit, deadline, name) = (l.implicit_tls, l.handshake_timeout, l.name);
        tokio::spawn(async move {
            let _guard = guard;
            let _ = sock.set_nodelay(true);
            let conn = if implicit {
                match tokio::time::timeout(deadline, acceptor.accept(sock)).await {
                    Ok(Ok(tls)) => Conn {
                        io: Box::new(tls),
                        peer,
                        secure: true,
                        starttls: None,
                    },
                    _ => {
                        tracing::info!(listener = name, %peer, "TLS handshake failed or timed out");
                        return;
                    }
                }
            } else {
                Conn {
                    io: Box::new(sock),
                    peer,
                    secure: false,
                    starttls: Some(acceptor),
                }
            };
            session(conn).await;
        });
    }
}
