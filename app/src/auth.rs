//! Sign-in, sign-out and "who am I", as server functions.
//!
//! The session cookie is HttpOnly and SameSite=Lax; over HTTPS it also gets
//! `Secure` and the `__Host-` prefix. Each login issues a new random token,
//! so a planted cookie (session fixation) never becomes a live session.
//! Cross-site posts are refused before they reach these functions (the
//! server's origin check), which also covers login CSRF.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What a page says while the mail store is down.
pub use crate::error::{AppError, UNAVAILABLE};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub address: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    pub name: String,
    pub unseen: i64,
    pub total: i64,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use std::net::{IpAddr, Ipv4Addr};

    use actix_web::HttpRequest;
    use actix_web::http::header::{HeaderValue, SET_COOKIE};
    use leptos::prelude::*;
    use mailcore::Core;

    use crate::error::AppError;
    pub use crate::error::ssr::{core_error, raise};
    use mailcore::sessions::{SESSION_TTL_SECS, WebSession};

    pub const COOKIE: &str = "tern_session";
    pub const SECURE_COOKIE: &str = "__Host-tern_session";

    pub fn core() -> Result<Core, AppError> {
        use_context::<Core>()
            .ok_or_else(|| raise(AppError::Internal("mail core missing from context".into())))
    }

    pub async fn request() -> Result<HttpRequest, AppError> {
        leptos_actix::extract::<HttpRequest>()
            .await
            .map_err(|e| raise(AppError::Internal(e.to_string())))
    }

    pub fn client_ip(req: &HttpRequest) -> IpAddr {
        req.peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn is_https(req: &HttpRequest) -> bool {
        req.connection_info().scheme() == "https"
    }

    pub fn session_token(req: &HttpRequest) -> Option<String> {
        req.cookie(SECURE_COOKIE)
            .or_else(|| req.cookie(COOKIE))
            .map(|c| c.value().to_owned())
    }

    pub fn set_session_cookie(req: &HttpRequest, token: &str, max_age: i64) {
        let cookie = if is_https(req) {
            format!(
                "{SECURE_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax; Secure"
            )
        } else {
            format!("{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax")
        };
        if let (Some(resp), Ok(v)) = (
            use_context::<leptos_actix::ResponseOptions>(),
            HeaderValue::from_str(&cookie),
        ) {
            resp.append_header(SET_COOKIE, v);
        }
    }

    pub fn login_cookie(req: &HttpRequest, token: &str) {
        set_session_cookie(req, token, SESSION_TTL_SECS);
    }

    /// The signed-in session of this request, if any.
    pub async fn current_session() -> Result<Option<WebSession>, AppError> {
        let req = request().await?;
        // A page request's session was looked up at the front door.
        let seen = actix_web::HttpMessage::extensions(&req)
            .get::<WebSession>()
            .cloned();
        if seen.is_some() {
            return Ok(seen);
        }
        let Some(token) = session_token(&req) else {
            return Ok(None);
        };
        core()?.session(&token).await.map_err(core_error)
    }
}

/// Where a sign-in may send the browser next: a path on this site, never
/// another origin (`//evil.test`, `/\\evil.test` and `https:` are refused:
/// an open redirect would let a phishing link borrow Tern's sign-in page).
pub fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok { next } else { "/" }
}

/// Signs in. Always answers with a redirect, so the same form works with and
/// without JavaScript: to `next` (the page that sent the visitor here) or
/// `/` on success, back to `/login?error=...` if not.
#[server(prefix = "/api", endpoint = "login")]
pub async fn login(
    address: String,
    password: String,
    #[server(default)] next: String,
) -> Result<(), AppError> {
    use self::ssr::*;
    use mailcore::AuthError;

    let core = core()?;
    let req = request().await?;
    let ip = client_ip(&req);
    // Kept through a failed attempt, so the second try lands there too.
    let again = |error: &str| {
        let mut to = format!("/login?error={error}");
        if safe_next(&next) != "/" {
            to.push_str(&format!("&next={}", crate::mail::encode(&next)));
        }
        to
    };
    match core.authenticate(&address, &password, ip).await {
        Ok(account) => {
            let token = core
                .create_session(account.id, &ip.to_string())
                .await
                .map_err(core_error)?;
            login_cookie(&req, &token);
            tracing::info!(account = %account.address, %ip, "web login");
            leptos_actix::redirect(safe_next(&next));
        }
        Err(AuthError::Throttled { retry_after }) => {
            leptos_actix::redirect(&format!("{}&retry={retry_after}", again("throttled")));
        }
        Err(AuthError::Core(e)) if e.is_temporary() => {
            leptos_actix::redirect(&again("unavailable"));
        }
        Err(_) => {
            metrics::counter!("tern_auth_failures_total", "protocol" => "web").increment(1);
            leptos_actix::redirect(&again("invalid"))
        }
    }
    Ok(())
}

#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use self::ssr::*;
    let req = request().await?;
    if let Some(token) = session_token(&req) {
        let core = core()?;
        // Passwords kept for this session only go with it.
        if let Ok(Some(s)) = core.session(&token).await {
            core.forget_outside_passwords(&s.csrf_token);
        }
        core.end_session(&token).await.map_err(core_error)?;
    }
    set_session_cookie(&req, "", 0);
    leptos_actix::redirect("/login");
    Ok(())
}

/// Ends every session of the signed-in account: all its web sessions
/// (this one too) and its IMAP and POP3 sessions. Takes the CSRF token, as
/// every state-changing action does.
#[server(prefix = "/api", endpoint = "logout_everywhere")]
pub async fn logout_everywhere(csrf: String) -> Result<(), AppError> {
    use self::ssr::*;
    let s = crate::mail::ssr::require(&csrf).await?;
    let req = request().await?;
    core()?
        .end_all_sessions(&s.account)
        .await
        .map_err(core_error)?;
    tracing::info!(account = %s.account.address, ip = %client_ip(&req), "signed out everywhere");
    set_session_cookie(&req, "", 0);
    leptos_actix::redirect("/login?signed_out=everywhere");
    Ok(())
}

#[server(prefix = "/api", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<Me>, AppError> {
    Ok(ssr::current_session().await?.map(|s| Me {
        address: s.account.address,
        role: s.account.role.as_str().to_owned(),
    }))
}

/// The signed-in user's folders with unread counts.
#[server(prefix = "/api", endpoint = "folders")]
pub async fn folders() -> Result<Vec<FolderInfo>, AppError> {
    let Some(s) = ssr::current_session().await? else {
        return Ok(Vec::new());
    };
    let boxes = ssr::core()?
        .mail(s.account.id)
        .mailboxes()
        .await
        .map_err(ssr::core_error)?;
    Ok(boxes
        .into_iter()
        .map(|m| FolderInfo {
            name: m.name,
            unseen: m.unseen,
            total: m.total,
        })
        .collect())
}
