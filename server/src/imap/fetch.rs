//! FETCH data items (RFC 9051 §7.5.2) and SEARCH matching (§6.4.4), over
//! a message's stored summary and, when an item needs it, its raw bytes.
//! MIME structure comes from mail-parser; sections are cut from the raw
//! bytes at the offsets it reports, so BODY[1.2] returns exactly the bytes
//! that arrived.

use mail_parser::{Address, Message, MessageParser, MimeHeaders, PartType};
use mailcore::{Flags, MessageSummary};

use super::proto::{FetchItem, SearchKey, Section, SectionText, format_date_time};

pub fn needs_raw(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Envelope
            | FetchItem::BodyStructure
            | FetchItem::Body
            | FetchItem::BodySection { .. }
            | FetchItem::Rfc822
            | FetchItem::Rfc822Header
            | FetchItem::Rfc822Text
    )
}

fn flags(f: Flags, recent: bool) -> String {
    let mut n = f.names();
    if recent {
        n.push("\\Recent");
    }
    format!("({})", n.join(" "))
}

/// An nstring: NIL, a quoted string, or a literal.
fn nstr(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => b"NIL".to_vec(),
        Some(b) => {
            let plain = b.len() < 1000
                && b.iter()
                    .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\');
            if plain {
                let mut o = Vec::with_capacity(b.len() + 2);
                o.push(b'"');
                o.extend_from_slice(b);
                o.push(b'"');
                o
            } else {
                let mut o = format!("{{{}}}\r\n", b.len()).into_bytes();
                o.extend_from_slice(b);
                o
            }
        }
    }
}

fn nstr_s(v: Option<&str>) -> Vec<u8> {
    nstr(v.map(str::as_bytes))
}

/// Offset where the header ends and the body begins (after the blank line).
fn body_start(raw: &[u8]) -> usize {
    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return i + 4;
    }
    if let Some(i) = raw.windows(2).position(|w| w == b"\n\n") {
        return i + 2;
    }
    raw.len()
}

