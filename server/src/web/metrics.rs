//! `/metrics` in the Prometheus text format (metrics +
//! metrics-exporter-prometheus), behind a bearer token
//! (`web.metrics_token`; with none set, `/metrics` answers 404 and says so).
//!
//! Counters come from where things happen (listeners, SMTP, the queue,
//! logins, the storage layer). Queue depth is read from the database at
//! scrape time, so it is the cluster's queue, not this node's idea of it.

use actix_web::{HttpRequest, HttpResponse, web};
use mailcore::Core;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for acceptance-to-delivery latency, in seconds: from "at once"
/// to "after a day of retries".
const LATENCY_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// Buckets for one protocol command, in seconds: from a cached FETCH to a
/// large DATA over a slow link.
const COMMAND_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder once; later calls (tests that start
/// several servers in one process) get the first handle.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let b = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tern_delivery_latency_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("tern_command_duration_seconds".into()),
                    COMMAND_BUCKETS,
                )
                .ok()?;
            match b.install_recorder() {
                Ok(h) => {
                    describe();
                    // Exported from the start, so an alert's rate() has a
                    // series to read before the first error.
                    metrics::counter!("tern_database_errors_total").absolute(0);
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tern_connections_total",
        "Connections accepted, by protocol"
    );
    describe_counter!(
        "tern_messages_total",
        "Messages accepted (SMTP 250 or webmail send), and queue outcomes: delivered, deferred, bounced"
    );
    describe_gauge!("tern_queue_depth", "Queue entries waiting, by lane");
    describe_gauge!(
        "tern_queue_oldest_age_seconds",
        "Age of the oldest queue entry (any lane)"
    );
    describe_gauge!(
        "tern_storage_up",
        "1 when the mail store answered the health probe at the last scrape"
    );
    describe_gauge!(
        "tern_tls_certificate_expiry_timestamp_seconds",
        "When the certificate the listeners present expires (unix seconds)"
    );
    describe_counter!(
        "tern_delivery_attempts_total",
        "Outbound attempts per recipient, by destination domain and reply class (2xx, 4xx, 5xx, none)"
    );
    describe_gauge!(
        "tern_outside_watched_inboxes",
        "Outside IMAP INBOXes watched with IDLE for the unified inbox"
    );
    describe_gauge!(
        "tern_spool_records",
        "Messages accepted into this node's spool and not yet in the store"
    );
    describe_gauge!("tern_spool_bytes", "Bytes of those messages");
    describe_gauge!(
        "tern_spool_oldest_age_seconds",
        "Age of the oldest message waiting in the spool"
    );
    describe_counter!(
        "tern_spool_ingested_total",
        "Spooled messages stored in the mail store (rate() is the ingest rate)"
    );
    describe_counter!("tern_spool_appended_total", "Messages written to the spool");
    describe_counter!(
        "tern_spool_syncs_total",
        "fdatasync calls of the spool journal"
    );
    describe_histogram!(
        "tern_spool_batch_records",
        "Records covered by one spool fdatasync (group commit)"
    );
    describe_histogram!(
        "tern_delivery_latency_seconds",
        "Time from acceptance to remote delivery"
    );
    describe_counter!("tern_auth_failures_total", "Failed logins, by protocol");
    describe_histogram!(
        "tern_command_duration_seconds",
        "Time from a parsed command to its reply, by protocol and command"
    );
    describe_gauge!(
        "tern_queue_lane_overdue_seconds",
        "Per lane, how long its most overdue entry has waited past its due time (0: none late)"
    );
    describe_gauge!(
        "tern_delivery_success_ratio",
        "Delivered out of all outbound attempts in the last 15 minutes"
    );
    describe_counter!(
        "tern_database_errors_total",
        "Storage errors that became temporary failures"
    );
}

pub struct MetricsState {
    /// The certificate the listeners present, for its expiry.
    pub certs: Option<std::sync::Arc<crate::tls::CertStore>>,
    pub handle: Option<PrometheusHandle>,
    pub token: String,
}

fn authorized(req: &HttpRequest, token: &str) -> bool {
    let Some(got) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    mailcore::auth::constant_time_eq(got.as_bytes(), token.as_bytes())
}

