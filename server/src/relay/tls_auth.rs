//! Authenticating an MX host's certificate, for the destinations that ask
//! for it: MTA-STS in `enforce` mode (RFC 8461 §4.2: WebPKI, the MX host
//! name) and DANE (RFC 7672: TLSA records published under DNSSEC).
//!
//! lettre does the handshake without checking the certificate (almost all
//! MX traffic is opportunistic, RFC 7435); the chain it reports is checked
//! here before MAIL is sent, so a host that fails never sees the message.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{RootCertStore, client::WebPkiServerVerifier};

/// One TLSA record (RFC 6698 §2.1), as numbers: the relay only uses the
/// ones RFC 7672 §3.1 allows for SMTP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// DANE-TA(2) and DANE-EE(3); PKIX-TA(0) and PKIX-EE(1) are "unusable"
/// for SMTP (RFC 7672 §3.1.3), as are unknown selectors and matching types.
pub fn usable(r: &Tlsa) -> bool {
    matches!(r.usage, 2 | 3) && matches!(r.selector, 0 | 1) && matches!(r.matching, 0..=2)
}

/// A DER element: its tag, and its contents and what follows it.
fn der_element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().try_fold(0usize, |a, &x| {
            a.checked_mul(256)?.checked_add(usize::from(x))
        })?;
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The whole DER element at the start of `b` (tag and length included).
fn der_whole(b: &[u8]) -> Option<&[u8]> {
    let (_, _, after) = der_element(b)?;
    Some(&b[..b.len() - after.len()])
}

/// The SubjectPublicKeyInfo of an X.509 certificate, as DER (what TLSA
/// selector 1 hashes). RFC 5280 §4.1: Certificate = SEQUENCE { tbs, .. },
/// tbs = SEQUENCE { [0] version OPTIONAL, serial, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, .. }.
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    // serial, signature, issuer, validity, subject
    let whole = der_whole(tbs_after(cert, 5)?)?;
    (whole.first() == Some(&0x30)).then_some(whole)
}

/// The TBSCertificate's fields after its version and the first `skip`
/// others (RFC 5280 §4.1: serial, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, ...).
fn tbs_after(cert: &[u8], skip: usize) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der_element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.2;
    }
    for _ in 0..skip {
        rest = der_element(rest)?.2;
    }
    Some(rest)
}

