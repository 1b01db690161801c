//! Password hashing and the failed-login throttle.
//!
//! Hashes are argon2id (RFC 9106) with the OWASP minimum parameters:
//! m=19456 KiB, t=2, p=1, 16-byte salt, stored as PHC strings. A hash made
//! with other parameters is replaced at the next successful login.
//!
//! Hashing is deliberately expensive, so it runs on the blocking pool behind
//! a semaphore: a flood of logins queues instead of exhausting memory
//! (19 MiB each) or starving the async workers.
//!
//! A password that verified recently against a stored hash is remembered
//! for `verified_cache_secs` as a salted SHA-256 next to that hash (as
//! PingDirectory's encoded-password cache does): mail clients log in again
//! and again (a phone reconnecting, a client's several IMAP connections, an
//! app submitting each message on a new connection), and each argon2 run
//! is ~20 ms of a core. Only successes are remembered, keyed by the stored
//! hash itself, so a changed password is never matched by the old one; a
//! wrong password always pays the full argon2 (and the throttle counts it).
//! The trade: a process memory dump would show recent passwords as fast
//! hashes instead of argon2 ones. 0 turns it off.
//!
//! The throttle is shared by SMTP AUTH, IMAP, POP3 and the web, keyed by
//! account and client IP, plus a wider per-IP budget against spraying many
//! accounts from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::password_hash::Output;
use argon2::password_hash::{SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::error::CoreError;

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once.
    pub max_concurrent_hashes: usize,
    /// How long a verified password is remembered (see the module doc);
    /// 0: never.
    pub verified_cache_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            verified_cache_secs: 600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong address, wrong password, or disabled account: deliberately one
    /// answer so a client cannot probe which accounts exist.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error(transparent)]
    Core(#[from] CoreError),
}

#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A real hash of a random password. Unknown users verify against it so
    /// their failure takes as long as a wrong password does.
    dummy_hash: Arc<String>,
    /// argon2's working memory (19 MiB at the default cost), kept between
    /// logins: at most one buffer per permit. Allocated and freed per
    /// login it was most of the server's resident memory under a burst of
    /// logins (the allocator kept the freed blocks, fragmented between the
    /// sessions' own allocations: 10,000 IMAP logins held 2.5 GB), and
    /// each login paid for faulting it in.
    memory: Arc<std::sync::Mutex<Vec<Vec<Block>>>>,
    verified: Arc<VerifiedCache>,
}

/// Recently verified passwords: stored hash -> (salt, SHA-256 of salt and
/// password, when). Bounded; the oldest goes first.
struct VerifiedCache {
    ttl: std::time::Duration,
    entries: Mutex<HashMap<String, Verified>>,
}

struct Verified {
    salt: [u8; 16],
    digest: [u8; 32],
    at: std::time::Instant,
}

/// At most this many accounts' passwords are remembered (~150 bytes each).
const MAX_VERIFIED: usize = 50_000;

impl VerifiedCache {
    fn digest(salt: &[u8; 16], password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// True if `password` verified against `hash` within the TTL.
    fn hit(&self, hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.get(hash).is_some_and(|v| {
            v.at.elapsed() < self.ttl
                && crate::auth::constant_time_eq(&v.digest, &Self::digest(&v.salt, password))
        })
    }

    fn remember(&self, hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut salt = [0u8; 16];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut salt);
        let v = Verified {
            digest: Self::digest(&salt, password),
            salt,
            at: std::time::Instant::now(),
        };
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() >= MAX_VERIFIED && !e.contains_key(hash) {
            let ttl = self.ttl;
            e.retain(|_, v| v.at.elapsed() < ttl);
            if e.len() >= MAX_VERIFIED
                && let Some(oldest) = e.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone())
            {
                e.remove(&oldest);
            }
        }
        e.insert(hash.to_owned(), v);
    }
}

