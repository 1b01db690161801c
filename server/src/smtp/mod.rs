//! SMTP: the MX listener (25), submission (587, STARTTLS) and SMTPS (465,
//! implicit TLS, RFC 8314), all over one session engine.
//!
//! `proto` parses and renders (pure), `session` is the per-connection state
//! machine, `limits` counts connections. Listeners hand each accepted
//! socket to a session only after the connection limits admit it.

pub mod harness;
pub mod inbound_auth;
pub mod proto;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use mailcore::status::Service;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::limits::Limits;
use crate::listen::{Listener, spawn};
use session::{Mode, Session, Settings};

pub async fn start(
    core: &Core,
    cfg: &Config,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Vec<(Service, JoinHandle<()>)>, String> {
    let s = &cfg.smtp;
    let settings = Arc::new(Settings {
        hostname: cfg.hostname.clone(),
        max_message_size: s.max_message_size,
        max_recipients: s.max_recipients,
        max_errors: s.max_errors,
        command_timeout: Duration::from_secs(s.command_timeout_secs),
        idle_timeout: Duration::from_secs(s.idle_timeout_secs.min(s.command_timeout_secs)),
        idle_timeout_busy: Duration::from_secs(
            s.idle_timeout_busy_secs
                .min(s.idle_timeout_secs)
                .min(s.command_timeout_secs),
        ),
        data_timeout: Duration::from_secs(s.data_timeout_secs),
        tls_handshake_timeout: Duration::from_secs(s.tls_handshake_timeout_secs),
        max_future_release: s.max_future_release_secs.max(0),
        sender_checks: if s.sender_checks {
            let ns = match s.nameserver.trim() {
                "" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| format!("smtp.nameserver {n:?} is not ip:port"))?,
                ),
            };
            Some(Arc::new(
                inbound_auth::InboundAuth::new(&cfg.hostname, ns)?
                    .trust_arc_sealers(&s.arc_trusted_sealers),
            ))
        } else {
            None
        },
        ..Settings::default()
    });
    // Two pools: other servers on 25, users on 587 and 465. The account
    // limit is shared, since it counts one person's sessions.
    let mx_limits = Limits::new(
        s.max_connections,
        s.max_connections_per_ip,
        s.max_connections_per_account,
    );
    let submission_limits = mx_limits.sibling(
        s.max_submission_connections,
        s.max_submission_connections_per_ip,
    );
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = Vec::new();
    for (addr, mode) in [
        (&cfg.listeners.smtp, Mode::Mx),
        (&cfg.listeners.submission, Mode::Submission),
        (&cfg.listeners.smtps, Mode::Smtps),
    ] {
        let limits = match mode {
            Mode::Mx => mx_limits.clone(),
            Mode::Submission | Mode::Smtps => submission_limits.clone(),
        };
        let listener_cfg = Listener {
            name: "smtp",
            limits: limits.clone(),
            acceptor: acceptor.clone(),
            implicit_tls: mode == Mode::Smtps,
            handshake_timeout: settings.tls_handshake_timeout,
            refusal: |r| format!("421 4.7.0 {}\r\n", r.reason()),
        };
        let (core, settings, limits) = (core.clone(), settings.clone(), limits.clone());
        // Port 25 is how other servers reach us; 587 and 465 are how
        // users send: the status page lists them apart.
        let service = match mode {
            Mode::Mx => Service::Inbound,
            Mode::Submission | Mode::Smtps => Service::Submission,
        };
        tasks.extend(
            spawn(addr, listener_cfg, move |c| {
                Session::new(core.clone(), settings.clone(), limits.clone(), mode, c).run()
            })
            .await?
            .map(|t| (service, t)),
        );
    }
    Ok(tasks)
}
