//! FETCH data items and body sections (RFC 9051 §6.4.5, §9).

use super::lexer::{P, R, is_atom_char};
use super::{FetchItem, MAX_DEPTH, Section, SectionText};

pub(super) fn parse_section(spec: &str, fields: Option<Vec<String>>) -> R<Section> {
    let mut part = Vec::new();
    let mut rest = spec;
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_digit() {
            break;
        }
        let end = rest.find('.').unwrap_or(rest.len());
        let n: u32 = rest[..end].parse().map_err(|_| "bad section part")?;
        if n == 0 {
            return Err("section parts start at 1".into());
        }
        part.push(n);
        if part.len() > MAX_DEPTH {
            return Err("section too deep".into());
        }
        rest = rest.get(end + 1..).unwrap_or("");
        if end == spec.len() {
            break;
        }
    }
    let text = match (rest, fields) {
        ("", None) => SectionText::Full,
        ("HEADER", None) => SectionText::Header,
        ("TEXT", None) => SectionText::Text,
        ("MIME", None) if !part.is_empty() => SectionText::Mime,
        ("HEADER.FIELDS", Some(f)) => SectionText::HeaderFields(f),
        ("HEADER.FIELDS.NOT", Some(f)) => SectionText::HeaderFieldsNot(f),
        (o, _) => return Err(format!("bad section {o}")),
    };
    Ok(Section { part, text })
}

impl P<'_> {
    /// `fetch-att = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822" [".HEADER"
    /// / ".TEXT"] / "RFC822.SIZE" / "BODY" ["STRUCTURE"] / "UID" / "BODY"
    /// section [partial] / "BODY.PEEK" section [partial]`, with the macros
    /// ALL, FAST and FULL and a parenthesised list (RFC 9051 §9, RFC 3501
    /// §9), and `"MODSEQ"` (RFC 7162 §7).
    pub(super) fn fetch_att(&mut self) -> R<Vec<FetchItem>> {
        // The item name ends at "[" (BODY[...]) as well as at the usual
        // atom ends.
        let start = self.i;
        while self.peek().is_some_and(|c| is_atom_char(c) && c != b'[') {
            self.i += 1;
        }
        if self.i == start {
            return Err("expected a fetch item".into());
        }
        let base = String::from_utf8_lossy(&self.b[start..self.i]).to_ascii_uppercase();
        Ok(match base.as_str() {
            "ALL" => vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
            ],
            "FAST" => vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
            ],
            "FULL" => vec![
                FetchItem::Flags,
                FetchItem::InternalDate,
                FetchItem::Rfc822Size,
                FetchItem::Envelope,
                FetchItem::Body,
            ],
            "BODY" | "BODY.PEEK" if self.peek() == Some(b'[') => {
                let peek = base == "BODY.PEEK";
                self.i += 1;
                let s0 = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c != b']' && c != b' ' && c > 0x20 && c < 0x7f)
                {
                    self.i += 1;
                }
                let spec = String::from_utf8_lossy(&self.b[s0..self.i]).to_ascii_uppercase();
                let fields = if self.eat(b' ') {
                    Some(self.header_list()?)
                } else {
                    None
                };
                self.expect(b']')?;
                let section = parse_section(&spec, fields)?;
                let partial = if self.eat(b'<') {
                    let o = self.number()?;
                    self.expect(b'.')?;
                    let n = self.number()?;
                    self.expect(b'>')?;
                    if o > u32::MAX as u64 || n > u32::MAX as u64 || n == 0 {
                        return Err("bad partial range".into());
                    }
                    Some((o as u32, n as u32))
                } else {
                    None
                };
                vec![FetchItem::BodySection {
                    peek,
                    section,
                    partial,
                }]
            }
            "BODY" => vec![FetchItem::Body],
            "FLAGS" => vec![FetchItem::Flags],
            "UID" => vec![FetchItem::Uid],
            "INTERNALDATE" => vec![FetchItem::InternalDate],
            "RFC822.SIZE" => vec![FetchItem::Rfc822Size],
            "ENVELOPE" => vec![FetchItem::Envelope],
            "BODYSTRUCTURE" => vec![FetchItem::BodyStructure],
            "RFC822" => vec![FetchItem::Rfc822],
            "RFC822.HEADER" => vec![FetchItem::Rfc822Header],
            "RFC822.TEXT" => vec![FetchItem::Rfc822Text],
            "MODSEQ" => vec![FetchItem::ModSeq],
            _ => return Err(format!("unknown fetch item {base}")),
        })
    }

    /// `header-list = "(" header-fld-name *(SP header-fld-name) ")"`,
    /// `header-fld-name = astring` (RFC 9051 §9).
    pub(super) fn header_list(&mut self) -> R<Vec<String>> {
        self.open()?;
        let mut v = Vec::new();
        while !self.eat(b')') {
            if !v.is_empty() {
                self.sp()?;
            }
            v.push(self.astring()?);
        }
        self.depth -= 1;
        if v.is_empty() {
            return Err("empty header list".into());
        }
        Ok(v)
    }
}