impl PasswordHasher {
    pub fn new(cfg: AuthConfig) -> Self {
        let params =
            Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None).unwrap_or_default();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon2::PasswordHasher::hash_password(&argon, b"tern-dummy-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self {
            argon,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_hashes.max(1))),
            dummy_hash: Arc::new(dummy),
            memory: Default::default(),
            verified: Arc::new(VerifiedCache {
                ttl: std::time::Duration::from_secs(cfg.verified_cache_secs),
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, CoreError> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let argon = self.argon.clone();
        let pw = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2::PasswordHasher::hash_password(&argon, pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| CoreError::invalid(format!("cannot hash password: {e}")))
        })
        .await
        .map_err(|_| closed())?
    }

    /// Checks a password. Returns `(matches, needs_rehash)`. With `None` it
    /// verifies against the dummy hash and reports no match.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> (bool, bool) {
        // A hash with other parameters is never remembered (it is replaced
        // at this login), so a hit needs no rehash.
        if let Some(h) = hash
            && self.verified.hit(h, password)
        {
            return (true, false);
        }
        let (ok, stale) = self.verify_slow(hash, password).await;
        if ok
            && !stale
            && let Some(h) = hash
        {
            self.verified.remember(h, password);
        }
        (ok, stale)
    }

    async fn verify_slow(&self, hash: Option<&str>, password: &str) -> (bool, bool) {
        let Ok(_permit) = self.permits.acquire().await else {
            return (false, false);
        };
        let real = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let argon = self.argon.clone();
        let pw = password.to_owned();
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return (false, false);
            };
            // Held while the permit is: never more buffers than permits.
            let mut blocks = memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default();
            let ok = verify_in(&parsed, pw.as_bytes(), &mut blocks);
            // A buffer grown for an unusually costly stored hash is not kept.
            if blocks.len() <= argon.params().block_count() {
                memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(blocks);
            }
            let current = argon.params();
            let stale = parsed.algorithm.as_str() != "argon2id"
                || parsed.version != Some(Version::V0x13.into())
                || Params::try_from(&parsed)
                    .map(|p| {
                        p.m_cost() != current.m_cost()
                            || p.t_cost() != current.t_cost()
                            || p.p_cost() != current.p_cost()
                    })
                    .unwrap_or(true);
            (ok && real, ok && real && stale)
        })
        .await
        .unwrap_or((false, false))
    }
}

/// What `PasswordVerifier::verify_password` does, in `blocks` instead of
/// freshly allocated memory: the hash is recomputed with the algorithm,
/// version, cost and salt the PHC string names, and compared in constant
/// time.
fn verify_in(hash: &PasswordHash<'_>, password: &[u8], blocks: &mut Vec<Block>) -> bool {
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(hash), hash.salt, hash.hash)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if blocks.len() < params.block_count() {
        blocks.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
        .is_err()
    {
        return false;
    }
    Output::new(&out).is_ok_and(|o| o == expected)
}

fn closed() -> CoreError {
    CoreError::Unavailable("password hasher shut down".into())
}

#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Failures for one account from one IP before logins are refused.
    pub per_account_ip: u32,
    /// Failures from one IP, over all accounts, before it is refused.
    pub per_ip: u32,
    /// Failures older than this are forgotten.
    pub window_secs: i64,
    /// First lockout; it doubles with each further failure up to the window.
    pub base_lockout_secs: i64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_account_ip: 5,
            per_ip: 30,
            window_secs: 900,
            base_lockout_secs: 30,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Strikes {
    pub count: u32,
    pub first_at: i64,
    pub locked_until: i64,
}

