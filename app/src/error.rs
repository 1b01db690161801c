//! The one error every server function returns, typed on both sides. The
//! server picks the variant, and with it the HTTP status; the browser gets
//! the same value back (as JSON); a page decides what to show by the
//! variant, never by reading the message.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppError {
    /// No session: the page offers the sign-in form.
    NotSignedIn,
    /// Signed in, but not allowed (a wrong CSRF token, another domain's
    /// admin page); the text says which.
    Forbidden(String),
    /// The folder, message or account asked for is not there (or not the
    /// user's, which reads the same).
    NotFound(String),
    /// The request itself is wrong (a form field, an unknown action).
    Invalid(String),
    /// The mail store cannot answer right now (DESIGN.md rule 2): nothing
    /// is lost, try again.
    Unavailable,
    /// Anything else, said as it is.
    Internal(String),
}

pub const UNAVAILABLE: &str = "The mail store is unavailable right now. Try again shortly.";

impl AppError {
    /// The HTTP status a response carrying this error gets.
    pub fn status(&self) -> u16 {
        match self {
            AppError::NotSignedIn => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) => 400,
            AppError::Unavailable => 503,
            AppError::Internal(_) => 500,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::NotSignedIn => f.write_str("You are not signed in."),
            AppError::Unavailable => f.write_str(UNAVAILABLE),
            AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::Invalid(m)
            | AppError::Internal(m) => f.write_str(m),
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    /// Failures of the server-function machinery itself (a request that
    /// does not decode, a lost connection).
    fn from_server_fn_error(e: ServerFnErrorErr) -> Self {
        match e {
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::MissingArg(m) => AppError::Invalid(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::AppError;

    /// Sets the response's status from the error, then returns it: every
    /// error a server function sends passes here (or through
    /// [`core_error`]), so a page or an API call carries its real status.
    pub fn raise(e: AppError) -> AppError {
        if let Some(resp) = leptos::prelude::use_context::<leptos_actix::ResponseOptions>()
            && let Ok(code) = actix_web::http::StatusCode::from_u16(e.status())
        {
            resp.set_status(code);
        }
        e
    }

    /// The one mapping from the core's errors to the web's.
    pub fn core_error(e: mailcore::CoreError) -> AppError {
        use mailcore::CoreError as C;
        let text = e.to_string();
        raise(match e {
            C::Unavailable(_) => AppError::Unavailable,
            C::NotFound(_) => AppError::NotFound(text),
            C::Forbidden => AppError::Forbidden("403 Forbidden: you may not do this".into()),
            C::Invalid(_) | C::Conflict(_) | C::OverQuota | C::Limit(_) => AppError::Invalid(text),
        })
    }
}
