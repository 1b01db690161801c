//! The one rustls server configuration that every TLS listener shares.
//!
//! Configured PEM files win. Without them, the first start writes a
//! self-signed certificate for the configured hostname (plus `localhost`
//! and 127.0.0.1) into `data_dir/tls/`, and later starts reuse it, so a
//! client that pinned it keeps working across restarts.
//!
//! The certificate is not fixed at start: every listener asks a
//! [`CertStore`] for it on each handshake, so a renewed certificate (from
//! ACME, or certbot replacing the files, checked every minute) is in use
//! at once everywhere, without a restart.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// What the DNS helper and the web listener publish for this host: the
/// MTA-STS policy (`tls.mta_sts_mode`) and the TLSA value of the
/// certificate's key (made when the certificate is readable).
pub fn publish(cfg: &Config) -> mailcore::dns_records::Publish {
    let mode = cfg.tls.mta_sts_mode.trim();
    let mta_sts_policy = (mode != "none").then(|| {
        mailcore::dns_records::mta_sts_policy(&cfg.hostname, mode, cfg.tls.mta_sts_max_age)
    });
    let tlsa = cert_paths(cfg)
        .ok()
        .and_then(|(c, _)| load_certs(&c).ok())
        .and_then(|certs| {
            let leaf = certs.first()?;
            crate::relay::tls_auth::spki(leaf).map(mailcore::dns_records::tlsa_value)
        });
    mailcore::dns_records::Publish {
        mta_sts_policy,
        tlsa,
    }
}

/// `tls.mta_sts_mode` is one RFC 8461 knows.
pub fn check_mta_sts_mode(cfg: &Config) -> Result<(), String> {
    match cfg.tls.mta_sts_mode.trim() {
        "enforce" | "testing" | "none" => Ok(()),
        o => Err(format!(
            "tls.mta_sts_mode `{o}` is not enforce, testing or none"
        )),
    }
}

fn cert_paths(cfg: &Config) -> Result<(PathBuf, PathBuf), String> {
    match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        (None, None) => Ok(self_signed_paths(&cfg.data_dir)),
        _ => Err("tls.cert and tls.key must be set together".into()),
    }
}

/// Where ACME keeps the certificate it obtained (`tls.acme`).
pub fn acme_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("acme-cert.pem"), dir.join("acme-key.pem"))
}

/// Returns the shared server config, making the self-signed pair if needed.
pub fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, String> {
    server_tls(cfg).map(|(sc, _)| sc)
}

/// The shared server config and the store its certificate comes from.
pub fn server_tls(cfg: &Config) -> Result<(Arc<ServerConfig>, Arc<CertStore>), String> {
    check_mta_sts_mode(cfg)?;
    let acme = acme_paths(&cfg.data_dir);
    let (cert_path, key_path) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(_), Some(_)) if cfg.tls.acme => {
            return Err(
                "tls.acme obtains the certificate: leave tls.cert and tls.key unset".into(),
            );
        }
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        // A certificate ACME obtained before; until there is one, the
        // self-signed one answers.
        (None, None) if cfg.tls.acme && acme.0.exists() && acme.1.exists() => acme,
        (None, None) => {
            let (c, k) = self_signed_paths(&cfg.data_dir);
            if !c.exists() || !k.exists() {
                write_self_signed(&cfg.hostname, &c, &k)?;
                tracing::info!(cert = %c.display(), "wrote a self-signed certificate");
            }
            (c, k)
        }
        _ => return Err("tls.cert and tls.key must be set together".into()),
    };
    let store = Arc::new(CertStore::open(cert_path, key_path)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let sc = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    Ok((Arc::new(sc), store))
}

/// The certificate every listener presents, read from PEM files and
/// swapped in place when they change or ACME installs a new one.
#[derive(Debug)]
pub struct CertStore {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
    /// The files and their modification times when last read.
    files: std::sync::Mutex<(PathBuf, PathBuf, Option<std::time::SystemTime>)>,
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn certified(cert: &Path, key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let ck = rustls::sign::CertifiedKey::new(certs, signer);
    ck.keys_match()
        .map_err(|e| format!("{} and its key: {e}", cert.display()))?;
    Ok(Arc::new(ck))
}

impl CertStore {
    pub fn open(cert: PathBuf, key: PathBuf) -> Result<CertStore, String> {
        let ck = certified(&cert, &key)?;
        let t = modified(&cert).max(modified(&key));
        Ok(CertStore {
            current: std::sync::RwLock::new(ck),
            files: std::sync::Mutex::new((cert, key, t)),
        })
    }

