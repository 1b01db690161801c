//! Mail addresses as Tern stores and routes them.
//!
//! Parsing is pure. Tern accepts both forms of RFC 5321 §4.1.2
//! (`Local-part = Dot-string / Quoted-string`). A quoted local part that
//! could have been written as a dot-string (`"alice"@x`) is the same
//! address as the unquoted one and is stored that way; one that needs its
//! quotes (`"john smith"@x`) keeps them when written back. The legacy relay
//! syntaxes (`%`, `!`, a quoted `@`, source routes) only ever served to
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
        if s.starts_with('@') {
            return Err(AddressError::RelaySyntax);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoDomain)?;
        let (local, quoted) = match local.strip_prefix('"') {
            Some(q) => (unquote(q)?, true),
            None => (local.to_owned(), false),
        };
        if local.contains('%') || local.contains('!') || local.contains('@') {
            return Err(AddressError::RelaySyntax);
        }
        // Only what was written in quotes may need them.
        let local = if quoted && !is_dot_string(&local) {
            parse_quoted_content(&local)?
        } else {
            parse_local(&local)?
        };
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

    /// True for a local part that only a Quoted-string can carry.
    pub fn needs_quotes(&self) -> bool {
        !is_dot_string(&self.local)
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
        if is_dot_string(&self.local) {
            return write!(f, "{}@{}", self.local, self.domain);
        }
        // RFC 5321 §4.1.2 Quoted-string: `"` and `\` are quoted-pairs.
        f.write_str("\"")?;
        for c in self.local.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        write!(f, "\"@{}", self.domain)
    }
}

/// RFC 5321 §4.1.2 `Dot-string`: atoms joined by single dots.
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local.chars().all(|c| c == '.' || is_local_char(c))
        && !local.split('.').any(str::is_empty)
}

/// The content of a `Quoted-string` whose opening quote is already gone:
/// quoted-pairs undone, the closing quote required at the very end.
fn unquote(q: &str) -> Result<String, AddressError> {
    let mut out = String::new();
    let mut chars = q.chars();
    loop {
        match chars.next() {
            None => return Err(AddressError::LocalChar('"')),
            Some('"') => {
                return match chars.next() {
                    None => Ok(out),
                    Some(c) => Err(AddressError::LocalChar(c)),
                };
            }
            // quoted-pairSMTP = %d92 %d32-126
            Some('\\') => match chars.next() {
                Some(c @ ' '..='~') => out.push(c),
                Some(c) => return Err(AddressError::LocalChar(c)),
                None => return Err(AddressError::LocalChar('\\')),
            },
            Some(c) => out.push(c),
        }
    }
}

/// A local part that needs its quotes: printable ASCII and spaces
/// (RFC 5321 qtextSMTP plus quoted-pairs), lower-cased like the rest.
fn parse_quoted_content(local: &str) -> Result<String, AddressError> {
    if local.is_empty() || local.len() > 64 {
        return Err(AddressError::LocalLength);
    }
    if let Some(c) = local.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(AddressError::LocalChar(c));
    }
    Ok(local.to_ascii_lowercase())
}

/// `domain` is `of` or a subdomain of it: DMARC's relaxed alignment (RFC
/// 7489 §3.1) without the public suffix list, which a subdomain of a
/// domain this server hosts (or a sender's) needs no list to settle.
/// Case and final dots do not matter.
pub fn domain_aligned(domain: &str, of: &str) -> bool {
    let (d, of) = (domain.to_ascii_lowercase(), of.to_ascii_lowercase());
    let (d, of) = (d.trim_end_matches('.'), of.trim_end_matches('.'));
    !of.is_empty() && (d == of || d.ends_with(&format!(".{of}")))
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
    fn quoted_local_parts() {
        // RFC 5321 §4.1.2: "alice" could be a dot-string, so it is alice.
        let a = Address::parse("\"Alice\"@Example.test").unwrap();
        assert_eq!(a.to_string(), "alice@example.test");
        assert_eq!(a, Address::parse("alice@example.test").unwrap());
        let b = Address::parse("<\"john smith\"@example.test>").unwrap();
        assert_eq!(b.local(), "john smith");
        assert_eq!(b.to_string(), "\"john smith\"@example.test");
        let c = Address::parse(r#""a\"b\\c"@example.test"#).unwrap();
        assert_eq!(c.local(), "a\"b\\c");
        assert_eq!(Address::parse(&c.to_string()).unwrap(), c);
        assert!(Address::parse("\"open@example.test").is_err());
        assert!(Address::parse("\"a\"b@example.test").is_err());
        assert!(Address::parse("\"tab\there\"@example.test").is_err());
        assert_eq!(
            Address::parse("\"a%b\"@example.test"),
            Err(AddressError::RelaySyntax)
        );
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
