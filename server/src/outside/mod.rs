//! The client side of outside accounts (the mail2web feature): the
//! server's implementation of [`mailcore::outside::OutsideMail`] with real
//! sockets. Every connection goes through `net`, which refuses private
//! and local addresses unless `outside.allow_private` is set, verifies
//! certificates (or matches one the user trusted), and bounds what the
//! outside server may send.

pub mod cache;
pub mod discover;
pub mod dns;
pub mod fetch;
mod imap;
pub mod net;
pub mod pop3;
mod smtp;

use std::sync::Arc;

use mailcore::outside::{
    Discovered, MessageRef, OutsideError, OutsideFlag, OutsideFolder, OutsideLogin, OutsideMail,
    OutsidePage, Protocol, SendReport,
};

use crate::config::OutsideConfig;
use dns::Resolve;

pub struct Outside {
    cfg: OutsideConfig,
    dns: Arc<dyn Resolve>,
    /// Logged-in IMAP sessions kept between web requests.
    pool: imap::Pool,
}

impl Outside {
    pub fn new(cfg: OutsideConfig, dns: Arc<dyn Resolve>) -> Self {
        Outside {
            cfg,
            dns,
            pool: imap::Pool::default(),
        }
    }

    /// With hickory, on `outside.nameserver` or the system's resolver.
    pub fn from_config(cfg: &OutsideConfig) -> Result<Self, String> {
        let ns =
            if cfg.nameserver.trim().is_empty() {
                None
            } else {
                Some(cfg.nameserver.trim().parse().map_err(|_| {
                    format!("outside.nameserver {:?} is not ip:port", cfg.nameserver)
                })?)
            };
        Ok(Self::new(
            cfg.clone(),
            Arc::new(dns::HickoryResolve::new(ns)?),
        ))
    }
}

/// A listing row from a message's header block (IMAP BODY[HEADER] or
/// POP3 TOP n 0), decoded by mail-parser.
pub(crate) fn summary_of(
    header: &[u8],
    id: MessageRef,
    size: u32,
    seen: bool,
    flagged: bool,
) -> mailcore::outside::OutsideSummary {
    let parsed = mail_parser::MessageParser::default().parse_headers(header);
    let m = parsed.as_ref();
    let date = m.and_then(|m| m.date());
    mailcore::outside::OutsideSummary {
        id,
        from: m
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .map(|a| a.name().or(a.address()).unwrap_or_default().to_owned())
            .unwrap_or_default(),
        subject: m.and_then(|m| m.subject()).unwrap_or_default().to_owned(),
        date: date.map(|d| d.to_rfc3339()).unwrap_or_default(),
        unix: date.map(|d| d.to_timestamp()).unwrap_or(0),
        size,
        seen,
        flagged,
    }
}

fn imap_only(what: &str) -> OutsideError {
    OutsideError::Unsupported(format!(
        "{what} needs IMAP; POP3 has no folders, flags or search"
    ))
}

#[async_trait::async_trait]
impl OutsideMail for Outside {
    async fn discover(&self, address: &str) -> Option<Discovered> {
        self.find(address).await
    }

    async fn check(&self, login: &OutsideLogin) -> Result<(), OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_check(login).await,
            Protocol::Pop3 => self.pop_check(login).await,
        }
    }

    async fn folders(&self, login: &OutsideLogin) -> Result<Vec<OutsideFolder>, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_folders(login).await,
            // A maildrop is one folder (RFC 1939 §1).
            Protocol::Pop3 => Ok(vec![OutsideFolder {
                name: "INBOX".into(),
                noselect: false,
            }]),
        }
    }

    async fn messages(
        &self,
        login: &OutsideLogin,
        folder: &str,
        page: u32,
        page_size: u32,
    ) -> Result<OutsidePage, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_messages(login, folder, page, page_size).await,
            Protocol::Pop3 => self.pop_messages(login, page, page_size).await,
        }
    }

    async fn message(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<Vec<u8>, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_message(login, folder, id).await,
            Protocol::Pop3 => self.pop_message(login, id).await,
        }
    }

    async fn search(
        &self,
        login: &OutsideLogin,
        folder: &str,
        query: &str,
        limit: u32,
    ) -> Result<OutsidePage, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_search(login, folder, query, limit).await,
            Protocol::Pop3 => Err(imap_only("searching")),
        }
    }

    async fn set_flag(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        flag: OutsideFlag,
        on: bool,
    ) -> Result<(), OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_set_flag(login, folder, id, flag, on).await,
            Protocol::Pop3 => Err(imap_only("flagging")),
        }
    }

    async fn move_to(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        target: &str,
    ) -> Result<(), OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_move(login, folder, id, target).await,
            Protocol::Pop3 => Err(imap_only("moving")),
        }
    }

    async fn delete(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<(), OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_delete(login, folder, id).await,
            Protocol::Pop3 => self.pop_delete(login, id).await,
        }
    }

    async fn wait_for_change(
        &self,
        login: &OutsideLogin,
        folder: &str,
        max: std::time::Duration,
    ) -> Result<Option<u32>, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_wait(login, folder, max).await,
            Protocol::Pop3 => Err(imap_only("live new mail")),
        }
    }

    async fn send(
        &self,
        login: &OutsideLogin,
        to: &[String],
        raw: &[u8],
    ) -> Result<SendReport, OutsideError> {
        let reply = self.smtp_send(login, to, raw).await?;
        // The message is sent: a Sent copy that fails is not a failed send.
        let filed_in = match login.settings.protocol {
            Protocol::Imap => match self.imap_file_sent(login, raw).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(address = %login.settings.address, error = %e, "sent, but no copy in the outside Sent folder");
                    None
                }
            },
            Protocol::Pop3 => None,
        };
        Ok(SendReport { reply, filed_in })
    }
}
