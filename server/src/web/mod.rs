//! The web side: actix-web serving the Leptos app (server-rendered, then
//! hydrated), its server functions, static assets and `/healthz`.
//!
//! Every state-changing request passes [`origin_check`] first. Leptos adds
//! no CSRF protection of its own (leptos#3786), and all our state changes
//! are POSTs to server functions, so refusing cross-site POSTs here covers
//! every one of them, login included.

pub mod assets;
pub mod autoconfig;
pub mod live;
pub mod mail;
pub mod mbox;
pub mod metrics;
pub mod outside;
pub mod status;

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next, from_fn};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, web};
use leptos::prelude::*;
use leptos_actix::{LeptosRoutes, generate_route_list};
use mailcore::Core;

use crate::config::Config;

/// True when a request is a state change sent from another site.
///
/// Browsers send `Sec-Fetch-Site` (all current ones) and `Origin` on
/// cross-origin POSTs; a request with neither comes from a non-browser
/// client, which cannot carry a victim's cookies, so it is let through.
pub fn is_cross_site(
    method: &Method,
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&str>,
) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if let Some(site) = sec_fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    if let Some(origin) = origin {
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        return match (origin_host, host) {
            (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
            _ => true, // "null" or a malformed Origin
        };
    }
    false
}

async fn origin_check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let h = req.headers();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    if is_cross_site(
        req.method(),
        header("origin"),
        header("sec-fetch-site"),
        header("host"),
    ) {
        tracing::warn!(path = %req.path(), origin = ?header("origin"), "refused cross-site request");
        let resp = HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("403 Forbidden: cross-site request refused\n");
        return Ok(req.into_response(resp).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The pages that show a signed-in user's mail or the admin area (the
/// routes of `app::App` other than `/login`).
fn needs_sign_in(path: &str) -> bool {
    matches!(
        path,
        "/" | "/mail"
            | "/read"
            | "/thread"
            | "/compose"
            | "/folders"
            | "/unified"
            | "/outside"
            | "/outside/add"
            | "/outside/box"
            | "/outside/read"
            | "/admin"
    ) || path.starts_with("/admin/")
}

/// The front door: a visitor without a session who asks for a page is
/// sent to the sign-in form (303), which brings them back to that page
/// after signing in, as every webmail does. A store that cannot answer is
/// not taken for "signed out": the page then says the service is down.
async fn front_door(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if matches!(*req.method(), Method::GET | Method::HEAD) && needs_sign_in(req.path()) {
        let token = app::auth::ssr::session_token(req.request());
        let core = req.app_data::<web::Data<Core>>().cloned();
        let signed_in = match (token, core) {
            (None, _) => Ok(false),
            (Some(t), Some(core)) => core.session(&t).await.map(|s| match s {
                // The page reads it from here (`current_session`) instead
                // of looking the session up a second time.
                Some(s) => {
                    req.extensions_mut().insert(s);
                    true
                }
                None => false,
            }),
            (Some(_), None) => Ok(true),
        };
        if let Ok(false) = signed_in {
            let here = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let to = if here == "/" {
                "/login".to_owned()
            } else {
                format!("/login?next={}", app::mail::encode(here))
            };
            let resp = HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, to))
                .finish();
            return Ok(req.into_response(resp).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// `/healthz`: 200 when the store commits a write, 503 when it does not
/// (or a write failed moments ago), so a load balancer takes a node out
/// while its storage is down. A write stuck behind a held lock is down too.
/// The ACME HTTP-01 answer (RFC 8555 §8.3) for a token being validated:
/// the key authorization as plain text; 404 for any other token.
async fn acme_challenge(
    challenges: web::Data<crate::acme::Challenges>,
    token: web::Path<String>,
) -> HttpResponse {
    match challenges.answer(&token) {
        Some(a) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(a),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn healthz(core: web::Data<Core>) -> HttpResponse {
    let probe = tokio::time::timeout(std::time::Duration::from_secs(5), core.health()).await;
    match probe.unwrap_or_else(|_| {
        Err(mailcore::CoreError::Unavailable(
            "the health write did not finish in 5 s".into(),
        ))
    }) {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ok\n"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("database unavailable\n")
        }
    }
}

pub fn server(
    cfg: &Config,
    core: Core,
    outside: std::sync::Arc<dyn mailcore::outside::OutsideMail>,
    tls: std::sync::Arc<rustls::ServerConfig>,
    challenges: crate::acme::Challenges,
    certs: Option<std::sync::Arc<crate::tls::CertStore>>,
) -> Result<Server, String> {
    let addr: SocketAddr = cfg
        .web
        .listen
        .parse()
        .map_err(|e| format!("web.listen {:?}: {e}", cfg.web.listen))?;
    let site_root = cfg.web.site_root.to_string_lossy().to_string();
    let assets = web::Data::new(assets::Assets::load(&cfg.web.site_root));
    if assets.embedded {
        tracing::info!(
            name = assets.output_name(),
            "web assets: compiled into this binary"
        );
    } else if !assets.hydrates() {
        tracing::warn!(
            site_root,
            "no pkg/tern.js and tern.wasm under the site root: pages render but will not hydrate (build with ./scripts/run.sh, or build_site in scripts/lib.sh)"
        );
    }
    let leptos_options = LeptosOptions::builder()
        .output_name(assets.output_name().to_owned())
        .site_root(site_root.clone())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let publish = crate::tls::publish(cfg);
    let ns = match cfg.smtp.nameserver.trim() {
        "" => None,
        n => Some(
            n.parse()
                .map_err(|_| format!("smtp.nameserver {n:?} is not ip:port"))?,
        ),
    };
    let checker: std::sync::Arc<dyn mailcore::dns_records::DnsChecker> =
        std::sync::Arc::new(crate::dns_check::Checker(crate::resolver::resolver(ns)?));
    let settings = app::WebSettings {
        hostname: cfg.hostname.clone(),
        max_message_size: cfg.smtp.max_message_size,
        max_recipients: cfg.smtp.max_recipients,
        autosave_secs: cfg.web.autosave_secs.max(1),
        sender_checks: cfg.smtp.sender_checks,
        mta_sts_policy: publish.mta_sts_policy.clone(),
        undo_send_secs: cfg.web.undo_send_secs,
        tlsa: publish.tlsa.clone(),
    };
    let cfg_for_web = cfg.clone();
    let metrics_state = web::Data::new(metrics::MetricsState {
        certs,
        handle: metrics::install(),
        token: cfg.web.metrics_token.clone(),
    });
    let server = HttpServer::new(move || {
        let routes = generate_route_list(app::App);
        let opts = leptos_options.clone();
        let ctx_core = core.clone();
        let ctx_settings = settings.clone();
        let ctx_outside = app::outside::ssr::OutsideClient(outside.clone());
        let ctx_checker = checker.clone();
        App::new()
            .wrap(from_fn(front_door))
            .wrap(from_fn(origin_check))
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin"))
                    .add((
                        // Leptos pages set their own nonce policy
                        // (app::head); everything else runs no script.
                        "Content-Security-Policy",
                        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                    ))
                    .add(("X-Frame-Options", "DENY")),
            )
            .app_data(web::Data::new(core.clone()))
            .app_data(web::Data::new(app::outside::ssr::OutsideClient(outside.clone())))
            .app_data(web::Data::new(settings.clone()))
            .app_data(metrics_state.clone())
            .route("/metrics", web::get().to(metrics::metrics))
            .app_data(web::Data::new(cfg_for_web.clone()))
            .route(
                "/mail/config-v1.1.xml",
                web::get().to(autoconfig::config_xml),
            )
            .route(
                "/.well-known/autoconfig/mail/config-v1.1.xml",
                web::get().to(autoconfig::config_xml),
            )
            .route(
                "/.well-known/mta-sts.txt",
                web::get().to(autoconfig::mta_sts_policy),
            )
            .route("/healthz", web::get().to(healthz))
            .route("/status", web::get().to(status::page))
            .route("/status/feed.atom", web::get().to(status::feed))
            .route("/status.css", web::get().to(status::css))
            .app_data(web::Data::new(challenges.clone()))
            .route(
                "/.well-known/acme-challenge/{token}",
                web::get().to(acme_challenge),
            )
            .route("/msg/body", web::get().to(mail::body))
            .route("/msg/att", web::get().to(mail::attachment))
            .route("/compose", web::post().to(mail::compose))
            .route("/mail/export", web::get().to(mbox::export))
            .route("/mail/import", web::post().to(mbox::import))
            .route("/mail/events", web::get().to(live::events))
            .route("/outside/events", web::get().to(outside::events))
            .route("/outside/msg/body", web::get().to(outside::body))
            .route("/outside/msg/att", web::get().to(outside::attachment))
            .app_data(assets.clone())
            .route("/pkg/{file}", web::get().to(assets::serve))
            .route("/pkg/{file}", web::head().to(assets::serve))
            .leptos_routes_with_context(
                routes,
                move || {
                    provide_context(ctx_core.clone());
                    provide_context(ctx_settings.clone());
                    provide_context(ctx_outside.clone());
                    provide_context(ctx_checker.clone());
                },
                {
                    let opts = opts.clone();
                    move || app::shell(opts.clone())
                },
            )
            .app_data(web::Data::new(opts))
    })
    .disable_signals()
    .bind(addr)
    .map_err(|e| format!("web.listen {addr}: {e}"))?;
    // HTTPS with the mail listeners' certificate: the webmail over TLS,
    // and what MTA-STS needs (RFC 8461 §3.3 fetches the policy over HTTPS
    // only, from `mta-sts.D`).
    let server = match cfg.web.listen_tls.trim() {
        "" => server,
        a => {
            let tls_addr: SocketAddr = a
                .parse()
                .map_err(|e| format!("web.listen_tls {a:?}: {e}"))?;
            let mut sc = (*tls).clone();
            sc.alpn_protocols = vec![b"http/1.1".to_vec()];
            tracing::info!(addr = %tls_addr, "web listening (HTTPS)");
            server
                .bind_rustls_0_23(tls_addr, sc)
                .map_err(|e| format!("web.listen_tls {tls_addr}: {e}"))?
        }
    };
    let server = server.run();
    tracing::info!(%addr, "web listening");
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_rules() {
        let post = Method::POST;
        let host = Some("127.0.0.1:8080");
        // Same origin, with either or both headers.
        assert!(!is_cross_site(
            &post,
            Some("http://127.0.0.1:8080"),
            Some("same-origin"),
            host
        ));
        assert!(!is_cross_site(&post, None, Some("none"), host));
        // Non-browser client (curl) without either header.
        assert!(!is_cross_site(&post, None, None, host));
        // Cross-site by either signal.
        assert!(is_cross_site(
            &post,
            Some("https://evil.example"),
            None,
            host
        ));
        assert!(is_cross_site(&post, None, Some("cross-site"), host));
        assert!(is_cross_site(&post, None, Some("same-site"), host));
        assert!(is_cross_site(&post, Some("null"), None, host));
        // Reads are never blocked.
        assert!(!is_cross_site(
            &Method::GET,
            Some("https://evil.example"),
            Some("cross-site"),
            host
        ));
    }
}
