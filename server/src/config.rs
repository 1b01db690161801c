//! Configuration: built-in defaults < `tern.toml` < `TERN_*` environment.
//!
//! Nested keys use a double underscore in the environment:
//! `TERN_DATABASE__URL`, `TERN_WEB__LISTEN`. With no file and no variables
//! Tern runs on SQLite in `./data` with the dev ports of DESIGN.md.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The name this server answers to (certificate, SMTP greeting).
    pub hostname: String,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub web: WebConfig,
    pub tls: TlsConfig,
    pub listeners: Listeners,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Config,
    pub managesieve: ManageSieveConfig,
    pub imap: ImapConfig,
    /// The public status page (`/status`) and its monitor.
    pub status: StatusConfig,
    /// Logins over every protocol.
    pub auth: AuthSettings,
    pub relay: RelayConfig,
    /// The outbound queue: workers per lane, retry schedule, concurrency.
    pub queue: mailcore::queue::QueueConfig,
    pub spool: SpoolSettings,
    /// Outside accounts read in the webmail (the mail2web feature).
    pub outside: OutsideConfig,
    pub cluster: ClusterConfig,
}

/// Outside accounts: how Tern talks to other providers' servers on a
/// user's behalf. Everything an outside server sends is bounded in time
/// and size, so a hostile one cannot hang a worker or fill memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct OutsideConfig {
    /// Connect to loopback, private, link-local and metadata addresses.
    /// Off: a user could otherwise make the server probe its own network.
    pub allow_private: bool,
    /// `ip:port` of the DNS server for discovery and connections; empty
    /// for the system's (/etc/resolv.conf).
    pub nameserver: String,
    pub connect_timeout_secs: u64,
    /// For each command's whole answer.
    pub command_timeout_secs: u64,
    /// Largest message read from an outside server.
    pub max_message_bytes: u64,
    /// Largest folder list or page of headers.
    pub max_listing_bytes: u64,
    /// Ports the autoconfig lookup uses for https:// and http:// URLs
    /// (443 and 80; tests point them at a local web server).
    pub autoconfig_https_port: u16,
    pub autoconfig_http_port: u16,
    /// How often accounts with fetching on are checked for new mail.
    pub fetch_interval_secs: u64,
    /// How often the unified inbox's copy of outside headers is refreshed.
    pub cache_interval_secs: u64,
    /// At most this many outside IMAP INBOXes are watched with IDLE (one
    /// connection each), so other clients' changes show in the unified
    /// inbox within seconds; 0 turns watching off.
    pub watch_max: usize,
}

impl Default for OutsideConfig {
    fn default() -> Self {
        OutsideConfig {
            allow_private: false,
            nameserver: String::new(),
            connect_timeout_secs: 10,
            command_timeout_secs: 30,
            max_message_bytes: 50 * 1024 * 1024,
            max_listing_bytes: 8 * 1024 * 1024,
            autoconfig_https_port: 443,
            autoconfig_http_port: 80,
            fetch_interval_secs: 300,
            cache_interval_secs: 120,
            watch_max: 1000,
        }
    }
}

/// The node's inbound spool (DESIGN.md rule 1): every message SMTP
/// accepts is on this disk before its `250`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolSettings {
    /// Defaults to `data_dir/spool`. It may be on another disk than an
    /// SQLite database: that is what lets mail arrive while the
    /// database's disk is full.
    pub dir: Option<PathBuf>,
    /// Pending bytes past which SMTP answers `452 4.3.1`.
    pub max_bytes: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            dir: None,
            max_bytes: 1 << 30,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_account: usize,
    /// RFC 9051 §5.4: at least 30 minutes once logged in (smaller values
    /// are raised to 30 minutes).
    pub autologout_secs: u64,
    /// Before login a silent connection is dropped sooner.
    pub autologout_pre_auth_secs: u64,
    pub max_line: usize,
    /// Largest literal accepted before login; after login the limit is
    /// `smtp.max_message_size`.
    pub max_literal_pre_auth: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_connections_per_account: 20,
            autologout_secs: 1800,
            autologout_pre_auth_secs: 60,
            max_line: 64 * 1024,
            max_literal_pre_auth: 4096,
        }
    }
}