    /// The chain presented now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }

    /// Reads the files again when either changed since the last read;
    /// true when a new certificate is now in use. A pair that does not
    /// load (certbot halfway through writing it) is skipped until the
    /// next check, and the old certificate stays.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let mut f = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let t = modified(&f.0).max(modified(&f.1));
        if t == f.2 {
            return Ok(false);
        }
        let ck = certified(&f.0, &f.1)?;
        f.2 = t;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = ck;
        tracing::info!(cert = %f.0.display(), "TLS certificate reloaded");
        Ok(true)
    }

    /// Writes a new pair to `cert` and `key` (the key 0600, each written
    /// aside and renamed, so no reader sees half a file), reads them
    /// from now on, and presents the new certificate at once.
    pub fn install(
        &self,
        cert: &Path,
        key: &Path,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), String> {
        if let Some(dir) = cert.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let (ct, kt) = (
            cert.with_extension("pem.new"),
            key.with_extension("pem.new"),
        );
        write_private(&kt, key_pem.as_bytes())?;
        fs::write(&ct, cert_pem).map_err(|e| format!("{}: {e}", ct.display()))?;
        let ck = certified(&ct, &kt)?;
        fs::rename(&kt, key).map_err(|e| format!("{}: {e}", key.display()))?;
        fs::rename(&ct, cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let mut f = self.files.lock().unwrap_or_else(|p| p.into_inner());
        *f = (
            cert.to_path_buf(),
            key.to_path_buf(),
            modified(cert).max(modified(key)),
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = ck;
        tracing::info!(cert = %cert.display(), "TLS certificate installed");
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Checks the certificate files every `every` and reloads them when they
/// changed (a renewal by certbot or by hand).
pub fn watch(store: Arc<CertStore>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = store.reload_if_changed() {
                tracing::warn!(error = %e, "TLS certificate files changed but do not load; the old certificate stays");
            }
        }
    })
}

fn write_self_signed(hostname: &str, cert: &Path, key: &Path) -> Result<(), String> {
    let mut names = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    if let Some(dir) = cert.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
    fs::write(cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
}

/// Writes a file only its owner may read.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_private(path, bytes)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            hostname: "mail.example.test".into(),
            ..Config::default()
        };
        server_config(&cfg).unwrap();
        let (c, k) = self_signed_paths(dir.path());
        let first = fs::read(&c).unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        server_config(&cfg).unwrap();
        assert_eq!(fs::read(&c).unwrap(), first, "reused, not regenerated");

        // Configured files replace it; a half configuration is refused.
        let cfg2 = Config {
            tls: crate::config::TlsConfig {
                cert: Some(c.clone()),
                key: None,
                ..Default::default()
            },
            ..cfg.clone()
        };
        assert!(server_config(&cfg2).is_err());
        let bad = dir.path().join("bad.pem");
        fs::write(&bad, "not pem").unwrap();
        let cfg3 = Config {
            tls: crate::config::TlsConfig {
                cert: Some(bad),
                key: Some(k),
                ..Default::default()
            },
            ..cfg
        };
        assert!(server_config(&cfg3).unwrap_err().contains("no certificate"));
    }

    /// New files (certbot renewing) are read on the next check; a pair
    /// that does not load leaves the old certificate in use.
    #[test]
    fn replaced_files_are_picked_up_and_broken_ones_are_not() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("c.pem"), d.path().join("k.pem"));
        write_self_signed("one.test", &c, &k).unwrap();
        let store = CertStore::open(c.clone(), k.clone()).unwrap();
        let before = store.chain();
        assert!(!store.reload_if_changed().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_self_signed("two.test", &c, &k).unwrap();
        assert!(store.reload_if_changed().unwrap());
        let after = store.chain();
        assert_ne!(before, after);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&c, "not a certificate").unwrap();
        assert!(store.reload_if_changed().is_err());
        assert_eq!(store.chain(), after);
    }
}
