//! Certificates from an ACME server (RFC 8555; Let's Encrypt unless
//! `tls.acme_directory` says otherwise), with the HTTP-01 challenge
//! (§8.3) answered by Tern's own web listener on port 80. The account's
//! key is kept in `data_dir/tls/acme-account.json`, the certificate in
//! `acme-cert.pem` / `acme-key.pem`, and a new one goes into the
//! [`CertStore`] every listener reads, so no restart is needed.
//!
//! Names: the host name, and (`tls.acme_domain_names`) `mta-sts.D` and
//! `autoconfig.D` of each local domain, which the DNS helper tells the
//! admin to point here. When an order with all of them fails (a CNAME not
//! published yet), the host name alone is asked for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use mailcore::Core;

use crate::config::Config;
use crate::tls::{CertStore, acme_paths};

/// The HTTP-01 answers being asked for: token -> key authorization.
#[derive(Clone, Default)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>);

impl Challenges {
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn set(&self, token: String, value: String) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, value);
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// When the certificate in use was issued, by this module.
fn issued_path(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("tls").join("acme-issued")
}

fn issued_at(cfg: &Config) -> Option<i64> {
    std::fs::read_to_string(issued_path(cfg))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Starts the renewal task when `tls.acme` is on.
pub fn start(
    cfg: &Config,
    core: Core,
    store: Arc<CertStore>,
    challenges: Challenges,
) -> Option<tokio::task::JoinHandle<()>> {
    if !cfg.tls.acme {
        return None;
    }
    let cfg = cfg.clone();
    Some(tokio::spawn(async move {
        // The web listener (which answers the challenge) binds after this
        // task starts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        loop {
            let due = match issued_at(&cfg) {
                Some(t) => now() - t >= cfg.tls.acme_renew_after_secs as i64,
                None => true,
            };
            if due {
                match renew(&cfg, &core, &store, &challenges).await {
                    Ok(names) => {
                        tracing::info!(names = %names.join(" "), "ACME: certificate obtained")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ACME: no certificate this time; retried later")
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(cfg.tls.acme_check_secs.max(1))).await;
        }
    }))
}

async fn names(cfg: &Config, core: &Core) -> Vec<String> {
    let mut v = vec![cfg.hostname.to_lowercase()];
    if cfg.tls.acme_domain_names
        && let Ok(domains) = core.list_domains().await
    {
        for d in domains {
            for n in [
                format!("mta-sts.{}", d.name),
                format!("autoconfig.{}", d.name),
            ] {
                if !v.contains(&n) {
                    v.push(n);
                }
            }
        }
    }
    v
}

/// Obtains a certificate and puts it in use; the names it covers.
pub async fn renew(
    cfg: &Config,
    core: &Core,
    store: &CertStore,
    challenges: &Challenges,
) -> Result<Vec<String>, String> {
    let account = account(cfg).await?;
    let all = names(cfg, core).await;
    let (chain, key, got) = match order(&account, &all, challenges).await {
        Ok((c, k)) => (c, k, all),
        Err(e) if all.len() > 1 => {
            tracing::warn!(error = %e, names = %all.join(" "), "ACME: not every name validated; asking for the host name alone");
            let one = vec![cfg.hostname.to_lowercase()];
            let (c, k) = order(&account, &one, challenges).await?;
            (c, k, one)
        }
        Err(e) => return Err(e),
    };
    let (cert_path, key_path) = acme_paths(&cfg.data_dir);
    store.install(&cert_path, &key_path, &chain, &key)?;
    std::fs::write(issued_path(cfg), now().to_string())
        .map_err(|e| format!("{}: {e}", issued_path(cfg).display()))?;
    Ok(got)
}

/// The ACME account, made once and kept (its key signs every request).
async fn account(cfg: &Config) -> Result<Account, String> {
    let e = |x: instant_acme::Error| format!("ACME: {x}");
    let builder = || match &cfg.tls.acme_roots_file {
        Some(p) => Account::builder_with_root(p).map_err(e),
        None => Account::builder().map_err(e),
    };
    let path = cfg.data_dir.join("tls").join("acme-account.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text)
    {
        return builder()?.from_credentials(creds).await.map_err(e);
    }
    let contact =
        (!cfg.tls.acme_email.is_empty()).then(|| format!("mailto:{}", cfg.tls.acme_email));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.tls.acme_directory.clone(),
            None,
        )
        .await
        .map_err(e)?;
    let json = serde_json::to_string(&creds).map_err(|x| x.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    }
    crate::tls::write_secret(&path, json.as_bytes())?;
    Ok(account)
}

/// One order for `names`: (chain PEM, key PEM).
async fn order(
    account: &Account,
    names: &[String],
    challenges: &Challenges,
) -> Result<(String, String), String> {
    let e = |x: instant_acme::Error| format!("ACME: {x}");
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(e)?;
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.map_err(e)?;
        match a.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            s => return Err(format!("ACME: authorization {s:?}")),
        }
        let mut ch = a
            .challenge(ChallengeType::Http01)
            .ok_or("ACME: the server offers no HTTP-01 challenge")?;
        challenges.set(ch.token.clone(), ch.key_authorization().as_str().to_owned());
        ch.set_ready().await.map_err(e)?;
    }
    let retry = RetryPolicy::default();
    let status = order.poll_ready(&retry).await.map_err(e);
    let status = match status {
        Ok(s) => s,
        Err(x) => {
            challenges.clear();
            return Err(x);
        }
    };
    if status != OrderStatus::Ready {
        challenges.clear();
        return Err(format!("ACME: the order is {status:?}, not ready"));
    }
    challenges.clear();
    let key = rcgen::KeyPair::generate().map_err(|x| x.to_string())?;
    let params = rcgen::CertificateParams::new(names.to_vec()).map_err(|x| x.to_string())?;
    let csr = params.serialize_request(&key).map_err(|x| x.to_string())?;
    order.finalize_csr(csr.der()).await.map_err(e)?;
    let chain = order.poll_certificate(&retry).await.map_err(e)?;
    Ok((chain, key.serialize_pem()))
}
