//! The one rustls server configuration that every TLS listener shares.
//!
//! Configured PEM files win. Without them, the first start writes a
//! self-signed certificate for the configured hostname (plus `localhost`
//! and 127.0.0.1) into `data_dir/tls/`, and later starts reuse it, so a
//! client that pinned it keeps working across restarts.

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

/// Returns the shared server config, making the self-signed pair if needed.
pub fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, String> {
    check_mta_sts_mode(cfg)?;
    let (cert_path, key_path) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
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
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let sc = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok(Arc::new(sc))
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
    write_private(key, ck.key_pair.serialize_pem().as_bytes())?;
    fs::write(cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
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
}
