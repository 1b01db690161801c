//! Mail addresses as Tern stores and routes them.
//!
//! Parsing is pure. Tern accepts the dot-atom form of RFC 5321 §4.1.2
//! (`Local-part = Dot-string`) and refuses quoted local parts and the
//! legacy relay syntaxes (`%`, `!`, source routes). Those only ever served to
//! smuggle relaying through a local domain, so they are reported as
//! [`AddressError::RelaySyntax`] for the router to turn into a refusal.
//! Local parts and domains are compared case-insensitively and stored in
//! lower case, which is what every mainstream server does in practice.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no @domain")]
    NoDomain,
    #[error("local part is empty or longer than 64 octets")]
    LocalLength,
    #[error("local part contains a character that is not allowed: {0:?}")]
    LocalChar(char),
    #[error("local part has an empty dot-separated atom")]
    LocalDots,
    #[error("domain is not a valid host name: {0}")]
    Domain(String),
    #[error("address uses relay syntax (%, !, quoted @ or a source route)")]
    RelaySyntax,
}

/// RFC 5322 §3.2.3 atext, minus `%` and `!` which only served relaying.
fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#$&'*+-/=?^_`{|}~".contains(c)
}

impl Address {
    /// Parses `local@domain`, with or without angle brackets.
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        // `<@relay:user@elsewhere>`: RFC 5321 §4.1.2 source route.
        if s.starts_with('@') || s.starts_with('"') {
            return Err(AddressError::RelaySyntax);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoDomain)?;
        if local.contains('%') || local.contains('!') || local.contains('@') {
            return Err(AddressError::RelaySyntax);
        }
        let local = parse_local(local)?;
        let domain = parse_domain(domain)?;
        Ok(Address { local, domain })
    }

    pub fn from_parts(local: &str, domain: &str) -> Result<Address, AddressError> {
        Address::parse(&format!("{local}@{domain}"))
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The part before `+`, for subaddressing (`user+tag@example.org`).
    pub fn base_local(&self) -> Option<&str> {
        self.local
            .split_once('+')
            .map(|(b, _)| b)
            .filter(|b| !b.is_empty())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

pub fn parse_local(local: &str) -> Result<String, AddressError> {
    if local.is_empty() || local.len() > 64 {
        return Err(AddressError::LocalLength);
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_local_char(c)) {
        return Err(AddressError::LocalChar(c));
    }
    if local.split('.').any(str::is_empty) {
        return Err(AddressError::LocalDots);
    }
    Ok(local.to_ascii_lowercase())
}

/// A host name per RFC 1035 §2.3.1 as relaxed by RFC 1123 §2.1: labels of
/// letters, digits and inner hyphens, at most 63 octets each, 253 in all.
pub fn parse_domain(domain: &str) -> Result<String, AddressError> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let bad = || AddressError::Domain(domain.to_string());
    if d.is_empty() || d.len() > 253 || !d.contains('.') {
        return Err(bad());
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad());
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let a = Address::parse("<Alice.B+news@Example.ORG>").unwrap();
        assert_eq!(a.to_string(), "alice.b+news@example.org");
        assert_eq!(a.base_local(), Some("alice.b"));
    }

    #[test]
    fn refuses_relay_syntax() {
        for s in [
            "u%ext.org@local.test",
            "ext.org!u@local.test",
            "\"u@ext.org\"@local.test",
            "@local.test:u@ext.org",
        ] {
            assert_eq!(Address::parse(s), Err(AddressError::RelaySyntax), "{s}");
        }
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(Address::parse(""), Err(AddressError::Empty));
        assert_eq!(Address::parse("nobody"), Err(AddressError::NoDomain));
        assert_eq!(Address::parse("a..b@x.org"), Err(AddressError::LocalDots));
        assert_eq!(
            Address::parse("a b@x.org"),
            Err(AddressError::LocalChar(' '))
        );
        assert!(matches!(
            Address::parse("a@-x.org"),
            Err(AddressError::Domain(_))
        ));
        assert!(matches!(
            Address::parse("a@localhost"),
            Err(AddressError::Domain(_))
        ));
        assert_eq!(
            Address::parse(&format!("{}@x.org", "a".repeat(65))),
            Err(AddressError::LocalLength)
        );
    }
}
