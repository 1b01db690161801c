//! One structured line per login attempt, alike on every protocol (SMTP
//! AUTH, IMAP, POP3, ManageSieve): `protocol`, `peer`, `user` (as typed)
//! and `result` (`ok`, `invalid`, `throttled`, `unavailable`), so an
//! operator can follow an account or an address through the logs (and
//! `TERN_LOG_FORMAT=json` makes them fields), and fail2ban can match the
//! failures. Failed credentials also count in `tern_auth_failures_total`.

use std::net::SocketAddr;

use mailcore::AuthError;

pub fn record<T>(protocol: &'static str, peer: SocketAddr, user: &str, r: &Result<T, AuthError>) {
    let result = match r {
        Ok(_) => "ok",
        Err(AuthError::InvalidCredentials) => "invalid",
        Err(AuthError::Throttled { .. }) => "throttled",
        Err(AuthError::Core(_)) => "unavailable",
    };
    if r.is_ok() {
        tracing::info!(protocol, %peer, user, result, "login");
    } else {
        tracing::warn!(protocol, %peer, user, result, "login");
    }
    if matches!(r, Err(AuthError::InvalidCredentials)) {
        metrics::counter!("tern_auth_failures_total", "protocol" => protocol).increment(1);
    }
}
