//! `tern serve`: start everything, stop cleanly on SIGINT or SIGTERM.

use crate::config::Config;

pub async fn serve(cfg: Config) -> Result<(), String> {
    let core = crate::cli::open(&cfg).await?;
    let tls = crate::tls::server_config(&cfg)?;
    tracing::info!(
        backend = core.backend().name(),
        hostname = %cfg.hostname,
        "mail core ready"
    );

    // Mail listeners start here, each with the core and the shared TLS
    // config, on the addresses in `cfg.listeners`. IMAP/IMAPS (issue 5) joins
    // SMTP and POP3 here.
    let mut mail_tasks = crate::smtp::start(&core, &cfg, tls.clone()).await?;
    mail_tasks.extend(crate::pop3::start(&core, &cfg, tls.clone()).await?);

    let web = crate::web::server(&cfg, core.clone())?;
    let handle = web.handle();
    let web_task = tokio::spawn(web);

    wait_for_shutdown().await;
    tracing::info!("shutting down");
    for t in &mail_tasks {
        t.abort();
    }
    handle.stop(true).await;
    let _ = web_task.await;
    core.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
