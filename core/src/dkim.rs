//! DKIM signing (RFC 6376) of the mail local users send, through port 587,
//! 465 or the webmail, before it is queued: Stalwart's mail-auth does the
//! canonicalisation and the signatures.
//!
//! Each local domain has two signing keys, Ed25519 (RFC 8463) and RSA-2048,
//! and every message carries a signature by each: receivers that know
//! Ed25519 check that one, the others the RSA one (RFC 8463 §4 advises
//! signing with both while Ed25519 support spreads). Private keys are
//! sealed with the data dir's secrets key (`outside::SecretKey`, the same
//! that seals outside passwords), bound to their domain and selector.
//!
//! Rotation (`tern domain dkim rotate D`) makes a new pair under new
//! selectors, which sign from then on; the old pair stops signing at once
//! but stays listed, with its DNS record, for [`DKIM_GRACE_SECS`], because
//! mail it signed may still be in queues and mailboxes being checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use mail_auth::common::crypto::{Algorithm, Ed25519Key, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{DkimSigner, Done};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::Core;
use crate::entities::{dkim_key, domain};
use crate::error::{CoreError, CoreResult};

/// How long a rotated-out key stays published and listed.
pub const DKIM_GRACE_SECS: i64 = 7 * 86_400;

/// How long a process keeps a domain's signers before reading them again
/// (a rotation on another node is signed with here within this).
const SIGNER_TTL: Duration = Duration::from_secs(60);

/// What a receiver checks (RFC 6376 §5.4.1 lists From as required and these
/// as recommended), and the MIME headers, so no one can swap the body's
/// type or the thread it belongs to without breaking the signature.
const SIGNED_HEADERS: [&str; 15] = [
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Ed25519,
    Rsa,
}

impl DkimAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::Ed25519 => "ed25519",
            DkimAlgorithm::Rsa => "rsa",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ed25519" => Some(DkimAlgorithm::Ed25519),
            "rsa" => Some(DkimAlgorithm::Rsa),
            _ => None,
        }
    }

    /// The selector's last letter, so a selector names its key type.
    fn letter(self) -> char {
        match self {
            DkimAlgorithm::Ed25519 => 'e',
            DkimAlgorithm::Rsa => 'r',
        }
    }
}

/// One DKIM key as an operator sees it (never the private half).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// Base64, as the DNS record's `p=` carries it.
    pub public_key: String,
    pub created_at: i64,
    /// When it stopped signing (a rotation); None while it signs.
    pub retired_at: Option<i64>,
}

impl DkimKey {
    /// The TXT record's name (RFC 6376 §3.6.2.1).
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's value (RFC 6376 §3.6.1).
    pub fn record_value(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.as_str(),
            self.public_key
        )
    }

    pub fn signing(&self) -> bool {
        self.retired_at.is_none()
    }

    /// Until when a rotated key must stay in DNS.
    pub fn publish_until(&self) -> Option<i64> {
        self.retired_at.map(|t| t + DKIM_GRACE_SECS)
    }
}

impl TryFrom<dkim_key::Model> for DkimKey {
    type Error = CoreError;

    fn try_from(m: dkim_key::Model) -> CoreResult<Self> {
        Ok(DkimKey {
            algorithm: DkimAlgorithm::parse(&m.algorithm).ok_or_else(|| {
                CoreError::invalid(format!("unknown DKIM algorithm {}", m.algorithm))
            })?,
            domain: m.domain,
            selector: m.selector,
            public_key: m.public_key,
            created_at: m.created_at,
            retired_at: m.retired_at,
        })
    }
}

/// RSA-SHA256 signing by ring, which Tern has for TLS already: the RSA
/// private operation there is several times faster than the pure-Rust
/// `rsa` crate that mail-auth's own `RsaKey` uses (bench/auth-cost.sh:
/// signed submission went from 0.51x to 0.74x of the unsigned rate).
struct RingRsa(ring::signature::RsaKeyPair);

impl SigningKey for RingRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        // mail-auth hands over the canonicalised headers; ring hashes them.
        let mut data = Vec::new();
        input.write(&mut data);
        let mut sig = vec![0u8; self.0.public().modulus_len()];
        self.0
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                &data,
                &mut sig,
            )
            .map_err(|_| {
                mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                    "RSA signing failed".into(),
                ))
            })?;
        Ok(sig)
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}

enum Signer {
    Ed25519(DkimSigner<Ed25519Key, Done>),
    Rsa(DkimSigner<RingRsa, Done>),
}

