//! Sending as an outside address: lettre's SMTP client to the provider's
//! submission server (465 with TLS, or 587 with STARTTLS, RFC 8314 and
//! RFC 6409), authenticated with the account's login. The connection goes
//! to an address that passed the same private-address check as reading.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use mailcore::outside::{OutsideError, OutsideLogin, Security};

use super::Outside;
use super::net;

fn smtp_error(e: lettre::transport::smtp::Error, what: &str) -> OutsideError {
    if e.is_timeout() {
        return OutsideError::Timeout(what.to_owned());
    }
    if e.is_permanent() || e.is_transient() {
        return OutsideError::Protocol(format!("{what}: {e}"));
    }
    OutsideError::Unreachable(format!("{what}: {e}"))
}

impl Outside {
    fn tls_params(&self, host: &str, pinned: Option<&str>) -> Result<TlsParameters, OutsideError> {
        // A certificate the user trusted by hand is checked against its
        // fingerprint after the handshake (lettre has no pinning hook), so
        // only then is the usual verification set aside.
        TlsParameters::builder(host.to_owned())
            .dangerous_accept_invalid_certs(pinned.is_some())
            .build_rustls()
            .map_err(|e| OutsideError::Protocol(format!("TLS setup: {e}")))
    }

    fn check_pin(
        &self,
        conn: &AsyncSmtpConnection,
        host: &str,
        pinned: Option<&str>,
    ) -> Result<(), OutsideError> {
        let Some(pin) = pinned else {
            return Ok(());
        };
        let der = conn
            .peer_certificate()
            .map_err(|e| OutsideError::Protocol(format!("TLS with {host}: {e}")))?;
        let fp = net::fingerprint(&der);
        if fp != pin {
            return Err(OutsideError::Certificate(mailcore::outside::CertProblem {
                host: host.to_owned(),
                reason: "not the certificate trusted for this account".into(),
                fingerprint: fp,
            }));
        }
        Ok(())
    }

    /// Submits `raw` for `to` as the account's address; the provider's
    /// reply to the message.
    pub(super) async fn smtp_send(
        &self,
        login: &OutsideLogin,
        to: &[String],
        raw: &[u8],
    ) -> Result<String, OutsideError> {
        let ep = login.settings.outgoing.as_ref().ok_or_else(|| {
            OutsideError::Unsupported("this account has no outgoing server".into())
        })?;
        let timeout = Duration::from_secs(self.cfg.connect_timeout_secs.max(1));
        let cmd_timeout = Duration::from_secs(self.cfg.command_timeout_secs.max(1));
        let addr = net::allowed_addrs(&*self.dns, &ep.host, ep.port, self.cfg.allow_private)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| OutsideError::Unreachable(ep.host.clone()))?;
        let pinned = login.pinned_cert.as_deref();
        let implicit = match ep.security {
            Security::Tls => Some(self.tls_params(&ep.host, pinned)?),
            Security::StartTls => None,
        };
        let hello = ClientId::Domain("tern.invalid".into());
        let connect =
            AsyncSmtpConnection::connect_tokio1(addr, Some(timeout), &hello, implicit, None);
        let mut conn = match tokio::time::timeout(timeout + cmd_timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(smtp_error(e, &format!("connecting to {ep}"))),
            Err(_) => return Err(OutsideError::Timeout(format!("connecting to {ep}"))),
        };
        let result = async {
            if ep.security == Security::StartTls {
                if !conn.can_starttls() {
                    return Err(OutsideError::Protocol(format!(
                        "{} offers no STARTTLS; Tern does not send a password in clear",
                        ep.host
                    )));
                }
                let params = self.tls_params(&ep.host, pinned)?;
                tokio::time::timeout(cmd_timeout, conn.starttls(params, &hello))
                    .await
                    .map_err(|_| OutsideError::Timeout("STARTTLS".into()))?
                    .map_err(|e| smtp_error(e, "STARTTLS"))?;
            }
            self.check_pin(&conn, &ep.host, pinned)?;
            let (user, password) = login.smtp_login();
            let creds = Credentials::new(user.to_owned(), password.to_owned());
            match tokio::time::timeout(
                cmd_timeout,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(OutsideError::Login(format!(
                        "{} refused the login: {e}",
                        ep.host
                    )));
                }
                Err(_) => return Err(OutsideError::Timeout("AUTH".into())),
            }
            let from: lettre::Address = login.settings.address.parse().map_err(|_| {
                OutsideError::Protocol(format!("{} is not an address", login.settings.address))
            })?;
            let mut rcpts = Vec::new();
            for t in to {
                rcpts.push(
                    t.parse::<lettre::Address>()
                        .map_err(|_| OutsideError::Protocol(format!("{t} is not an address")))?,
                );
            }
            let envelope = Envelope::new(Some(from), rcpts)
                .map_err(|e| OutsideError::Protocol(e.to_string()))?;
            let reply = tokio::time::timeout(cmd_timeout * 2, conn.send(&envelope, raw))
                .await
                .map_err(|_| OutsideError::Timeout("sending the message".into()))?
                .map_err(|e| smtp_error(e, "sending"))?;
            Ok(format!(
                "{} {}",
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            ))
        }
        .await;
        match &result {
            Ok(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
            }
            Err(_) => conn.abort().await,
        }
        result
    }
}
