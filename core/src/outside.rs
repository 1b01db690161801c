//! Outside accounts: a mailbox at another provider that a local user reads
//! (and later fetches from and sends as) in the webmail, the feature Tern's
//! mail2web ancestor was named for.
//!
//! The core keeps the accounts and their sealed passwords, and defines
//! [`OutsideMail`], the client the server implements with real sockets
//! (async-imap, a POP3 client, lettre), so the web pages and the fetcher
//! stay free of network code.
//!
//! Passwords are sealed with ChaCha20-Poly1305 (ring) under a key in a file
//! in the data dir, not in the database: a copy of the database alone does
//! not give away anyone's outside password. The associated data binds each
//! sealed password to its owner and address, so a row cannot be moved to
//! another account and still open. A user may instead keep a password for
//! the browser session only: then it is held in memory and never written.

use crate::ids::AccountId;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::Core;
use crate::db::InsertCommitted;
use crate::entities::outside_account;
use crate::error::{CoreError, CoreResult};

/// At most this many outside accounts per local account.
pub const MAX_OUTSIDE_ACCOUNTS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutsideAccountId(pub i32);

impl std::fmt::Display for OutsideAccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How mail is read from the outside server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "imap" => Some(Protocol::Imap),
            "pop3" | "pop" => Some(Protocol::Pop3),
            _ => None,
        }
    }
}

/// TLS from the first byte (993, 995, 465) or upgraded with STARTTLS
/// (143, 110, 587). There is no plain-text mode: a password never crosses
/// the network in clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    Tls,
    StartTls,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "ssl" | "implicit" => Some(Security::Tls),
            "starttls" => Some(Security::StartTls),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        Endpoint {
            host: host.into(),
            port,
            security,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sec = match self.security {
            Security::Tls => "TLS",
            Security::StartTls => "STARTTLS",
        };
        write!(f, "{}:{} ({sec})", self.host, self.port)
    }
}

/// Where and how to reach an outside mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideSettings {
    pub address: String,
    pub username: String,
    pub protocol: Protocol,
    pub incoming: Endpoint,
    /// The provider's submission server, for sending as the address.
    pub outgoing: Option<Endpoint>,
}

impl OutsideSettings {
    /// Checks what a user typed: a host name or address literal, a port,
    /// a login name, all of bounded size.
    pub fn validate(&self) -> CoreResult<()> {
        crate::Address::parse(&self.address)
            .map_err(|_| CoreError::invalid(format!("{} is not an email address", self.address)))?;
        if self.username.is_empty() || self.username.len() > 320 {
            return Err(CoreError::invalid(
                "the user name must be 1 to 320 characters",
            ));
        }
        if self.username.chars().any(|c| c.is_control()) {
            return Err(CoreError::invalid(
                "the user name holds a control character",
            ));
        }
        for ep in std::iter::once(&self.incoming).chain(self.outgoing.as_ref()) {
            if !valid_host(&ep.host) {
                return Err(CoreError::invalid(format!(
                    "{} is not a host name",
                    ep.host
                )));
            }
            if ep.port == 0 {
                return Err(CoreError::invalid("the port must be 1 to 65535"));
            }
        }
        Ok(())
    }
}

/// A DNS name (letters, digits, hyphens, dots) or an IP address literal.
pub fn valid_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What adding an outside account takes.
#[derive(Clone, Copy, Debug)]
pub struct NewOutside<'a> {
    pub settings: &'a OutsideSettings,
    pub password: &'a str,
    /// Store the password (sealed); false: keep it for `session` only.
    pub remember: bool,
    /// The key of the browser session (its CSRF token).
    pub session: &'a str,
    /// SHA-256 of a certificate the user chose to trust.
    pub pinned_cert: Option<&'a str>,
    /// The outgoing server's own (user name, password), if different.
    pub smtp: Option<(&'a str, &'a str)>,
}

/// An outside account as its owner sees it (no password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideAccount {
    pub id: OutsideAccountId,
    pub owner: AccountId,
    pub settings: OutsideSettings,
    /// The password is stored (sealed); false: kept for the session only.
    pub remembered: bool,
    /// SHA-256 (hex) of a certificate the user trusted by hand.
    pub pinned_cert: Option<String>,
    /// What went wrong the last time Tern talked to the server.
    pub last_error: Option<String>,
    pub created_at: i64,
    /// Fetching its mail into the owner's INBOX.
    pub fetch: crate::outside_fetch::FetchState,
}