/// Outbound delivery. With no smarthost and no route, mail goes to each
/// destination's MX hosts on `mx_port`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    /// Run the queue runner on this node.
    pub enabled: bool,
    /// `host:port` to send all outbound mail through; empty for direct MX.
    pub smarthost: String,
    /// `starttls` (required), `tls` (implicit, port 465) or `none`.
    pub smarthost_tls: String,
    pub smarthost_username: String,
    pub smarthost_password: String,
    /// Static routes that bypass MX lookup: `a.test=host:port, b.test=...`.
    pub routes: String,
    /// Domains that must never get mail over plain text, comma separated.
    pub require_tls: String,
    pub mx_port: u16,
    pub connect_timeout_secs: u64,
    /// RFC 5321 §4.5.3.2 suggests 5 minutes for most replies...
    pub command_timeout_secs: u64,
    /// ...and 10 for the reply to the end of data.
    pub data_timeout_secs: u64,
    /// `ip:port` of the DNS server for MX, MTA-STS and TLSA lookups;
    /// empty for /etc/resolv.conf. DANE trusts this server's DNSSEC
    /// verdict (the AD bit), so it should be a validating resolver on this
    /// host.
    pub nameserver: String,
    /// Honour destinations' MTA-STS policies (RFC 8461).
    pub mta_sts: bool,
    /// The HTTPS port MTA-STS policies are fetched from (443; tests change it).
    pub mta_sts_port: u16,
    /// Honour destinations' DANE TLSA records (RFC 7672).
    pub dane: bool,
    /// PEM file of extra trust anchors for MTA-STS checks, beside the
    /// Mozilla set (a private CA).
    pub tls_roots_file: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            smarthost: String::new(),
            smarthost_tls: "starttls".into(),
            smarthost_username: String::new(),
            smarthost_password: String::new(),
            routes: String::new(),
            require_tls: String::new(),
            mx_port: 25,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            nameserver: String::new(),
            mta_sts: true,
            mta_sts_port: 443,
            dane: true,
            tls_roots_file: String::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// How long a password that verified is remembered as a salted SHA-256
    /// of itself, so that a client logging in again skips argon2 (see
    /// `mailcore::auth`); 0 turns it off.
    pub verified_cache_secs: u64,
    /// Failed logins for one account from one IP, within the window,
    /// before that pair is locked out (the lockout doubles with each
    /// further failure). On PostgreSQL every node counts together.
    pub max_failures_per_account_ip: u32,
    /// Failed logins from one IP over all accounts before it is locked out.
    pub max_failures_per_ip: u32,
    pub failure_window_secs: i64,
    /// The first lockout.
    pub lockout_secs: i64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let t = mailcore::ThrottleConfig::default();
        AuthSettings {
            verified_cache_secs: mailcore::AuthConfig::default().verified_cache_secs,
            max_failures_per_account_ip: t.per_account_ip,
            max_failures_per_ip: t.per_ip,
            failure_window_secs: t.window_secs,
            lockout_secs: t.base_lockout_secs,
        }
    }
}

/// This node among N on one PostgreSQL (a single SQLite node has a row
/// too, so `tern cluster status` reads the same everywhere).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// The node's name in `tern cluster status` (the machine's host name
    /// by default; set it when several nodes share a machine).
    pub node_name: String,
    /// How often the node writes its heartbeat row.
    pub heartbeat_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: mailcore::default_node_name(),
            heartbeat_secs: 5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Pop3Config {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_account: usize,
    /// RFC 1939 §3 asks for at least 10 minutes.
    pub autologout_secs: u64,
    /// The maildrop lock is a lease in the database, renewed while the
    /// session lasts: a node that dies lets go of its locks after this.
    pub lock_lease_secs: u64,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_connections_per_account: 10,
            autologout_secs: 600,
            lock_lease_secs: 60,
        }
    }
}

/// ManageSieve's limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ManageSieveConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_account: usize,
    /// A session idle this long is closed (BYE).
    pub idle_secs: u64,
}

impl Default for ManageSieveConfig {
    fn default() -> Self {
        ManageSieveConfig {
            max_connections: 200,
            max_connections_per_ip: 10,
            max_connections_per_account: 5,
            idle_secs: 600,
        }
    }
}

/// The status monitor: how often it reads the live signals, and when a
/// signal makes a service "degraded".
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusConfig {
    pub check_secs: u64,
    /// Spooled mail older than this: delivery to mailboxes is late.
    pub inbound_delay_secs: i64,
    /// Queue entries overdue by more than this: outbound is late.
    pub outbound_delay_secs: i64,
    /// A storage probe slower than this (ms) is degraded.
    pub slow_storage_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            check_secs: 5,
            inbound_delay_secs: 120,
            outbound_delay_secs: 600,
            slow_storage_ms: 2000,
        }
    }
}

