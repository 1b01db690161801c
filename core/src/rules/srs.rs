//! The Sender Rewriting Scheme (SRS0, as libsrs2 and Postfix's postsrsd
//! write it): a forwarded message leaves with a reverse path in our
//! domain, so the receiver's SPF check of us passes, and a bounce to that
//! path finds its way back to the original sender.
//!
//! ```text
//! SRS0=HHHH=TT=orig-domain=orig-local@forwarding-domain
//! ```
//!
//! `HHHH` is the first four base64 characters of an HMAC-SHA256 (keyed
//! from the data directory's secrets key) over the time stamp and the
//! original address, so nobody can make us relay to an address of their
//! choice; `TT` is the day, base32, modulo 1024, and an address older
//! than [`MAX_AGE_DAYS`] is refused.

use ring::hmac;

/// How long a rewritten address routes back (libsrs2's default).
pub const MAX_AGE_DAYS: i64 = 21;
const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn day_stamp(now: i64) -> String {
    let d = (now.div_euclid(86_400)).rem_euclid(1024) as usize;
    let mut s = String::with_capacity(2);
    s.push(B32[d >> 5] as char);
    s.push(B32[d & 31] as char);
    s
}

fn stamp_age(stamp: &str, now: i64) -> Option<i64> {
    let b = stamp.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let v = |c: u8| {
        B32.iter()
            .position(|x| *x == c.to_ascii_uppercase())
            .map(|p| p as i64)
    };
    let then = (v(b[0])? << 5) | v(b[1])?;
    let today = now.div_euclid(86_400).rem_euclid(1024);
    Some((today - then).rem_euclid(1024))
}

fn hash(key: &hmac::Key, stamp: &str, domain: &str, local: &str) -> String {
    use base64::Engine;
    let data = format!("{}{}{}", stamp, domain.to_lowercase(), local.to_lowercase());
    let tag = hmac::sign(key, data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())[..4].to_owned()
}

/// The reverse path a message from `sender` is forwarded with, in
/// `forwarder_domain`. A null sender stays null (a bounce is forwarded as
/// a bounce); an address already rewritten by us is rewritten again from
/// its original, not nested.
pub fn forward(key: &hmac::Key, sender: &str, forwarder_domain: &str, now: i64) -> String {
    if sender.is_empty() {
        return String::new();
    }
    let (local, domain) = match sender.rsplit_once('@') {
        Some(p) => p,
        None => return sender.to_owned(),
    };
    let (local, domain) = match reverse_parts(key, local, now) {
        Some((l, d)) => (l, d),
        None => (local.to_owned(), domain.to_owned()),
    };
    let stamp = day_stamp(now);
    let h = hash(key, &stamp, &domain, &local);
    format!("SRS0={h}={stamp}={domain}={local}@{forwarder_domain}")
}

/// The original sender of an address [`forward`] made, when `local_part`
/// is one whose hash checks and whose stamp is not too old.
pub fn reverse(key: &hmac::Key, local_part: &str, now: i64) -> Option<String> {
    reverse_parts(key, local_part, now).map(|(l, d)| format!("{l}@{d}"))
}

fn reverse_parts(key: &hmac::Key, local_part: &str, now: i64) -> Option<(String, String)> {
    let rest = local_part
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("SRS0="))
        .map(|_| &local_part[5..])?;
    let mut it = rest.splitn(4, '=');
    let (h, stamp, domain, local) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if domain.is_empty() || local.is_empty() || stamp_age(stamp, now)? > MAX_AGE_DAYS {
        return None;
    }
    let want = hash(key, &stamp.to_ascii_uppercase(), domain, local);
    // Mail systems may change the case of a local part on the way.
    let (a, b) = (want.to_ascii_lowercase(), h.to_ascii_lowercase());
    // Compared without an early exit, so timing tells nothing of the hash.
    let diff = a.len() ^ b.len()
        | a.bytes()
            .zip(b.bytes())
            .fold(0usize, |d, (x, y)| d | usize::from(x ^ y));
    if diff != 0 {
        return None;
    }
    Some((local.to_owned(), domain.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trip_and_refusals() {
        let now = 1_796_000_000;
        let k = key();
        let srs = forward(&k, "Ann.Lee@out.test", "here.test", now);
        assert!(srs.starts_with("SRS0="), "{srs}");
        assert!(srs.ends_with("=out.test=Ann.Lee@here.test"), "{srs}");
        let local = srs.rsplit_once('@').unwrap().0;
        assert_eq!(reverse(&k, local, now).as_deref(), Some("Ann.Lee@out.test"));
        assert_eq!(
            reverse(&k, &local.to_lowercase(), now + 86_400 * 3).as_deref(),
            Some("ann.lee@out.test")
        );
        // Too old, forged, or another key.
        assert_eq!(reverse(&k, local, now + 86_400 * 30), None);
        let forged = local.replacen("out.test", "evil.test", 1);
        assert_eq!(reverse(&k, &forged, now), None);
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"another key");
        assert_eq!(reverse(&other, local, now), None);
        assert_eq!(reverse(&k, "bob", now), None);
        // Null stays null; forwarding twice does not nest.
        assert_eq!(forward(&k, "", "here.test", now), "");
        let again = forward(&k, &srs, "here.test", now);
        assert_eq!(again, srs);
    }
}