/// Header lines (with continuations) whose names are (or are not) listed.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !(line.starts_with(b" ") || line.starts_with(b"\t")) {
            let name = line.split(|&b| b == b':').next().unwrap_or(b"");
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(&name));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes a section names, or None if the part does not exist (then
/// the response carries NIL... we send an empty string, as most servers do).
fn section_bytes(raw: &[u8], parsed: Option<&Message<'_>>, s: &Section) -> Vec<u8> {
    let (hdr, body): (&[u8], &[u8]) = if s.part.is_empty() {
        let b = body_start(raw);
        (&raw[..b], &raw[b..])
    } else {
        let Some(msg) = parsed else {
            return Vec::new();
        };
        match locate(msg, &s.part) {
            Some((h, b, e)) => (raw.get(h..b).unwrap_or(&[]), raw.get(b..e).unwrap_or(&[])),
            None => return Vec::new(),
        }
    };
    match &s.text {
        SectionText::Full if s.part.is_empty() => raw.to_vec(),
        SectionText::Full => body.to_vec(),
        SectionText::Mime => hdr.to_vec(),
        // For a part, HEADER and TEXT look inside an encapsulated message.
        SectionText::Header if s.part.is_empty() => hdr.to_vec(),
        SectionText::Text if s.part.is_empty() => body.to_vec(),
        SectionText::Header => body[..body_start(body)].to_vec(),
        SectionText::Text => body[body_start(body)..].to_vec(),
        SectionText::HeaderFields(n) | SectionText::HeaderFieldsNot(n) => {
            let not = matches!(s.text, SectionText::HeaderFieldsNot(_));
            let h = if s.part.is_empty() {
                hdr
            } else {
                &body[..body_start(body)]
            };
            header_fields(h, n, not)
        }
    }
}

/// (header start, body start, end) of a part path in the top message.
fn locate(msg: &Message<'_>, path: &[u32]) -> Option<(usize, usize, usize)> {
    let mut part = msg.parts.first()?;
    for (depth, &n) in path.iter().enumerate() {
        match part.sub_parts() {
            Some(children) => {
                let id = *children.get(n as usize - 1)?;
                part = msg.parts.get(id as usize)?;
            }
            // RFC 9051 §6.4.5: a non-multipart message has one part, 1.
            None if depth == 0 && n == 1 && path.len() == 1 => {}
            None => return None,
        }
    }
    Some((
        part.raw_header_offset() as usize,
        part.raw_body_offset() as usize,
        part.raw_end_offset() as usize,
    ))
}

/// A display name for ENVELOPE: ASCII as is, anything else as an RFC 2047
/// encoded-word, which IMAP4rev1 clients decode as they would the raw
/// header.
fn display_name(name: Option<&str>) -> Vec<u8> {
    use base64::Engine;
    match name {
        Some(n) if !n.is_ascii() => {
            let b = base64::engine::general_purpose::STANDARD.encode(n.as_bytes());
            nstr_s(Some(&format!("=?utf-8?b?{b}?=")))
        }
        other => nstr_s(other),
    }
}

fn address(out: &mut Vec<u8>, name: Option<&str>, addr: Option<&str>) {
    let addr = addr.unwrap_or("");
    let (local, host) = addr.rsplit_once('@').unwrap_or((addr, ""));
    out.push(b'(');
    out.extend(display_name(name));
    out.extend_from_slice(b" NIL ");
    out.extend(nstr_s(Some(local)));
    out.push(b' ');
    out.extend(nstr_s(if host.is_empty() { None } else { Some(host) }));
    out.push(b')');
}

/// An ENVELOPE address list. A named group is framed as RFC 9051 §7.5.2
/// says: `(NIL NIL "group" NIL)` before its members, `(NIL NIL NIL NIL)`
/// after.
fn addresses(a: Option<&Address<'_>>) -> Vec<u8> {
    let Some(a) = a else {
        return b"NIL".to_vec();
    };
    let mut out = b"(".to_vec();
    match a {
        Address::List(list) => {
            for x in list {
                address(&mut out, x.name.as_deref(), x.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for g in groups {
                if let Some(name) = &g.name {
                    out.extend_from_slice(b"(NIL NIL ");
                    out.extend(nstr_s(Some(name)));
                    out.extend_from_slice(b" NIL)");
                }
                for x in &g.addresses {
                    address(&mut out, x.name.as_deref(), x.address.as_deref());
                }
                if g.name.is_some() {
                    out.extend_from_slice(b"(NIL NIL NIL NIL)");
                }
            }
        }
    }
    out.push(b')');
    if out == b"()" { b"NIL".to_vec() } else { out }
}

/// A header's raw value, unfolded and trimmed.
fn raw_header(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name)
        .map(|v| v.replace("\r\n", "").replace('\n', "").trim().to_owned())
}

/// RFC 9051 §7.5.2 ENVELOPE.
pub fn envelope(msg: &Message<'_>) -> Vec<u8> {
    let mut out = b"(".to_vec();
    for (i, name) in ["Date", "Subject"].iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(nstr_s(raw_header(msg, name).as_deref()));
    }
    let from = msg.from();
    for a in [
        from,
        msg.sender().or(from),
        msg.reply_to().or(from),
        msg.to(),
        msg.cc(),
        msg.bcc(),
    ] {
        out.push(b' ');
        out.extend(addresses(a));
    }
    for name in ["In-Reply-To", "Message-ID"] {
        out.push(b' ');
        out.extend(nstr_s(raw_header(msg, name).as_deref()));
    }
    out.push(b')');
    out
}

fn upper_q(s: &str) -> Vec<u8> {
    nstr_s(Some(&s.to_ascii_uppercase()))
}

fn params(attrs: Option<&[mail_parser::Attribute<'_>]>) -> Vec<u8> {
    match attrs {
        Some(a) if !a.is_empty() => {
            let mut out = b"(".to_vec();
            for (i, at) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend(upper_q(&at.name));
                out.push(b' ');
                out.extend(nstr_s(Some(&at.value)));
            }
            out.push(b')');
            out
        }
        _ => b"NIL".to_vec(),
    }
}

/// RFC 9051 §7.5.2 BODYSTRUCTURE (with `ext`) or BODY (without).
pub fn structure(msg: &Message<'_>, raw: &[u8], id: usize, ext: bool, depth: usize) -> Vec<u8> {
    let Some(part) = msg.parts.get(id) else {
        return b"NIL".to_vec();
    };
    let ct = part.content_type();
    let (ctype, sub) = match ct {
        Some(c) => (
            c.ctype().to_owned(),
            c.subtype()
                .unwrap_or(if c.ctype().eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                })
                .to_owned(),
        ),
        None => ("text".into(), "plain".into()),
    };
    let mut out = b"(".to_vec();
    if let Some(children) = part.sub_parts().filter(|_| depth < 32) {
        for c in children {
            out.extend(structure(msg, raw, *c as usize, ext, depth + 1));
        }
        if children.is_empty() {
            // A multipart with no parts is malformed; describe it as empty text.
            out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        }
        out.push(b' ');
        out.extend(upper_q(&sub));
        if ext {
            out.push(b' ');
            out.extend(params(ct.and_then(|c| c.attributes())));
            out.extend_from_slice(b" ");
            out.extend(disposition(part));
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return out;
    }
    let body_len = part.raw_end_offset().saturating_sub(part.raw_body_offset()) as usize;
    let body = raw
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
        .unwrap_or(&[]);
    out.extend(upper_q(&ctype));
    out.push(b' ');
    out.extend(upper_q(&sub));
    out.push(b' ');
    let mut p = params(ct.and_then(|c| c.attributes()));
    if p == b"NIL" && ctype.eq_ignore_ascii_case("text") {
        p = b"(\"CHARSET\" \"US-ASCII\")".to_vec();
    }
    out.extend(p);
    out.push(b' ');
    out.extend(nstr_s(part.content_id()));
    out.push(b' ');
    out.extend(nstr_s(part.content_description()));
    out.push(b' ');
    out.extend(upper_q(part.content_transfer_encoding().unwrap_or("7bit")));
    out.extend(format!(" {body_len}").into_bytes());
    // A last line without its line end still counts.
    let lines = body.iter().filter(|&&b| b == b'\n').count()
        + usize::from(body.last().is_some_and(|&b| b != b'\n'));
    if let PartType::Message(inner) = &part.body {
        out.push(b' ');
        out.extend(envelope(inner));
        out.push(b' ');
        // mail-parser reports a nested message's offsets in the outer bytes.
        out.extend(structure(inner, raw, 0, ext, depth + 1));
        out.extend(format!(" {lines}").into_bytes());
    } else if ctype.eq_ignore_ascii_case("text") {
        out.extend(format!(" {lines}").into_bytes());
    }
    if ext {
        out.extend_from_slice(b" NIL ");
        out.extend(disposition(part));
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
    out
}

fn disposition(part: &mail_parser::MessagePart<'_>) -> Vec<u8> {
    match part.content_disposition() {
        Some(d) => {
            let mut o = b"(".to_vec();
            o.extend(upper_q(d.ctype()));
            o.push(b' ');
            o.extend(params(d.attributes()));
            o.push(b')');
            o
        }
        None => b"NIL".to_vec(),
    }
}

fn literal(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut o = format!("{name} {{{}}}\r\n", bytes.len()).into_bytes();
    o.extend_from_slice(bytes);
    o
}

/// Items that need the MIME structure: the caller parses each message once
/// for all of them ([`parse`]) and hands the result to [`render`].
pub fn needs_mime(item: &FetchItem) -> bool {
    match item {
        FetchItem::Envelope | FetchItem::BodyStructure | FetchItem::Body => true,
        FetchItem::BodySection { section, .. } => !section.part.is_empty(),
        _ => false,
    }
}

pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// One data item of a FETCH response. `mime` is the parsed message when
/// some item [`needs_mime`].
pub fn render(
    item: &FetchItem,
    m: &MessageSummary,
    raw: Option<&[u8]>,
    mime: Option<&Message<'_>>,
    recent: bool,
) -> Vec<u8> {
    let raw = raw.unwrap_or(&[]);
    match item {
        FetchItem::Flags => format!("FLAGS {}", flags(m.flags, recent)).into_bytes(),
        FetchItem::Uid => format!("UID {}", m.uid).into_bytes(),
        FetchItem::InternalDate => {
            format!("INTERNALDATE \"{}\"", format_date_time(m.internal_date)).into_bytes()
        }
        FetchItem::Rfc822Size => format!("RFC822.SIZE {}", m.size).into_bytes(),
        FetchItem::ModSeq => format!("MODSEQ ({})", m.modseq).into_bytes(),
        FetchItem::Envelope => {
            let mut o = b"ENVELOPE ".to_vec();
            match mime {
                Some(msg) => o.extend(envelope(msg)),
                None => o.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
            }
            o
        }
        FetchItem::BodyStructure | FetchItem::Body => {
            let ext = *item == FetchItem::BodyStructure;
            let mut o = if ext {
                b"BODYSTRUCTURE ".to_vec()
            } else {
                b"BODY ".to_vec()
            };
            match mime {
                Some(msg) => o.extend(structure(msg, raw, 0, ext, 0)),
                None => o.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)"),
            }
            o
        }
        FetchItem::Rfc822 => literal("RFC822", raw),
        FetchItem::Rfc822Header => literal("RFC822.HEADER", &raw[..body_start(raw)]),
        FetchItem::Rfc822Text => literal("RFC822.TEXT", &raw[body_start(raw)..]),
        FetchItem::BodySection {
            section, partial, ..
        } => {
            let mut bytes = section_bytes(raw, mime, section);
            let mut name = format!("BODY[{}]", section_name(section));
            if let Some((o, n)) = partial {
                let start = (*o as usize).min(bytes.len());
                let end = start.saturating_add(*n as usize).min(bytes.len());
                bytes = bytes[start..end].to_vec();
                name.push_str(&format!("<{o}>"));
            }
            literal(&name, &bytes)
        }
    }
}

fn section_name(s: &Section) -> String {
    let mut parts: Vec<String> = s.part.iter().map(|p| p.to_string()).collect();
    let text = match &s.text {
        SectionText::Full => None,
        SectionText::Header => Some("HEADER".to_owned()),
        SectionText::Text => Some("TEXT".to_owned()),
        SectionText::Mime => Some("MIME".to_owned()),
        SectionText::HeaderFields(f) => Some(format!("HEADER.FIELDS ({})", f.join(" "))),
        SectionText::HeaderFieldsNot(f) => Some(format!("HEADER.FIELDS.NOT ({})", f.join(" "))),
    };
    parts.extend(text);
    parts.join(".")
}

pub struct SearchCtx {
    pub seq: u32,
    pub max_seq: u32,
    pub max_uid: u32,
    pub recent: bool,
}

pub fn search_needs_raw(k: &SearchKey) -> bool {
    match k {
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Header(f, _) => {
            !matches!(f.to_ascii_lowercase().as_str(), "from" | "subject" | "to")
        }
        SearchKey::Not(k) => search_needs_raw(k),
        SearchKey::Or(a, b) => search_needs_raw(a) || search_needs_raw(b),
        SearchKey::And(v) => v.iter().any(search_needs_raw),
        _ => false,
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

pub fn matches(k: &SearchKey, m: &MessageSummary, raw: Option<&[u8]>, c: &SearchCtx) -> bool {
    let day = |t: i64| t.div_euclid(86400);
    match k {
        SearchKey::All => true,
        SearchKey::Flag(name, want) => {
            Flags::from_name(name).is_some_and(|f| m.flags.contains(f) == *want)
        }
        SearchKey::New => c.recent && !m.flags.contains(Flags::SEEN),
        SearchKey::Old => !c.recent,
        SearchKey::Recent => c.recent,
        SearchKey::Keyword(kw, want) => {
            m.keywords.iter().any(|k| k.eq_ignore_ascii_case(kw)) == *want
        }
        SearchKey::Header(f, v) => match f.to_ascii_lowercase().as_str() {
            "from" if raw.is_none() => contains_ci(&m.from, v),
            "subject" if raw.is_none() => contains_ci(&m.subject, v),
            "to" if raw.is_none() => contains_ci(&m.to, v),
            _ => raw.is_some_and(|r| {
                let h = header_fields(&r[..body_start(r)], std::slice::from_ref(f), false);
                let text = String::from_utf8_lossy(&h);
                let value = text.split_once(':').map(|x| x.1).unwrap_or("");
                !h.is_empty() && h != b"\r\n" && contains_ci(value, v)
            }),
        },
        SearchKey::Body(s) => raw.is_some_and(|r| body_text(r).is_some_and(|t| contains_ci(&t, s))),
        SearchKey::Text(s) => raw.is_some_and(|r| {
            contains_ci(&String::from_utf8_lossy(&r[..body_start(r)]), s)
                || body_text(r).is_some_and(|t| contains_ci(&t, s))
        }),
        SearchKey::Larger(n) => m.size as u64 > *n,
        SearchKey::Smaller(n) => (m.size as u64) < *n,
        SearchKey::Before(d) => day(m.internal_date) < *d,
        SearchKey::On(d) => day(m.internal_date) == *d,
        SearchKey::Since(d) => day(m.internal_date) >= *d,
        SearchKey::SentBefore(d) => day(m.sent_date.unwrap_or(m.internal_date)) < *d,
        SearchKey::SentOn(d) => day(m.sent_date.unwrap_or(m.internal_date)) == *d,
        SearchKey::SentSince(d) => day(m.sent_date.unwrap_or(m.internal_date)) >= *d,
        SearchKey::Uid(set) => set.contains(m.uid as u32, c.max_uid),
        SearchKey::Seq(set) => set.contains(c.seq, c.max_seq),
        SearchKey::ModSeq(n) => m.modseq as u64 >= *n,
        SearchKey::Not(k) => !matches(k, m, raw, c),
        SearchKey::Or(a, b) => matches(a, m, raw, c) || matches(b, m, raw, c),
        SearchKey::And(v) => v.iter().all(|k| matches(k, m, raw, c)),
    }
}

/// The decoded text of the message's text parts, for BODY/TEXT search.
fn body_text(raw: &[u8]) -> Option<String> {
    let msg = MessageParser::default().parse(raw)?;
    let mut s = String::new();
    for i in 0..msg.text_body_count().max(1) {
        if let Some(t) = msg.body_text(i) {
            s.push_str(&t);
            s.push('\n');
        }
    }
    Some(s)
}

/// `1,2,3,5,7,8` -> `1:3,5,7:8` (sequence-set syntax for COPYUID, ESEARCH).
pub fn compress(nums: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            nums[i].to_string()
        } else {
            format!("{}:{}", nums[i], nums[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: \"Al Ice\" <alice@example.test>\r\nTo: bob@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello there\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n";

    #[test]
    fn envelope_keeps_raw_values_and_splits_addresses() {
        let msg = MessageParser::default().parse(MIXED).unwrap();
        let e = String::from_utf8(envelope(&msg)).unwrap();
        assert!(e.starts_with("(\"Sun, 29 Nov 2026 10:00:00 +0000\" \"=?utf-8?q?caf=C3=A9?=\" ((\"Al Ice\" NIL \"alice\" \"example.test\"))"), "{e}");
        assert!(e.ends_with("NIL NIL NIL \"<m1@example.test>\")"), "{e}");
    }

    #[test]
    fn bodystructure_of_mixed_with_attachment() {
        let msg = MessageParser::default().parse(MIXED).unwrap();
        let s = String::from_utf8(structure(&msg, MIXED, 0, true, 0)).unwrap();
        assert!(s.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)"), "{s}");
        assert!(s.contains("(\"APPLICATION\" \"PDF\" (\"NAME\" \"a.pdf\") NIL NIL \"BASE64\" 8 NIL (\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\")) NIL NIL)"), "{s}");
        assert!(
            s.ends_with(" \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"),
            "{s}"
        );
    }

    #[test]
    fn sections_cut_the_raw_bytes() {
        let msg = MessageParser::default().parse(MIXED).unwrap();
        let s = |part: Vec<u32>, text| section_bytes(MIXED, Some(&msg), &Section { part, text });
        assert_eq!(s(vec![1], SectionText::Full), b"hello there");
        assert_eq!(s(vec![2], SectionText::Full), b"JVBERi0=");
        assert!(s(vec![2], SectionText::Mime).starts_with(b"Content-Type: application/pdf"));
        assert_eq!(
            s(vec![], SectionText::HeaderFields(vec!["subject".into()])),
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
        );
        assert!(s(vec![3], SectionText::Full).is_empty());
    }

    #[test]
    fn sequence_sets_compress() {
        assert_eq!(compress(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compress(&[4]), "4");
    }
}