/// What a connection to an outside server needs.
#[derive(Clone, Debug)]
pub struct OutsideLogin {
    pub settings: OutsideSettings,
    pub password: String,
    pub pinned_cert: Option<String>,
    /// The outgoing server's own login (user name, password), when it
    /// differs from the incoming one.
    pub smtp: Option<(String, String)>,
}

impl OutsideLogin {
    /// The (user name, password) for the outgoing server.
    pub fn smtp_login(&self) -> (&str, &str) {
        match &self.smtp {
            Some((u, p)) => (u, p),
            None => (&self.settings.username, &self.password),
        }
    }
}

/// A certificate that did not verify, as the user is shown it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertProblem {
    pub host: String,
    /// Why it failed ("self-signed or unknown issuer", "not valid for
    /// this name", "expired"...).
    pub reason: String,
    /// SHA-256 of the server's certificate, hex, colon-free.
    pub fingerprint: String,
}

/// Why an outside server could not be used. Each reads as a sentence the
/// webmail shows for that account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutsideError {
    /// The host resolves to a loopback, private, link-local or metadata
    /// address and the config does not allow those.
    #[error("{0}: Tern does not connect to private or local addresses")]
    Forbidden(String),
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("the certificate of {} is not trusted ({})", .0.host, .0.reason)]
    Certificate(CertProblem),
    #[error("the server refused the login: {0}")]
    Login(String),
    #[error("the server did not answer in time ({0})")]
    Timeout(String),
    #[error("the server sent more than Tern accepts ({0})")]
    TooLarge(String),
    #[error("the server answered something Tern cannot use: {0}")]
    Protocol(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
}

/// One folder of an outside mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideFolder {
    pub name: String,
    /// Not selectable (`\Noselect`, a hierarchy node).
    pub noselect: bool,
}

/// A folder name as IMAP sends it to clients that did not enable UTF-8:
/// modified UTF-7 (RFC 3501 §5.1.3, `Entw&APw-rfe` for "Entwürfe"), as
/// text to show. A name that is not valid modified UTF-7 is shown as sent.
pub fn folder_label(raw: &str) -> String {
    crate::mutf7::decode(raw).unwrap_or_else(|| raw.to_owned())
}

/// Names one message on an outside server across connections: the IMAP
/// UID (within its folder), or the POP3 UIDL (RFC 1939 §7), never a POP3
/// message number, which another client's deletion can shift.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageRef(pub String);

impl MessageRef {
    pub fn imap(uid: u32) -> Self {
        MessageRef(uid.to_string())
    }
    pub fn imap_uid(&self) -> Option<u32> {
        self.0.parse().ok().filter(|u| *u > 0)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A flag the webmail sets on an outside message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideFlag {
    Seen,
    Flagged,
    /// Replied to, set when the webmail sends a reply.
    Answered,
}

/// One message in a listing, from its headers only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideSummary {
    pub id: MessageRef,
    pub from: String,
    pub subject: String,
    /// RFC 3339, from the Date: header, empty when it has none.
    pub date: String,
    /// The same as unix seconds (0 when there is none).
    pub unix: i64,
    pub size: u32,
    pub seen: bool,
    pub flagged: bool,
}

/// A page of a folder, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsidePage {
    pub total: u32,
    pub rows: Vec<OutsideSummary>,
}

/// Where discovery found the settings, in the order it looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// The provider's autoconfig file, with the URL it came from.
    Autoconfig(String),
    /// RFC 6186 SRV records.
    Srv,
    /// The domain's MX host.
    Mx(String),
    /// A common host name (`imap.`, `mail.`...) that answered.
    Guess(String),
}

impl std::fmt::Display for FoundBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoundBy::Autoconfig(url) => write!(f, "the provider's autoconfig file ({url})"),
            FoundBy::Srv => write!(f, "the domain's SRV records (RFC 6186)"),
            FoundBy::Mx(h) => write!(f, "the domain's mail exchanger {h}"),
            FoundBy::Guess(h) => write!(f, "the common host name {h}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub settings: OutsideSettings,
    pub found_by: FoundBy,
}

