//! Logging in: LOGIN (RFC 9051 §6.2.3) and AUTHENTICATE PLAIN (§6.2.2,
//! RFC 4616, with SASL-IR, RFC 4959). Both need TLS first (§6.2.3
//! LOGINDISABLED; STARTTLS itself is §6.2.1, in the session's dispatch).

use super::prelude::*;

impl Session {
    /// LOGIN (RFC 9051 §6.2.3): refused until TLS (LOGINDISABLED).
    pub(in crate::imap) async fn login_command(
        &mut self,
        tag: &str,
        user: &str,
        pass: &str,
    ) -> Res {
        if !self.secure {
            return self
                .no(tag, Code::PrivacyRequired, "Use STARTTLS first")
                .await;
        }
        self.login(tag, user, pass).await
    }

    /// COMPRESS DEFLATE (RFC 4978 §3): after the tagged OK, both directions
    /// are raw DEFLATE (RFC 1951) until the connection ends. Once only
    /// (`COMPRESSIONACTIVE`); an unknown algorithm is BAD.
    pub(in crate::imap) async fn compress(&mut self, tag: &str, algorithm: &str) -> Res {
        if self.compressed {
            return self
                .no(tag, Code::CompressionActive, "DEFLATE is already active")
                .await;
        }
        if algorithm != "DEFLATE" {
            self.reply(Response::bad(tag, "Only DEFLATE is supported"))
                .await?;
            return Ok(Flow::Continue);
        }
        self.reply(Response::ok(tag, "DEFLATE active")).await?;
        self.flush_out().await?;
        let Some(io) = self.io.take() else {
            return Ok(Flow::Close);
        };
        self.io = Some(crate::netio::deflate(io));
        self.compressed = true;
        Ok(Flow::Continue)
    }

    /// STARTTLS (RFC 9051 §6.2.1). Anything the client pipelined after it
    /// is thrown away with the plaintext buffer (the STARTTLS injection
    /// defence, RFC 9051 §11.1).
    pub(in crate::imap) async fn starttls(&mut self, tag: &str) -> Res {
        let Some(acceptor) = self.tls.take() else {
            self.reply(Response::bad(tag, "TLS is already active"))
                .await?;
            return Ok(Flow::Continue);
        };
        self.reply(Response::ok(tag, "Begin TLS negotiation now"))
            .await?;
        self.flush_out().await?;
        let limit = self.settings.tls_handshake_timeout;
        if !crate::netio::upgrade_tls(&mut self.io, &acceptor, limit, self.peer).await? {
            return Ok(Flow::Close);
        }
        self.secure = true;
        Ok(Flow::Continue)
    }

    pub(in crate::imap) async fn login(&mut self, tag: &str, user: &str, pass: &str) -> Res {
        let authed = self
            .core
            .authenticate_session(user, pass, self.peer.ip())
            .await;
        crate::logins::record("imap", self.peer, user, &authed);
        match authed {
            Ok((account, epoch)) => {
                let Some(slot) = self
                    .limits
                    .account_in_cluster(&self.core, account.id, "imap")
                    .await
                else {
                    return self
                        .no(
                            tag,
                            Code::Limit,
                            "Too many connections for this account from here",
                        )
                        .await;
                };
                self._slot = Some(slot);
                self.account = Some(account);
                self.login_epoch = epoch;
                self.state = State::Authenticated;
                let caps = Code::Capability(self.capabilities());
                self.reply(Response::tagged(tag, Status::Ok, Some(caps), "Logged in"))
                    .await?;
                Ok(Flow::Continue)
            }
            Err(AuthError::InvalidCredentials) => {
                self.no(tag, Code::AuthenticationFailed, "Invalid credentials")
                    .await
            }
            Err(AuthError::Throttled { retry_after }) => {
                let text = format!("Too many failed logins; try again in {retry_after} seconds");
                self.no(tag, Code::AuthenticationFailed, text).await
            }
            Err(AuthError::Core(e)) => Err(Fail::Core(e)),
        }
    }

    /// AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959).
    pub(in crate::imap) async fn authenticate(
        &mut self,
        tag: &str,
        mech: &str,
        initial: Option<String>,
    ) -> Res {
        if mech != "PLAIN" {
            return self.no(tag, Code::Cannot, "Only PLAIN is supported").await;
        }
        if !self.secure {
            return self
                .no(tag, Code::PrivacyRequired, "Use STARTTLS first")
                .await;
        }
        let resp = match initial {
            Some(r) => r,
            None => {
                self.reply(Response::Continue("".into())).await?;
                self.flush_out().await?;
                let io = live(&mut self.io)?;
                match read_line(io, self.settings.max_line).await? {
                    Line::Ok(l) => String::from_utf8_lossy(&l).trim_end().to_owned(),
                    _ => return Ok(Flow::Close),
                }
            }
        };
        match crate::sasl::plain(&resp) {
            Ok(c) => self.login(tag, &c.user, &c.password).await,
            Err(crate::sasl::SaslError::Cancelled) => {
                self.reply(Response::bad(tag, "Authentication cancelled"))
                    .await?;
                Ok(Flow::Continue)
            }
            Err(crate::sasl::SaslError::BadBase64) => {
                self.reply(Response::bad(tag, "Invalid base64")).await?;
                Ok(Flow::Continue)
            }
            Err(crate::sasl::SaslError::Malformed) => {
                self.no(tag, Code::AuthenticationFailed, "Invalid credentials")
                    .await
            }
        }
    }
}