impl Signer {
    fn header(&self, message: &[u8]) -> CoreResult<String> {
        let sig = match self {
            Signer::Ed25519(s) => s.sign(message),
            Signer::Rsa(s) => s.sign(message),
        }
        .map_err(|e| CoreError::Unavailable(format!("DKIM signing failed: {e}")))?;
        Ok(sig.to_header())
    }
}

/// A domain's signers and when they were read.
type Signers = (Arc<Vec<Signer>>, Instant);

/// Each domain's signers, read from the database at most once a minute.
#[derive(Default)]
pub(crate) struct DkimCache {
    map: Mutex<HashMap<String, Signers>>,
}

impl DkimCache {
    fn get(&self, domain: &str) -> Option<Arc<Vec<Signer>>> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(domain)
            .filter(|(_, at)| at.elapsed() < SIGNER_TTL)
            .map(|(s, _)| s.clone())
    }

    fn put(&self, domain: &str, s: Arc<Vec<Signer>>) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(domain.to_owned(), (s, Instant::now()));
    }

    fn forget(&self, domain: &str) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(domain);
    }
}

/// What a sealed private key is bound to.
fn seal_context(domain: &str, selector: &str) -> String {
    format!("tern dkim {domain} {selector}")
}

/// An RSA public key as DNS publishes it: SubjectPublicKeyInfo, which
/// every verifier reads (some read only that), around the PKCS#1 key that
/// key generation gives.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = body.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
    }
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
    let alg = der(
        0x30,
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ],
    );
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = alg;
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

fn generate(algorithm: DkimAlgorithm) -> CoreResult<(Vec<u8>, Vec<u8>)> {
    let pair = match algorithm {
        DkimAlgorithm::Ed25519 => DkimKeyPair::generate_ed25519(),
        DkimAlgorithm::Rsa => DkimKeyPair::generate_rsa(2048),
    }
    .map_err(|e| CoreError::Unavailable(format!("DKIM key generation failed: {e}")))?;
    let (private, public) = pair.into_inner();
    let public = match algorithm {
        DkimAlgorithm::Ed25519 => public,
        DkimAlgorithm::Rsa => spki_from_pkcs1(&public),
    };
    Ok((private, public))
}

fn signer(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    private: &[u8],
) -> CoreResult<Signer> {
    let bad = |e: mail_auth::Error| CoreError::invalid(format!("DKIM key {selector}: {e}"));
    Ok(match algorithm {
        DkimAlgorithm::Ed25519 => Signer::Ed25519(
            DkimSigner::from_key(Ed25519Key::from_pkcs8_der(private).map_err(bad)?)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS),
        ),
        DkimAlgorithm::Rsa => Signer::Rsa(
            DkimSigner::from_key(RingRsa(
                ring::signature::RsaKeyPair::from_der(private)
                    .map_err(|e| CoreError::invalid(format!("DKIM key {selector}: {e}")))?,
            ))
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS),
        ),
    })
}