/// The client for outside servers. The server implements it with sockets;
/// every call is bounded in time and in the bytes it accepts.
#[async_trait::async_trait]
pub trait OutsideMail: Send + Sync + 'static {
    /// Finds the servers for an address: autoconfig, SRV, MX, common names.
    async fn discover(&self, address: &str) -> Option<Discovered>;
    /// Connects and logs in, then logs out: the check before saving.
    async fn check(&self, login: &OutsideLogin) -> Result<(), OutsideError>;
    async fn folders(&self, login: &OutsideLogin) -> Result<Vec<OutsideFolder>, OutsideError>;
    /// Page `page` (from 1) of `folder`, `page_size` rows, newest first.
    async fn messages(
        &self,
        login: &OutsideLogin,
        folder: &str,
        page: u32,
        page_size: u32,
    ) -> Result<OutsidePage, OutsideError>;
    /// The raw RFC 5322 bytes of one message. Reading marks it seen on
    /// IMAP, as any mail client does.
    async fn message(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<Vec<u8>, OutsideError>;
    /// Messages matching `query` in their headers or text (IMAP SEARCH on
    /// the server; POP3 has no search), newest first, at most `limit`.
    async fn search(
        &self,
        login: &OutsideLogin,
        folder: &str,
        query: &str,
        limit: u32,
    ) -> Result<OutsidePage, OutsideError>;
    async fn set_flag(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        flag: OutsideFlag,
        on: bool,
    ) -> Result<(), OutsideError>;
    /// IMAP only: into another folder of the same account.
    async fn move_to(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
        target: &str,
    ) -> Result<(), OutsideError>;
    /// To the account's Trash on IMAP when it has one (deleted for good
    /// when the message is in Trash already); deleted on the server on
    /// POP3.
    async fn delete(
        &self,
        login: &OutsideLogin,
        folder: &str,
        id: &MessageRef,
    ) -> Result<(), OutsideError>;
    /// Waits up to `max` for `folder` to change, with IMAP IDLE (RFC
    /// 2177): the new message count, or None when nothing happened in
    /// time. POP3 and servers without IDLE answer `Unsupported`.
    async fn wait_for_change(
        &self,
        login: &OutsideLogin,
        folder: &str,
        max: std::time::Duration,
    ) -> Result<Option<u32>, OutsideError>;
    /// Sends `raw` through the account's submission server as its
    /// address, then files a copy in its Sent folder when it has one (IMAP).
    async fn send(
        &self,
        login: &OutsideLogin,
        to: &[String],
        raw: &[u8],
    ) -> Result<SendReport, OutsideError>;
}

/// What sending through an outside provider did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReport {
    /// The provider's reply to the message.
    pub reply: String,
    /// The Sent folder the copy went to, if any.
    pub filed_in: Option<String>,
}

/// The key that seals outside passwords.
pub struct SecretKey {
    key: LessSafeKey,
    /// Keys the SRS hash (`rules::srs`): derived from the same secret, so
    /// every node that shares the key file rewrites and checks alike.
    srs: ring::hmac::Key,
}

const KEY_LEN: usize = 32;
const SEALED_PREFIX: &str = "v1:";