/// When an X.509 certificate stops being valid (`validity.notAfter`,
/// RFC 5280 §4.1.2.5), in unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    // serial, signature, issuer
    let (0x30, validity, _) = der_element(tbs_after(cert, 3)?)? else {
        return None;
    };
    let (_, _, after) = der_element(validity)?;
    let (tag, t, _) = der_element(after)?;
    let t = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    // UTCTime YYMMDDHHMMSS (years 1950-2049), GeneralizedTime YYYYMMDDHHMMSS.
    let (year, rest) = match tag {
        0x17 if t.len() == 12 => {
            let y: i64 = t[..2].parse().ok()?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, &t[2..])
        }
        0x18 if t.len() == 14 => (t[..4].parse().ok()?, &t[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (mo, d, h, mi, s) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Whether one certificate is the one a TLSA record names (RFC 6698 §2.1.2,
/// §2.1.3).
pub fn matches(r: &Tlsa, cert: &[u8]) -> bool {
    let selected = match r.selector {
        0 => cert,
        1 => match spki(cert) {
            Some(s) => s,
            None => return false,
        },
        _ => return false,
    };
    match r.matching {
        0 => selected == r.data.as_slice(),
        1 => ring::digest::digest(&ring::digest::SHA256, selected).as_ref() == r.data.as_slice(),
        2 => ring::digest::digest(&ring::digest::SHA512, selected).as_ref() == r.data.as_slice(),
        _ => false,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A WebPKI check of `chain` (leaf first) for `host` against `roots`.
fn webpki(chain: &[Vec<u8>], host: &str, roots: RootCertStore) -> Result<(), String> {
    let (leaf, rest) = chain.split_first().ok_or("no certificate")?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let inter: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.as_slice()),
            &inter,
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// MTA-STS (RFC 8461 §4.2): the chain is valid from a trusted root and
/// names the MX host.
pub fn pkix(chain: &[Vec<u8>], host: &str, roots: &RootCertStore) -> Result<(), String> {
    webpki(chain, host, roots.clone())
}

/// DANE (RFC 7672 §3.1): some usable record matches. DANE-EE(3) matches
/// the leaf with no name or date check (§3.1.1); DANE-TA(2) names a
/// certificate in the chain, which then anchors an ordinary check of the
/// leaf for the MX host name (§3.1.2, §3.2.2).
pub fn dane(chain: &[Vec<u8>], records: &[Tlsa], host: &str) -> Result<(), String> {
    let leaf = chain.first().ok_or("no certificate")?;
    let mut last = "no TLSA record matches the certificate".to_owned();
    for r in records.iter().filter(|r| usable(r)) {
        match r.usage {
            3 if matches(r, leaf) => return Ok(()),
            2 => {
                // The anchor must be in the chain as a certificate: a bare
                // public key (selector 1 with no certificate sent) cannot
                // anchor webpki's check.
                for ta in chain.iter().skip(1).filter(|c| matches(r, c)) {
                    let mut roots = RootCertStore::empty();
                    if roots.add(CertificateDer::from(ta.as_slice())).is_err() {
                        continue;
                    }
                    match webpki(chain, host, roots) {
                        Ok(()) => return Ok(()),
                        Err(e) => last = format!("DANE-TA: {e}"),
                    }
                }
            }
            _ => {}
        }
    }
    Err(last)
}

/// The trust anchors for MTA-STS: the Mozilla set (webpki-roots), plus
/// any in `relay.tls_roots_file` (a private CA; the tests' CA).
pub fn roots(extra_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        let mut r = pem;
        for c in rustls_pemfile::certs(&mut r) {
            let c = c.map_err(|e| format!("relay.tls_roots_file: {e}"))?;
            roots
                .add(c)
                .map_err(|e| format!("relay.tls_roots_file: {e}"))?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    /// A CA, a leaf for `mx.a.test` it signed, and the leaf's key (SPKI DER).
    fn ca_and_leaf() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["mx.a.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&leaf_key);
        (ca.der().to_vec(), leaf.der().to_vec(), spki)
    }

    #[test]
    fn not_after_reads_both_time_forms() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        p.not_after = rcgen::date_time_ymd(2031, 7, 14);
        let c = p.self_signed(&key).unwrap();
        assert_eq!(not_after(c.der()), Some(1_941_753_600));
        p.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let c = p.self_signed(&key).unwrap();
        assert_eq!(not_after(c.der()), Some(2_556_230_400));
        assert_eq!(not_after(b"\x30\x00"), None);
    }

    #[test]
    fn spki_is_the_key_rcgen_put_in() {
        let (ca, leaf, key) = ca_and_leaf();
        assert_eq!(spki(&leaf), Some(key.as_slice()));
        assert!(spki(&ca).is_some());
        assert_eq!(spki(b"\x30\x03\x02\x01"), None);
        assert_eq!(spki(&leaf[..leaf.len() / 2]), None);
    }

    #[test]
    fn dane_ee_and_ta() {
        let (ca, leaf, key) = ca_and_leaf();
        let chain = vec![leaf.clone(), ca.clone()];
        let ee = |sel, m, data| Tlsa {
            usage: 3,
            selector: sel,
            matching: m,
            data,
        };
        assert!(dane(&chain, &[ee(1, 1, sha256(&key))], "anything").is_ok());
        assert!(dane(&chain, &[ee(0, 1, sha256(&leaf))], "x").is_ok());
        assert!(dane(&chain, &[ee(0, 0, leaf.clone())], "x").is_ok());
        assert!(dane(&chain, &[ee(1, 1, sha256(b"other"))], "x").is_err());
        // PKIX-EE is unusable for SMTP even when it matches.
        let pkix_ee = Tlsa {
            usage: 1,
            ..ee(1, 1, sha256(&key))
        };
        assert!(dane(&chain, &[pkix_ee], "x").is_err());
        let ta = Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: sha256(&ca),
        };
        assert!(dane(&chain, std::slice::from_ref(&ta), "mx.a.test").is_ok());
        // DANE-TA checks the name.
        assert!(dane(&chain, std::slice::from_ref(&ta), "mx.b.test").is_err());
        // And needs the anchor in the chain.
        assert!(dane(&[leaf], &[ta], "mx.a.test").is_err());
    }

    #[test]
    fn pkix_needs_a_trusted_root_and_the_name() {
        let (ca, leaf, _) = ca_and_leaf();
        let chain = vec![leaf.clone()];
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca)
        );
        let with_ca = roots(Some(pem.as_bytes())).unwrap();
        assert!(pkix(&chain, "mx.a.test", &with_ca).is_ok());
        assert!(pkix(&chain, "mx.b.test", &with_ca).is_err());
        assert!(pkix(&chain, "mx.a.test", &roots(None).unwrap()).is_err());
    }
}