pub async fn metrics(
    core: web::Data<Core>,
    state: web::Data<MetricsState>,
    req: HttpRequest,
) -> HttpResponse {
    if state.token.is_empty() {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("metrics are off: set web.metrics_token to serve them\n");
    }
    if !authorized(&req, &state.token) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"tern metrics\""))
            .content_type("text/plain; charset=utf-8")
            .body("401 Unauthorized: a bearer token is required\n");
    }
    let Some(handle) = &state.handle else {
        return HttpResponse::ServiceUnavailable().body("metrics recorder unavailable\n");
    };
    if let Some(spool) = core.spool() {
        let st = spool.stats();
        metrics::gauge!("tern_spool_records").set(st.records as f64);
        metrics::gauge!("tern_spool_bytes").set(st.bytes as f64);
        let age = st
            .oldest
            .map_or(0, |t| core.clock().now().saturating_sub(t).max(0));
        metrics::gauge!("tern_spool_oldest_age_seconds").set(age as f64);
        metrics::counter!("tern_spool_appended_total").absolute(st.appended_total);
        metrics::counter!("tern_spool_syncs_total").absolute(st.syncs_total);
    }
    match core.queue().stats().await {
        Ok(st) => {
            for (lane, n) in st.by_lane {
                metrics::gauge!("tern_queue_depth", "lane" => lane).set(n as f64);
            }
            let age = st
                .oldest_created_at
                .map_or(0, |t| core.clock().now().saturating_sub(t).max(0));
            metrics::gauge!("tern_queue_oldest_age_seconds").set(age as f64);
        }
        Err(e) => tracing::warn!(error = %e, "queue depth not read for /metrics"),
    }
    let now = core.clock().now();
    match core.queue_overdue(now).await {
        Ok(lanes) => {
            for (lane, late) in lanes {
                metrics::gauge!("tern_queue_lane_overdue_seconds", "lane" => lane.as_str())
                    .set(late as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "queue lanes not read for /metrics"),
    }
    match core.delivery_window(now).await {
        Ok(w) => {
            if let Some(r) = w.success_ratio() {
                metrics::gauge!("tern_delivery_success_ratio").set(r);
            }
        }
        Err(e) => tracing::warn!(error = %e, "delivery outcomes not read for /metrics"),
    }
    // The storage probe /healthz runs, bounded so a hung database cannot
    // hold the scrape.
    let up = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), core.health()).await,
        Ok(Ok(_))
    );
    metrics::gauge!("tern_storage_up").set(if up { 1.0 } else { 0.0 });
    if let Some(expiry) = state.certs.as_ref().and_then(|c| {
        c.chain()
            .first()
            .and_then(|l| crate::relay::tls_auth::not_after(l))
    }) {
        metrics::gauge!("tern_tls_certificate_expiry_timestamp_seconds").set(expiry as f64);
    }
    let mut body = handle.render();
    match core.queue().destinations().await {
        Ok(d) => destination_series(&mut body, &d, core.clock().now()),
        Err(e) => tracing::warn!(error = %e, "destinations not read for /metrics"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

/// Destinations tried in the last hour, at most this many (the most recent).
const MAX_DESTINATION_SERIES: usize = 200;

/// A Prometheus label value (text format: backslash, quote, newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per-destination series, written at scrape time from the destinations'
/// rows (the cluster's view): a destination not tried for an hour drops
/// out instead of keeping a stale value forever, as a gauge set once would.
fn destination_series(out: &mut String, all: &[mailcore::queue::Destination], now: i64) {
    use std::fmt::Write as _;
    let mut recent: Vec<&mailcore::queue::Destination> = all
        .iter()
        .filter(|d| d.last_attempt_at.is_some_and(|t| now - t <= 3600))
        .collect();
    recent.sort_by_key(|d| std::cmp::Reverse(d.last_attempt_at));
    recent.truncate(MAX_DESTINATION_SERIES);
    recent.sort_by(|a, b| a.domain.cmp(&b.domain));
    out.push_str("# HELP tern_destination_concurrency_limit Connection limit per destination (adaptive), for those tried in the last hour\n# TYPE tern_destination_concurrency_limit gauge\n");
    for d in &recent {
        let _ = writeln!(
            out,
            "tern_destination_concurrency_limit{{domain=\"{}\"}} {}",
            label(&d.domain),
            d.concurrency
        );
    }
    out.push_str("# HELP tern_destination_ceiling The level at which a destination last pushed back\n# TYPE tern_destination_ceiling gauge\n");
    for d in &recent {
        if let Some(c) = d.ceiling {
            let _ = writeln!(
                out,
                "tern_destination_ceiling{{domain=\"{}\"}} {c}",
                label(&d.domain)
            );
        }
    }
    out.push_str("# HELP tern_destination_last_reply_class The class of a destination's last reply (2xx, 4xx, 5xx, none), as 1\n# TYPE tern_destination_last_reply_class gauge\n");
    for d in &recent {
        let class = match d.last_reply.as_deref().and_then(|r| r.bytes().next()) {
            Some(b'2') => "2xx",
            Some(b'4') => "4xx",
            Some(b'5') => "5xx",
            _ => "none",
        };
        let _ = writeln!(
            out,
            "tern_destination_last_reply_class{{domain=\"{}\",class=\"{class}\"}} 1",
            label(&d.domain)
        );
    }
}
