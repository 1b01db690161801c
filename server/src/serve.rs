//! `tern serve`: start everything, stop cleanly on SIGINT or SIGTERM.

use crate::config::Config;

pub async fn serve(cfg: Config) -> Result<(), String> {
    let core = crate::cli::open_with(&cfg, true).await?;
    let (tls, certs) = crate::tls::server_tls(&cfg)?;
    // A renewed certificate (certbot, by hand) is picked up by every
    // listener; with `tls.acme`, Tern obtains and renews it itself.
    let cert_watch = crate::tls::watch(
        certs.clone(),
        std::time::Duration::from_secs(cfg.tls.reload_secs.max(1)),
    );
    let challenges = crate::acme::Challenges::default();
    let acme = crate::acme::start(&cfg, core.clone(), certs.clone(), challenges.clone());
    tracing::info!(
        backend = core.backend().name(),
        hostname = %cfg.hostname,
        "mail core ready"
    );

    // The spool opens before any listener: a message is accepted only
    // into it. Records left by a crash are found and stored again (once).
    let mut spool_cfg = mailcore::spool::SpoolConfig::new(cfg.spool_dir());
    spool_cfg.max_bytes = cfg.spool.max_bytes;
    let spool = mailcore::spool::Spool::open(&spool_cfg)
        .map_err(|e| format!("spool {}: {e}", cfg.spool_dir().display()))?;
    let backlog = spool.stats();
    tracing::info!(
        dir = %cfg.spool_dir().display(),
        node = spool.node(),
        records = backlog.records,
        bytes = backlog.bytes,
        "spool open"
    );
    // What RCPT needs while the database is down, kept beside the spool.
    let dir_cache = core.start_directory_cache(cfg.spool_dir().join("directory.json"));
    let ingest = core.start_ingest(
        spool,
        mailcore::spool::ingest::IngestConfig {
            hostname: cfg.hostname.clone(),
        },
    );

    // Mail listeners start here, each with the core and the shared TLS
    // config, on the addresses in `cfg.listeners`.
    use mailcore::status::Service;
    let mut listeners = crate::smtp::start(&core, &cfg, tls.clone()).await?;
    for t in crate::pop3::start(&core, &cfg, tls.clone()).await? {
        listeners.push((Service::Pop3, t));
    }
    for t in crate::imap::start(&core, &cfg, tls.clone()).await? {
        listeners.push((Service::Imap, t));
    }
    // The status page watches each listener's accept loop.
    let watched: Vec<(Service, tokio::task::AbortHandle)> = listeners
        .iter()
        .map(|(s, t)| (*s, t.abort_handle()))
        .collect();
    let mut mail_tasks: Vec<_> = listeners.into_iter().map(|(_, t)| t).collect();
    mail_tasks.extend(crate::managesieve::start(&core, &cfg, tls.clone()).await?);

    let runner = start_queue(&core, &cfg)?;
    // Mail sent later (undo window, "send later", FUTURERELEASE).
    let scheduler = core.start_scheduler(mailcore::scheduled::SchedulerConfig {
        hostname: cfg.hostname.clone(),
        limits: mailcore::submission::SendLimits {
            max_recipients: cfg.smtp.max_recipients,
            max_message_size: cfg.smtp.max_message_size,
        },
        poll: std::time::Duration::from_secs(1),
    });
    // The heartbeat row, and on PostgreSQL the line to the other nodes.
    let probe = runner.as_ref().map(|r| r.probe());
    let runs_queue = probe.is_some();
    core.start_cluster(mailcore::cluster::NodeInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat: std::time::Duration::from_secs(cfg.cluster.heartbeat_secs.max(1)),
        queue_in_flight: Box::new(move || probe.as_ref().map_or(0, |p| p.in_flight())),
        runs_queue,
    });

    // Domains made before Tern signed (or by a process without the
    // secrets key) get their DKIM keys now.
    match core.dkim_ensure_keys().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            domains = n,
            "made DKIM keys; publish them (tern domain dns DOMAIN)"
        ),
        Err(e) => tracing::warn!(error = %e, "could not make DKIM keys"),
    }
    let status = core.start_status(mailcore::status::StatusConfig {
        every: std::time::Duration::from_secs(cfg.status.check_secs.max(1)),
        relay_enabled: runs_queue,
        thresholds: mailcore::status::Thresholds {
            inbound_delay_secs: cfg.status.inbound_delay_secs,
            outbound_delay_secs: cfg.status.outbound_delay_secs,
            slow_storage: std::time::Duration::from_millis(cfg.status.slow_storage_ms),
            ..Default::default()
        },
        listeners: Box::new(move || {
            watched
                .iter()
                .map(|(s, h)| {
                    let state = if h.is_finished() {
                        mailcore::status::ListenerState::Down
                    } else {
                        mailcore::status::ListenerState::Up
                    };
                    (*s, state)
                })
                .collect()
        }),
    });
    let outside = std::sync::Arc::new(crate::outside::Outside::from_config(&cfg.outside)?);
    let fetcher = crate::outside::fetch::start(
        core.clone(),
        outside.clone(),
        cfg.hostname.clone(),
        std::time::Duration::from_secs(cfg.outside.fetch_interval_secs.max(1)),
    );
    let header_cache = crate::outside::cache::start(
        core.clone(),
        outside.clone(),
        std::time::Duration::from_secs(cfg.outside.cache_interval_secs.max(1)),
    );
    let watcher =
        crate::outside::cache::watch(core.clone(), outside.clone(), cfg.outside.watch_max);
    let web = crate::web::server(
        &cfg,
        core.clone(),
        outside,
        tls.clone(),
        challenges,
        Some(certs.clone()),
    )?;
    let handle = web.handle();
    let web_task = tokio::spawn(web);

    wait_for_shutdown().await;
    tracing::info!("shutting down");
    for t in &mail_tasks {
        t.abort();
    }
    fetcher.abort();
    status.abort();
    cert_watch.abort();
    if let Some(a) = &acme {
        a.abort();
    }
    header_cache.abort();
    watcher.abort();
    if let Some(r) = runner {
        // Attempts in flight get a moment to record their result; any
        // still running after that are retried when their lease expires.
        r.stop(std::time::Duration::from_secs(10)).await;
    }
    handle.stop(true).await;
    let _ = web_task.await;
    scheduler.stop().await;
    ingest.stop().await;
    dir_cache.stop();
    core.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts this node's queue runner (unless `relay.enabled` is off), which
