//! The client side of outside accounts (the mail2web feature): the
//! server's implementation of [`mailcore::outside::OutsideMail`] with real
//! sockets. Every connection goes through `net`, which refuses private
//! and local addresses unless `outside.allow_private` is set, verifies
//! certificates (or matches one the user trusted), and bounds what the
//! outside server may send.

pub mod discover;
pub mod dns;
mod imap;
pub mod net;

use std::sync::Arc;

use mailcore::outside::{
    Discovered, OutsideError, OutsideFolder, OutsideLogin, OutsideMail, OutsidePage, Protocol,
};

use crate::config::OutsideConfig;
use dns::Resolve;

pub struct Outside {
    cfg: OutsideConfig,
    dns: Arc<dyn Resolve>,
}

impl Outside {
    pub fn new(cfg: OutsideConfig, dns: Arc<dyn Resolve>) -> Self {
        Outside { cfg, dns }
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
            Arc::new(dns::HickoryResolve::new(ns)),
        ))
    }
}

fn pop3_not_yet() -> OutsideError {
    OutsideError::Unsupported("reading POP3 outside accounts is not available yet".into())
}

#[async_trait::async_trait]
impl OutsideMail for Outside {
    async fn discover(&self, address: &str) -> Option<Discovered> {
        self.find(address).await
    }

    async fn check(&self, login: &OutsideLogin) -> Result<(), OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_check(login).await,
            Protocol::Pop3 => Err(pop3_not_yet()),
        }
    }

    async fn folders(&self, login: &OutsideLogin) -> Result<Vec<OutsideFolder>, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_folders(login).await,
            Protocol::Pop3 => Err(pop3_not_yet()),
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
            Protocol::Pop3 => Err(pop3_not_yet()),
        }
    }

    async fn message(
        &self,
        login: &OutsideLogin,
        folder: &str,
        uid: u32,
    ) -> Result<Vec<u8>, OutsideError> {
        match login.settings.protocol {
            Protocol::Imap => self.imap_message(login, folder, uid).await,
            Protocol::Pop3 => Err(pop3_not_yet()),
        }
    }
}
