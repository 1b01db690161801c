//! SASL, the part the three protocols share: SMTP AUTH (RFC 4954), IMAP
//! AUTHENTICATE (RFC 9051 §6.2.2, with SASL-IR, RFC 4959) and POP3 AUTH
//! (RFC 5034) all carry the same base64 client responses. This module
//! turns one response line into typed credentials; it is pure (text in,
//! a result out), and each protocol words its own replies from
//! [`SaslError`].
//!
//! Mechanisms: PLAIN (RFC 4616) everywhere; LOGIN's two prompts are
//! SMTP's, so SMTP reads each of its lines with [`text`].

use base64::Engine;

/// What a client sent for an account and its password.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4).
    Cancelled,
    /// Not base64, or not UTF-8 text.
    BadBase64,
    /// Decoded, but not a PLAIN message Tern accepts: the wrong number of
    /// fields, or an authorization identity other than the user's own
    /// (Tern has no proxy logins).
    Malformed,
}

/// One client response: `*` cancels; `=` is an empty initial response
/// (RFC 4954 §4, RFC 4959 §3, RFC 5034 §4); anything else is base64.
pub fn response(line: &str) -> Result<Vec<u8>, SaslError> {
    match line.trim() {
        "*" => Err(SaslError::Cancelled),
        "=" => Ok(Vec::new()),
        b64 => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SaslError::BadBase64),
    }
}

/// One response decoded to text (each line of LOGIN).
pub fn text(line: &str) -> Result<String, SaslError> {
    String::from_utf8(response(line)?).map_err(|_| SaslError::BadBase64)
}

/// PLAIN (RFC 4616 §2): `authzid NUL authcid NUL passwd`, where the
/// authorization identity is empty or the user's own.
pub fn plain(line: &str) -> Result<Credentials, SaslError> {
    let text = text(line)?;
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authz), Some(user), Some(password), None)
            if !user.is_empty() && (authz.is_empty() || authz == user) =>
        {
            Ok(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn plain_messages() {
        let ok = Credentials {
            user: "alice@example.test".into(),
            password: "pw with spaces".into(),
        };
        assert_eq!(plain(&b64(b"\0alice@example.test\0pw with spaces")), Ok(ok));
        // authzid equal to the user is the same login.
        assert!(plain(&b64(b"alice@example.test\0alice@example.test\0pw")).is_ok());
        // Someone else's authzid is a proxy login: refused.
        assert_eq!(
            plain(&b64(b"bob@example.test\0alice@example.test\0pw")),
            Err(SaslError::Malformed)
        );
        assert_eq!(plain(&b64(b"\0alice\0pw\0more")), Err(SaslError::Malformed));
        assert_eq!(plain(&b64(b"alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(plain(&b64(b"\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(plain("="), Err(SaslError::Malformed));
        assert_eq!(plain(" * "), Err(SaslError::Cancelled));
        assert_eq!(plain("not base64!"), Err(SaslError::BadBase64));
        assert_eq!(plain(&b64(b"\0alice\0\xff\xfe")), Err(SaslError::BadBase64));
        // Surrounding blanks (a client's stray space) are not part of it.
        assert!(plain(&format!(" {}\r\n", b64(b"\0a\0b"))).is_ok());
    }

    #[test]
    fn responses() {
        assert_eq!(response("="), Ok(Vec::new()));
        assert_eq!(text("VXNlcm5hbWU6"), Ok("Username:".into()));
        assert_eq!(text("*"), Err(SaslError::Cancelled));
    }
}