/// delivers queued mail through MX lookup, static routes or a smarthost.
fn start_queue(
    core: &mailcore::Core,
    cfg: &Config,
) -> Result<Option<mailcore::queue::RunnerHandle>, String> {
    if !cfg.relay.enabled {
        tracing::info!("queue runner disabled (relay.enabled = false)");
        return Ok(None);
    }
    let nameserver = match cfg.relay.nameserver.trim() {
        "" => None,
        n => Some(
            n.parse()
                .map_err(|_| format!("relay.nameserver {n:?} is not ip:port"))?,
        ),
    };
    let dns = std::sync::Arc::new(crate::relay::dns::HickoryDns::new(
        cfg.relay.mx_port,
        nameserver,
    )?);
    let mut relay = crate::relay::LettreRelay::new(&cfg.relay, &cfg.hostname, dns.clone())?;
    if cfg.relay.mta_sts {
        let fetcher = crate::relay::mta_sts::HttpsFetcher {
            roots: relay.roots(),
            resolver: dns.resolver(),
            port: cfg.relay.mta_sts_port,
        };
        relay = relay.with_mta_sts(
            std::sync::Arc::new(fetcher),
            std::sync::Arc::new(crate::relay::mta_sts::DbStore(core.clone())),
        );
    }
    let mut qcfg = cfg.queue.clone();
    qcfg.hostname = cfg.hostname.clone();
    let runner = mailcore::queue::QueueRunner::new(core.clone(), std::sync::Arc::new(relay), qcfg);
    let handle = runner.start();
    tracing::info!(owner = handle.owner(), "queue runner started");
    Ok(Some(handle))
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