impl SecretKey {
    /// Reads the key file, or makes one (32 random bytes, mode 0600,
    /// created exclusively and synced) when there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<SecretKey> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut b = [0u8; KEY_LEN];
                SystemRandom::new()
                    .fill(&mut b)
                    .map_err(|_| std::io::Error::other("no system randomness"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(&b)?;
                        f.sync_all()?;
                        b.to_vec()
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Self::from_bytes(&bytes).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} does not hold a {KEY_LEN}-byte key",
                path.display()
            ))
        })
    }

    pub fn from_bytes(b: &[u8]) -> Option<SecretKey> {
        if b.len() != KEY_LEN {
            return None;
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, b).ok()?;
        let srs = ring::digest::digest(&ring::digest::SHA256, &[b"tern srs v1 ", b].concat());
        Some(SecretKey {
            key: LessSafeKey::new(key),
            srs: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, srs.as_ref()),
        })
    }

    pub(crate) fn srs_key(&self) -> &ring::hmac::Key {
        &self.srs
    }

    pub fn seal(&self, context: &str, plain: &str) -> CoreResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CoreError::Unavailable("no system randomness".into()))?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CoreError::Unavailable("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// None when the text was not sealed by this key for this context.
    pub fn open(&self, context: &str, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// What a sealed password is bound to.
fn seal_context(owner: AccountId, address: &str) -> String {
    format!(
        "tern outside account {owner} {}",
        address.to_ascii_lowercase()
    )
}

fn smtp_seal_context(owner: AccountId, address: &str) -> String {
    format!("{} smtp", seal_context(owner, address))
}

/// Where a session-only outgoing password is held.
fn smtp_session_key(session: &str) -> String {
    format!("{session}\u{0}smtp")
}

/// Where the core finds its sealing key, and the passwords held for a
/// browser session only.
#[derive(Default)]
pub(crate) struct OutsideState {
    /// Wakes the header-cache task at once (an account was just added).
    pub(crate) cache_poke: tokio::sync::Notify,
    /// Wakes the INBOX watcher the same way (it starts a new account's
    /// watch at once).
    watch_poke: tokio::sync::Notify,
    key_file: std::sync::OnceLock<PathBuf>,
    key: std::sync::OnceLock<SecretKey>,
    /// (session key, outside account) -> password.
    session: std::sync::Mutex<HashMap<(String, OutsideAccountId), String>>,
}

fn to_account(m: outside_account::Model) -> OutsideAccount {
    let fetch = crate::outside_fetch::FetchState::of(&m);
    let security = |s: &str| Security::parse(s).unwrap_or(Security::Tls);
    let outgoing = (!m.out_host.is_empty()).then(|| Endpoint {
        host: m.out_host.clone(),
        port: u16::try_from(m.out_port).unwrap_or(465),
        security: security(&m.out_security),
    });
    OutsideAccount {
        id: OutsideAccountId(m.id),
        owner: m.account_id,
        settings: OutsideSettings {
            address: m.address,
            username: m.username,
            protocol: Protocol::parse(&m.protocol).unwrap_or(Protocol::Imap),
            incoming: Endpoint {
                host: m.in_host,
                port: u16::try_from(m.in_port).unwrap_or(993),
                security: security(&m.in_security),
            },
            outgoing,
        },
        remembered: m.secret.is_some(),
        pinned_cert: m.pinned_cert,
        last_error: m.last_error,
        created_at: m.created_at,
        fetch,
    }
}

impl Core {
    /// Where the sealing key lives (`data_dir/outside.key`); set once at
    /// start. The key is made on first use.
    pub fn set_outside_key_file(&self, path: PathBuf) {
        let _ = self.inner.outside.key_file.set(path);
    }

    /// Whether a secrets key file is configured (`set_outside_key_file`).
    pub(crate) fn has_secrets_key(&self) -> bool {
        self.inner.outside.key_file.get().is_some() || self.inner.outside.key.get().is_some()
    }

    pub(crate) fn outside_key(&self) -> CoreResult<&SecretKey> {
        let st = &self.inner.outside;
        if let Some(k) = st.key.get() {
            return Ok(k);
        }
        let path = st
            .key_file
            .get()
            .ok_or_else(|| CoreError::invalid("no key file is configured to store passwords"))?;
        let k = SecretKey::load_or_create(path)
            .map_err(|e| CoreError::Unavailable(format!("outside key {}: {e}", path.display())))?;
        let _ = st.key.set(k);
        st.key
            .get()
            .ok_or_else(|| CoreError::Unavailable("outside key".into()))
    }

    /// Saves an outside account for `owner`.
    pub async fn add_outside_account(
        &self,
        owner: AccountId,
        new: &NewOutside<'_>,
    ) -> CoreResult<OutsideAccountId> {
        let NewOutside {
            settings,
            password,
            remember,
            session,
            pinned_cert,
            smtp,
        } = *new;
        settings.validate()?;
        if let Some((u, p)) = smtp
            && (u.is_empty()
                || u.len() > 320
                || u.chars().any(char::is_control)
                || p.is_empty()
                || p.len() > 1024)
        {
            return Err(CoreError::invalid(
                "the outgoing user name and password must both be given (at most 320 and 1024 characters)",
            ));
        }
        if password.is_empty() || password.len() > 1024 {
            return Err(CoreError::invalid(
                "the password must be 1 to 1024 characters",
            ));
        }
        let existing = self.outside_accounts(owner).await?;
        if existing.len() >= MAX_OUTSIDE_ACCOUNTS {
            return Err(CoreError::Limit(format!(
                "at most {MAX_OUTSIDE_ACCOUNTS} outside accounts"
            )));
        }
        if existing
            .iter()
            .any(|a| a.settings.address.eq_ignore_ascii_case(&settings.address))
        {
            return Err(CoreError::Conflict(format!(
                "outside account {}",
                settings.address
            )));
        }
        let secret = if remember {
            Some(
                self.outside_key()?
                    .seal(&seal_context(owner, &settings.address), password)?,
            )
        } else {
            None
        };
        // The outgoing password is sealed under its own context, so the
        // two cannot be swapped in the database.
        let out_secret = match (smtp, remember) {
            (Some((_, p)), true) => Some(
                self.outside_key()?
                    .seal(&smtp_seal_context(owner, &settings.address), p)?,
            ),
            _ => None,
        };
        let (out_host, out_port, out_sec) = match &settings.outgoing {
            Some(e) => (e.host.clone(), i32::from(e.port), e.security.as_str()),
            None => (String::new(), 0, "tls"),
        };
        let row = outside_account::ActiveModel {
            account_id: Set(owner),
            address: Set(settings.address.clone()),
            username: Set(settings.username.clone()),
            protocol: Set(settings.protocol.as_str().to_owned()),
            in_host: Set(settings.incoming.host.clone()),
            in_port: Set(i32::from(settings.incoming.port)),
            in_security: Set(settings.incoming.security.as_str().to_owned()),
            out_host: Set(out_host),
            out_port: Set(out_port),
            out_security: Set(out_sec.to_owned()),
            secret: Set(secret),
            pinned_cert: Set(pinned_cert.map(str::to_owned)),
            last_error: Set(None),
            created_at: Set(self.now()),
            out_username: Set(smtp.map(|(u, _)| u.to_owned()).unwrap_or_default()),
            out_secret: Set(out_secret),
            ..Default::default()
        }
        .insert_committed(self.wdb())
        .await?;
        let id = OutsideAccountId(row.id);
        if !remember {
            self.hold_outside_password(session, id, password);
            if let Some((_, p)) = smtp {
                self.hold_outside_password(&smtp_session_key(session), id, p);
            }
        }
        Ok(id)
    }

    pub async fn outside_accounts(&self, owner: AccountId) -> CoreResult<Vec<OutsideAccount>> {
        Ok(outside_account::Entity::find()
            .filter(outside_account::Column::AccountId.eq(owner))
            .order_by_asc(outside_account::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(to_account)
            .collect())
    }

    /// One of the owner's outside accounts; another account's id reads as
    /// not found.
    pub async fn outside_account(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
    ) -> CoreResult<OutsideAccount> {
        self.outside_row(owner, id).await.map(to_account)
    }

    async fn outside_row(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
    ) -> CoreResult<outside_account::Model> {
        outside_account::Entity::find_by_id(id.0)
            .filter(outside_account::Column::AccountId.eq(owner))
            .one(self.db())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("outside account {id}")))
    }

    /// What connecting needs: the settings and the password, from the
    /// database (sealed) or from this session. `Ok(None)`: the password
    /// was kept for an earlier session and must be asked for again.
    pub async fn outside_login(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
        session: &str,
    ) -> CoreResult<Option<OutsideLogin>> {
        let row = self.outside_row(owner, id).await?;
        let password = match &row.secret {
            Some(sealed) => Some(
                self.outside_key()?
                    .open(&seal_context(owner, &row.address), sealed)
                    .ok_or_else(|| {
                        CoreError::invalid(
                            "the stored password cannot be opened with this server's key; \
                             enter it again",
                        )
                    })?,
            ),
            None => self.held_outside_password(session, id),
        };
        let smtp_password = match &row.out_secret {
            Some(sealed) => self
                .outside_key()?
                .open(&smtp_seal_context(owner, &row.address), sealed),
            None => self.held_outside_password(&smtp_session_key(session), id),
        };
        let smtp = (!row.out_username.is_empty())
            .then(|| smtp_password.map(|p| (row.out_username.clone(), p)))
            .flatten();
        let account = to_account(row);
        Ok(password.map(|password| OutsideLogin {
            settings: account.settings,
            password,
            pinned_cert: account.pinned_cert,
            smtp,
        }))
    }

    /// Keeps a password for this browser session only.
    pub fn hold_outside_password(&self, session: &str, id: OutsideAccountId, password: &str) {
        if let Ok(mut m) = self.inner.outside.session.lock() {
            m.insert((session.to_owned(), id), password.to_owned());
        }
    }

    fn held_outside_password(&self, session: &str, id: OutsideAccountId) -> Option<String> {
        self.inner
            .outside
            .session
            .lock()
            .ok()?
            .get(&(session.to_owned(), id))
            .cloned()
    }

    /// Asks the background task that fills the unified inbox's header
    /// cache to run now rather than at its next interval.
    pub fn poke_outside_cache(&self) {
        self.inner.outside.cache_poke.notify_one();
        self.inner.outside.watch_poke.notify_one();
    }

    /// Resolves when [`Core::poke_outside_cache`] was called.
    pub async fn outside_cache_poked(&self) {
        self.inner.outside.cache_poke.notified().await
    }

    /// The same, for the INBOX watcher (each task has its own wake-up, so
    /// one poke reaches both).
    pub async fn outside_watch_poked(&self) {
        self.inner.outside.watch_poke.notified().await
    }

    /// Forgets every password held for a session (at sign-out).
    pub fn forget_outside_passwords(&self, session: &str) {
        let smtp = smtp_session_key(session);
        if let Ok(mut m) = self.inner.outside.session.lock() {
            m.retain(|(s, _), _| s != session && *s != smtp);
        }
    }

    /// Removes an outside account and its stored password.
    pub async fn remove_outside_account(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
    ) -> CoreResult<()> {
        let res = outside_account::Entity::delete_many()
            .filter(outside_account::Column::Id.eq(id.0))
            .filter(outside_account::Column::AccountId.eq(owner))
            .exec(self.wdb())
            .await?;
        if res.rows_affected == 0 {
            return Err(CoreError::NotFound(format!("outside account {id}")));
        }
        crate::entities::outside_fetched::Entity::delete_many()
            .filter(crate::entities::outside_fetched::Column::OutsideId.eq(id.0))
            .exec(self.wdb())
            .await?;
        crate::entities::outside_header::Entity::delete_many()
            .filter(crate::entities::outside_header::Column::OutsideId.eq(id.0))
            .exec(self.wdb())
            .await?;
        if let Ok(mut m) = self.inner.outside.session.lock() {
            m.retain(|(_, a), _| *a != id);
        }
        Ok(())
    }

    /// Records how the last contact with the server went (None: fine).
    pub async fn set_outside_status(
        &self,
        owner: AccountId,
        id: OutsideAccountId,
        error: Option<&str>,
    ) -> CoreResult<()> {
        let row = self.outside_row(owner, id).await?;
        if row.last_error.as_deref() == error {
            return Ok(());
        }
        let mut am: outside_account::ActiveModel = row.into();
        am.last_error = Set(error.map(|e| e.chars().take(500).collect()));
        am.update(self.wdb()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_only_in_their_context() {
        let k = SecretKey::from_bytes(&[7u8; 32]).unwrap();
        let s = k.seal("ctx a", "hunter2").unwrap();
        assert!(!s.contains("hunter2"));
        assert_eq!(k.open("ctx a", &s).as_deref(), Some("hunter2"));
        assert_eq!(k.open("ctx b", &s), None);
        let other = SecretKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(other.open("ctx a", &s), None);
        // Two seals of one password differ (fresh nonce).
        assert_ne!(k.seal("ctx a", "hunter2").unwrap(), s);
        assert_eq!(k.open("ctx a", "v1:AAAA"), None);
        assert_eq!(k.open("ctx a", "garbage"), None);
    }

    #[test]
    fn key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outside.key");
        let k1 = SecretKey::load_or_create(&p).unwrap();
        let sealed = k1.seal("c", "pw").unwrap();
        let k2 = SecretKey::load_or_create(&p).unwrap();
        assert_eq!(k2.open("c", &sealed).as_deref(), Some("pw"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, b"short").unwrap();
        assert!(SecretKey::load_or_create(&p).is_err());
    }

    #[test]
    fn folder_names_in_modified_utf7_read_as_text() {
        assert_eq!(folder_label("Entw&APw-rfe"), "Entwürfe");
        assert_eq!(folder_label("INBOX"), "INBOX");
        assert_eq!(folder_label("Tom &- Jerry"), "Tom & Jerry");
        assert_eq!(folder_label("&ZeVnLIqe-"), "日本語");
        assert_eq!(
            folder_label("[Gmail]/&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            "[Gmail]/Отправленные"
        );
        // Not valid: shown as sent.
        assert_eq!(folder_label("odd&name"), "odd&name");
        assert_eq!(folder_label("&!!-"), "&!!-");
    }

    #[test]
    fn host_names_are_checked() {
        assert!(valid_host("imap.example.com"));
        assert!(valid_host("127.0.0.1"));
        assert!(valid_host("::1"));
        assert!(!valid_host(""));
        assert!(!valid_host("a b"));
        assert!(!valid_host("-x.example"));
        assert!(!valid_host("x..example"));
        assert!(!valid_host("host/path"));
    }
}