impl Core {
    /// The domain's keys, signing ones first, then rotated ones still in
    /// their grace period.
    pub async fn dkim_keys(&self, domain: &str) -> CoreResult<Vec<DkimKey>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = self.now();
        let mut keys: Vec<DkimKey> = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.eq(domain))
            .order_by_desc(dkim_key::Column::CreatedAt)
            .order_by_asc(dkim_key::Column::Algorithm)
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(|m| DkimKey::try_from(m).ok())
            .filter(|k| k.publish_until().is_none_or(|t| t > now))
            .collect();
        keys.sort_by_key(|k| k.retired_at.is_some());
        Ok(keys)
    }

    /// Makes a new Ed25519 and RSA-2048 pair for a local domain, signing
    /// from now on; the keys that signed until now are retired (rotation).
    pub async fn dkim_rotate(&self, domain: &str) -> CoreResult<Vec<DkimKey>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain::Entity::find()
            .filter(domain::Column::Name.eq(domain.clone()))
            .one(self.db())
            .await?
            .is_none()
        {
            return Err(CoreError::NotFound(format!("domain {domain}")));
        }
        let secrets = self.outside_key()?;
        let now = self.now();
        let day = mail_parser::DateTime::from_timestamp(now);
        let stem = format!("t{:04}{:02}{:02}", day.year, day.month, day.day);
        let taken: Vec<String> = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.eq(domain.clone()))
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| m.selector)
            .collect();
        // A second rotation on one day gets t20261206b-e, -r, and so on.
        let suffix = (0u32..)
            .map(|n| {
                if n == 0 {
                    String::new()
                } else {
                    format!("{}", char::from(b'a' + (n % 26) as u8))
                }
            })
            .find(|s| {
                [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa]
                    .iter()
                    .all(|a| !taken.contains(&format!("{stem}{s}{}", a.letter())))
            })
            .unwrap_or_default();
        let mut rows = Vec::new();
        for algorithm in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa] {
            // RSA generation takes a moment of CPU: not on the runtime.
            let (private, public) = tokio::task::spawn_blocking(move || generate(algorithm))
                .await
                .map_err(|e| CoreError::Unavailable(format!("DKIM key generation: {e}")))??;
            let selector = format!("{stem}{suffix}{}", algorithm.letter());
            let b64 = base64::engine::general_purpose::STANDARD;
            rows.push(dkim_key::ActiveModel {
                domain: Set(domain.clone()),
                private_key: Set(
                    secrets.seal(&seal_context(&domain, &selector), &b64.encode(&private))?
                ),
                public_key: Set(b64.encode(&public)),
                selector: Set(selector),
                algorithm: Set(algorithm.as_str().to_owned()),
                created_at: Set(now),
                retired_at: Set(None),
                ..Default::default()
            });
        }
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let txn = sea_orm::TransactionTrait::begin(self.wdb()).await?;
        dkim_key::Entity::update_many()
            .col_expr(dkim_key::Column::RetiredAt, Expr::value(Some(now)))
            .filter(dkim_key::Column::Domain.eq(domain.clone()))
            .filter(dkim_key::Column::RetiredAt.is_null())
            .exec(&txn)
            .await?;
        dkim_key::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        self.inner.dkim.forget(&domain);
        self.dkim_keys(&domain).await
    }

    /// Gives every local domain without a signing key its first pair (a
    /// new domain, or one made before Tern signed). Returns how many
    /// domains got keys. Needs the secrets key file.
    pub async fn dkim_ensure_keys(&self) -> CoreResult<usize> {
        let domains: Vec<String> = domain::Entity::find()
            .all(self.db())
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect();
        let mut made = 0;
        for d in domains {
            if !self.dkim_keys(&d).await?.iter().any(DkimKey::signing) {
                self.dkim_rotate(&d).await?;
                made += 1;
            }
        }
        Ok(made)
    }

    async fn dkim_signers(&self, domain: &str) -> CoreResult<Arc<Vec<Signer>>> {
        if let Some(s) = self.inner.dkim.get(domain) {
            return Ok(s);
        }
        let rows = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.eq(domain))
            .filter(dkim_key::Column::RetiredAt.is_null())
            .order_by_asc(dkim_key::Column::Algorithm)
            .all(self.db())
            .await?;
        let mut signers = Vec::new();
        if !rows.is_empty() {
            let secrets = self.outside_key()?;
            let b64 = base64::engine::general_purpose::STANDARD;
            for r in rows {
                let Some(algorithm) = DkimAlgorithm::parse(&r.algorithm) else {
                    continue;
                };
                let private = secrets
                    .open(&seal_context(&r.domain, &r.selector), &r.private_key)
                    .and_then(|p| b64.decode(p).ok())
                    .ok_or_else(|| {
                        CoreError::Unavailable(format!(
                            "DKIM key {} of {} does not open with this node's secrets key \
                             (every node needs the same data_dir/outside.key)",
                            r.selector, r.domain
                        ))
                    })?;
                signers.push(signer(&r.domain, &r.selector, algorithm, &private)?);
            }
        }
        let signers = Arc::new(signers);
        self.inner.dkim.put(domain, signers.clone());
        Ok(signers)
    }

    /// The `DKIM-Signature:` header fields for a message from `domain`,
    /// one per signing key, to put on top of it; empty when the domain has
    /// no keys.
    pub(crate) async fn dkim_sign(&self, domain: &str, message: &[u8]) -> CoreResult<Vec<u8>> {
        let domain = domain.to_ascii_lowercase();
        let signers = self.dkim_signers(&domain).await?;
        let mut out = Vec::new();
        for s in signers.iter() {
            out.extend_from_slice(s.header(message)?.as_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rsa_key_is_published_as_subject_public_key_info() {
        let (_, public) = generate(DkimAlgorithm::Rsa).unwrap();
        // What opendkim-genkey and every provider publish for RSA-2048.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&public);
        assert!(
            b64.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
            "{b64}"
        );
        assert_eq!(public.len(), 294);
        let (_, ed) = generate(DkimAlgorithm::Ed25519).unwrap();
        assert_eq!(ed.len(), 32, "RFC 8463: the raw 32-byte key");
    }
}