impl Strikes {
    /// One more failure at `now` against a budget of `limit` in the window:
    /// past the budget, a lockout that doubles with each further failure.
    pub(crate) fn bump(&mut self, now: i64, limit: u32, cfg: &ThrottleConfig) {
        if now - self.first_at > cfg.window_secs {
            *self = Strikes {
                count: 0,
                first_at: now,
                locked_until: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        if self.count >= limit {
            let extra = (self.count - limit).min(10);
            let lock = (cfg.base_lockout_secs << extra).min(cfg.window_secs);
            self.locked_until = now + lock;
        }
    }
}

/// Counts failed logins in this process. On PostgreSQL the nodes count
/// together as well (`Core::shared_throttle_*`, table `login_strikes`);
/// this copy still answers while the database is down.
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    clock: Arc<dyn Clock>,
    by_account_ip: Mutex<HashMap<(String, IpAddr), Strikes>>,
    by_ip: Mutex<HashMap<IpAddr, Strikes>>,
}

const MAX_TRACKED: usize = 100_000;

impl LoginThrottle {
    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    pub fn new(cfg: ThrottleConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            cfg,
            clock,
            by_account_ip: Mutex::new(HashMap::new()),
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` while this account+IP or this IP is locked out.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), u64> {
        let now = self.clock.now();
        let key = (account.to_ascii_lowercase(), ip);
        let a = self.by_account_ip.lock().map(|m| m.get(&key).copied());
        let i = self.by_ip.lock().map(|m| m.get(&ip).copied());
        let until = [a.ok().flatten(), i.ok().flatten()]
            .into_iter()
            .flatten()
            .map(|s| s.locked_until)
            .max()
            .unwrap_or(0);
        if until > now {
            Err((until - now) as u64)
        } else {
            Ok(())
        }
    }

    pub fn record_failure(&self, account: &str, ip: IpAddr) {
        let now = self.clock.now();
        let cfg = &self.cfg;
        if let Ok(mut m) = self.by_account_ip.lock() {
            prune(&mut m, now, cfg.window_secs);
            m.entry((account.to_ascii_lowercase(), ip))
                .or_default()
                .bump(now, cfg.per_account_ip, cfg);
        }
        if let Ok(mut m) = self.by_ip.lock() {
            prune(&mut m, now, cfg.window_secs);
            m.entry(ip).or_default().bump(now, cfg.per_ip, cfg);
        }
    }

    pub fn record_success(&self, account: &str, ip: IpAddr) {
        if let Ok(mut m) = self.by_account_ip.lock() {
            m.remove(&(account.to_ascii_lowercase(), ip));
        }
    }
}

fn prune<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Strikes>, now: i64, window: i64) {
    if m.len() >= MAX_TRACKED {
        m.retain(|_, s| now - s.first_at <= window || s.locked_until > now);
    }
}

/// Compares secrets (CSRF tokens, bearer tokens) in time that does not
/// depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }

    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn throttle_locks_and_expires() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = LoginThrottle::new(ThrottleConfig::default(), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..4 {
            t.record_failure("a@x.org", ip);
            assert!(t.check("a@x.org", ip).is_ok());
        }
        t.record_failure("a@x.org", ip);
        assert_eq!(t.check("A@X.org", ip), Err(30));
        // Another address from the same IP is not yet locked.
        assert!(t.check("b@x.org", ip).is_ok());
        // Nor the same account from another IP.
        assert!(t.check("a@x.org", "192.0.2.2".parse().unwrap()).is_ok());
        clock.advance(31);
        assert!(t.check("a@x.org", ip).is_ok());
        t.record_failure("a@x.org", ip);
        assert_eq!(t.check("a@x.org", ip), Err(60), "lockout doubles");
    }

    #[test]
    fn per_ip_budget_covers_many_accounts() {
        let clock = Arc::new(ManualClock::new(0));
        let t = LoginThrottle::new(ThrottleConfig::default(), clock);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for n in 0..30 {
            t.record_failure(&format!("u{n}@x.org"), ip);
        }
        assert!(t.check("fresh@x.org", ip).is_err());
    }

    /// A verified password is remembered against its stored hash only: a
    /// wrong password, another hash (the password changed) and a cache
    /// turned off all go to argon2.
    #[tokio::test]
    async fn a_verified_password_is_remembered_against_its_hash_only() {
        let h = PasswordHasher::new(AuthConfig::default());
        let phc = h.hash("correct horse").await.unwrap();
        assert!(!h.verified.hit(&phc, "correct horse"), "not before a login");
        assert_eq!(h.verify(Some(&phc), "wrong horse").await, (false, false));
        assert!(
            !h.verified.hit(&phc, "wrong horse"),
            "failures are not kept"
        );
        assert_eq!(h.verify(Some(&phc), "correct horse").await, (true, false));
        assert!(h.verified.hit(&phc, "correct horse"));
        assert!(!h.verified.hit(&phc, "correct horsf"));
        assert_eq!(h.verify(Some(&phc), "wrong horse").await, (false, false));
        // The same password under a new hash (set again) is a new entry.
        let again = h.hash("correct horse").await.unwrap();
        assert!(!h.verified.hit(&again, "correct horse"));
        assert_eq!(h.verify(Some(&again), "correct horse").await, (true, false));
        // Unknown users (no hash) are never remembered.
        assert_eq!(h.verify(None, "correct horse").await, (false, false));

        let off = PasswordHasher::new(AuthConfig {
            verified_cache_secs: 0,
            ..AuthConfig::default()
        });
        assert_eq!(off.verify(Some(&phc), "correct horse").await, (true, false));
        assert!(!off.verified.hit(&phc, "correct horse"));
    }

    #[test]
    fn the_verified_cache_is_bounded_and_expires() {
        let c = VerifiedCache {
            ttl: std::time::Duration::from_secs(60),
            entries: Mutex::new(HashMap::new()),
        };
        for n in 0..MAX_VERIFIED + 10 {
            c.remember(&format!("hash{n}"), "pw");
        }
        assert_eq!(c.entries.lock().unwrap().len(), MAX_VERIFIED);
        assert!(c.hit(&format!("hash{}", MAX_VERIFIED + 9), "pw"));
        if let Some(v) = c.entries.lock().unwrap().get_mut("hash20") {
            v.at -= std::time::Duration::from_secs(61);
        }
        assert!(!c.hit("hash20", "pw"), "expired");
    }

    #[tokio::test]
    async fn hash_verify_and_rehash() {
        let h = PasswordHasher::new(AuthConfig::default());
        let phc = h.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(h.verify(Some(&phc), "correct horse").await, (true, false));
        assert_eq!(h.verify(Some(&phc), "wrong").await, (false, false));
        assert_eq!(h.verify(None, "tern-dummy-password").await, (false, false));
        let weak = PasswordHasher::new(AuthConfig {
            memory_kib: 8192,
            iterations: 1,
            ..AuthConfig::default()
        });
        let old = weak.hash("pw").await.unwrap();
        assert_eq!(h.verify(Some(&old), "pw").await, (true, true));
        assert_eq!(h.verify(Some(&old), "pW").await, (false, false));
        // The working memory is kept for the next login, one buffer per
        // hash at a time, none larger than the configured cost needs.
        let kept = h.memory.lock().unwrap();
        // (These logins ran one after another: one buffer served them all.)
        assert_eq!(kept.len(), 1);
        assert!(
            kept.iter()
                .all(|b| b.len() == h.argon.params().block_count())
        );
    }

    /// The pooled verification agrees with argon2's own on hashes it did
    /// not make: other costs, argon2i and argon2d, and damaged strings.
    #[test]
    fn verify_in_matches_the_reference() {
        use argon2::PasswordVerifier;
        let salt = SaltString::generate(&mut OsRng);
        let mut blocks = Vec::new();
        for (alg, m, t) in [
            (Algorithm::Argon2id, 1024, 1),
            (Algorithm::Argon2i, 2048, 2),
            (Algorithm::Argon2d, 512, 3),
        ] {
            let a = Argon2::new(alg, Version::V0x13, Params::new(m, t, 1, None).unwrap());
            let phc = argon2::PasswordHasher::hash_password(&a, b"secret", &salt)
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&phc).unwrap();
            for pw in [&b"secret"[..], b"Secret", b""] {
                assert_eq!(
                    verify_in(&parsed, pw, &mut blocks),
                    a.verify_password(pw, &parsed).is_ok(),
                    "{phc} {pw:?}"
                );
            }
        }
        for bad in ["$argon2id$v=19$m=1024,t=1,p=1$", "$scrypt$ln=1$abc$def"] {
            if let Ok(p) = PasswordHash::new(bad) {
                assert!(!verify_in(&p, b"secret", &mut blocks), "{bad}");
            }
        }
    }
}