/// SMTP limits; each refusal names its limit in the reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: u32,
    /// Port 25's pool. Submission (587 and 465) has its own, so a flood of
    /// MX connections never locks out users sending mail.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// The submission pool (587 + 465), with its own per-IP limit.
    pub max_submission_connections: usize,
    pub max_submission_connections_per_ip: usize,
    pub max_connections_per_account: usize,
    /// Waiting for a command mid-transaction (RFC 5321 §4.5.3.2.7: 5 min).
    pub command_timeout_secs: u64,
    /// Waiting for a command with no transaction open (before MAIL, or
    /// after one ended): an idle client only holds a slot.
    pub idle_timeout_secs: u64,
    /// The idle timeout once a pool is 80% full (as Postfix's stress mode).
    pub idle_timeout_busy_secs: u64,
    pub data_timeout_secs: u64,
    pub tls_handshake_timeout_secs: u64,
    /// Check SPF, DKIM and DMARC on mail from other servers (port 25),
    /// stamp it with `Authentication-Results:`, and refuse a spoofed
    /// local `From:` and DMARC `p=reject` failures (`smtp::inbound_auth`).
    pub sender_checks: bool,
    /// The DNS server for those checks, `ip:port`; empty for the system's.
    pub nameserver: String,
    /// ARC sealers (RFC 8617) whose word is taken when DMARC fails, comma
    /// separated domains (a mailing list server, a forwarding service):
    /// mail they sealed with a passing chain is delivered, not refused.
    pub arc_trusted_sealers: String,
    /// FUTURERELEASE (RFC 4865) on submission: the longest a client may
    /// ask mail to be held, in seconds (30 days); 0 does not offer it.
    pub max_future_release_secs: i64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 10,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_submission_connections: 500,
            max_submission_connections_per_ip: 50,
            max_connections_per_account: 10,
            command_timeout_secs: 300,
            idle_timeout_secs: 60,
            idle_timeout_busy_secs: 10,
            data_timeout_secs: 600,
            tls_handshake_timeout_secs: 30,
            sender_checks: true,
            nameserver: String::new(),
            arc_trusted_sealers: String::new(),
            max_future_release_secs: 30 * 86_400,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`; defaults to SQLite in `data_dir`.
    pub url: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WebConfig {
    pub listen: String,
    /// HTTPS for the webmail and the MTA-STS policy, with the `[tls]`
    /// certificate; empty (the default) turns it off. A real host sets
    /// `0.0.0.0:443`.
    pub listen_tls: String,
    /// Where `build_site` (scripts/lib.sh) or cargo-leptos put the compiled
    /// site (`pkg/` with wasm and CSS).
    pub site_root: PathBuf,
    /// How often the compose page saves a draft while the user types
    /// (with JavaScript on).
    pub autosave_secs: u64,
    /// How long a webmail send waits on the server, with "Undo" on the
    /// page, before it goes; 0 sends at once.
    pub undo_send_secs: u64,
    /// Bearer token for `/metrics`; empty turns `/metrics` off.
    pub metrics_token: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain. With neither set, a self-signed certificate is
    /// made in `data_dir/tls` on first start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The MTA-STS policy this host publishes for its domains (RFC 8461):
    /// `testing` (senders report failures but deliver), `enforce` (once the
    /// certificate is one senders trust) or `none`.
    pub mta_sts_mode: String,
    /// The policy's `max_age`, in seconds (a week).
    pub mta_sts_max_age: u64,
    /// How often the certificate files are checked for a renewal (certbot,
    /// by hand), which every listener then uses without a restart.
    pub reload_secs: u64,
    /// Obtain and renew the certificate from an ACME server (RFC 8555),
    /// answering its HTTP-01 challenge on `web.listen` (port 80).
    pub acme: bool,
    /// The ACME directory: Let's Encrypt's unless set.
    pub acme_directory: String,
    /// The account's contact (`mailto:`); none when empty.
    pub acme_email: String,
    /// A PEM root the ACME server's HTTPS is checked against (a test CA
    /// such as Pebble's); the system's web roots when unset.
    pub acme_roots_file: Option<PathBuf>,
    /// Also ask for `mta-sts.D` and `autoconfig.D` of each local domain
    /// (falling back to the host name alone when one does not validate).
    pub acme_domain_names: bool,
    /// Renew a certificate this long after it was issued (Let's Encrypt's
    /// last 90 days; renewing at 60 leaves a month of retries).
    pub acme_renew_after_secs: u64,
    /// How often renewal is considered, and retried after a failure.
    pub acme_check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            mta_sts_mode: "testing".into(),
            mta_sts_max_age: 604_800,
            reload_secs: 60,
            acme: false,
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_email: String::new(),
            acme_roots_file: None,
            acme_domain_names: true,
            acme_renew_after_secs: 60 * 86_400,
            acme_check_secs: 3600,
        }
    }
}

/// Mail listener addresses. Dev defaults add 3000 to the standard ports and
/// bind loopback, so `tern serve` runs as any user. An empty address turns
/// a listener off.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Listeners {
    pub smtp: String,
    pub submission: String,
    pub smtps: String,
    pub imap: String,
    pub imaps: String,
    pub pop3: String,
    pub pop3s: String,
    /// ManageSieve (RFC 5804): 4190 in production.
    pub managesieve: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            web: WebConfig::default(),
            tls: TlsConfig::default(),
            listeners: Listeners::default(),
            smtp: SmtpConfig::default(),
            pop3: Pop3Config::default(),
            managesieve: ManageSieveConfig::default(),
            status: StatusConfig::default(),
            auth: AuthSettings::default(),
            imap: ImapConfig::default(),
            relay: RelayConfig::default(),
            queue: mailcore::queue::QueueConfig::default(),
            spool: SpoolSettings::default(),
            outside: OutsideConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8080".into(),
            listen_tls: String::new(),
            site_root: PathBuf::from("target/site"),
            autosave_secs: 30,
            undo_send_secs: 10,
            metrics_token: String::new(),
        }
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            smtp: "127.0.0.1:3025".into(),
            submission: "127.0.0.1:3587".into(),
            smtps: "127.0.0.1:3465".into(),
            imap: "127.0.0.1:3143".into(),
            imaps: "127.0.0.1:3993".into(),
            pop3: "127.0.0.1:3110".into(),
            pop3s: "127.0.0.1:3995".into(),
            managesieve: "127.0.0.1:7190".into(),
        }
    }
}

impl Config {
    /// Loads the layers. `file` is read if it exists; a file named on the
    /// command line must exist.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) => {
                if !p.exists() {
                    return Err(format!("config file {} does not exist", p.display()));
                }
                fig = fig.merge(Toml::file(p));
            }
            None => fig = fig.merge(Toml::file("tern.toml")),
        }
        // Only keys Tern knows are taken; other TERN_* variables (the test
        // scripts' own) are ignored. The keys come from the settings
        // themselves, so a new setting needs no list edited.
        let keys = Self::keys();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        fig = fig.merge(Env::prefixed("TERN_").split("__").only(&keys));
        fig.extract().map_err(|e| format!("configuration: {e}"))
    }

    /// Every setting's dotted name (`smtp.max_recipients`), read from
    /// the defaults' shape: a table is a section, anything else (an empty
    /// table too: `relay.routes`) a setting.
    pub fn keys() -> Vec<String> {
        use figment::Provider;
        use figment::value::{Dict, Value};
        fn walk(prefix: &str, dict: &Dict, out: &mut Vec<String>) {
            for (k, v) in dict {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    Value::Dict(_, d) if !d.is_empty() => walk(&name, d, out),
                    _ => out.push(name),
                }
            }
        }
        let mut out = Vec::new();
        if let Ok(data) = Figment::from(Serialized::defaults(Config::default())).data()
            && let Some(dict) = data.values().next()
        {
            walk("", dict, &mut out);
        }
        out
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("tern.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail API fixes the closure's error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            let d = Config::load(None).unwrap();
            assert_eq!(d.web.listen, "127.0.0.1:8080");
            assert_eq!(d.database_url(), "sqlite://./data/tern.db?mode=rwc");
            jail.create_file(
                "tern.toml",
                "hostname = \"mail.example.org\"\n[web]\nlisten = \"127.0.0.1:9000\"\n",
            )?;
            let f = Config::load(None).unwrap();
            assert_eq!(f.hostname, "mail.example.org");
            assert_eq!(f.web.listen, "127.0.0.1:9000");
            jail.set_env("TERN_WEB__LISTEN", "127.0.0.1:9100");
            jail.set_env("TERN_DATABASE__URL", "postgres://x@127.0.0.1/tern");
            jail.set_env("TERN_TEST_PG_URL", "ignored");
            let e = Config::load(None).unwrap();
            assert_eq!(e.web.listen, "127.0.0.1:9100", "env beats file");
            assert_eq!(e.hostname, "mail.example.org", "file beats default");
            assert_eq!(e.database_url(), "postgres://x@127.0.0.1/tern");
            Ok(())
        });
    }
}

#[cfg(test)]
mod key_tests {
    use super::Config;

    /// The environment keys are read off the settings: every one that was
    /// once listed by hand is still there, and no section is taken for a
    /// setting.
    #[test]
    fn every_setting_has_its_environment_key() {
        let keys = Config::keys();
        let listed = include_str!("../tests/corpus/config_keys.txt");
        for k in listed.lines().filter(|l| !l.is_empty()) {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        for section in ["smtp", "queue", "queue.schedule", "outside", "relay"] {
            assert!(!keys.iter().any(|x| x == section), "{section} is a section");
        }
        assert!(keys.iter().any(|k| k == "outside.watch_max"));
        assert!(keys.iter().any(|k| k == "auth.verified_cache_secs"));
    }
}
