//! FETCH data items (RFC 9051 §7.5.2) and SEARCH matching (§6.4.4), over
//! a message's stored summary and, when an item needs it, its raw bytes.
//! MIME structure comes from mail-parser; sections are cut from the raw
//! bytes at the offsets it reports, so BODY[1.2] returns exactly the bytes
//! that arrived.

use mail_parser::{Addr, Address, Message, MessageParser, MimeHeaders, PartType};
use mailcore::{Flags, Keyword, MessageSummary};

use super::proto::{Command, FetchItem, SearchKey, Section, SectionText, Tagged, format_date_time};

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

/// A message's flag list as FETCH FLAGS shows it (RFC 9051 §7.5.2):
/// system flags, `\Recent` for a rev1 session that has it, then keywords.
pub fn flags(m: &MessageSummary, recent: bool) -> String {
    let mut n = m.flags.names();
    if recent {
        n.push("\\Recent");
    }
    n.extend(m.keywords.iter().map(Keyword::as_str));
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
    if s.part.is_empty() {
        let b = body_start(raw);
        let (hdr, body) = (&raw[..b], &raw[b..]);
        return match &s.text {
            SectionText::Full => raw.to_vec(),
            SectionText::Header | SectionText::Mime => hdr.to_vec(),
            SectionText::Text => body.to_vec(),
            SectionText::HeaderFields(n) => header_fields(hdr, n, false),
            SectionText::HeaderFieldsNot(n) => header_fields(hdr, n, true),
        };
    }
    let Some(spot) = parsed.and_then(|msg| locate(raw, msg, &s.part)) else {
        return Vec::new();
    };
    let cut = |buf: &[u8], a: usize, b: usize| buf.get(a..b).unwrap_or(&[]).to_vec();
    // For a part, HEADER and TEXT look inside an encapsulated message
    // (RFC 9051 §6.4.5); a part that is not one has neither.
    let inner = spot.inner;
    match &s.text {
        SectionText::Full => cut(spot.buf, spot.body, spot.end),
        SectionText::Mime => cut(spot.buf, spot.header, spot.body),
        SectionText::Header => inner.map_or_else(Vec::new, |(b, h, d, _)| cut(b, h, d)),
        SectionText::Text => inner.map_or_else(Vec::new, |(b, _, d, e)| cut(b, d, e)),
        SectionText::HeaderFields(n) | SectionText::HeaderFieldsNot(n) => {
            let not = matches!(s.text, SectionText::HeaderFieldsNot(_));
            inner.map_or_else(Vec::new, |(b, h, d, _)| {
                header_fields(b.get(h..d).unwrap_or(&[]), n, not)
            })
        }
    }
}

/// Where a part of a FETCH section lives: the bytes it is cut from (the
/// message's own, or the decoded bytes of an encapsulated message that
/// had a transfer encoding) and the offsets of its header, body and end
/// in them. `inner` is the same for the message a message/rfc822 part
/// carries: its header and text.
struct Spot<'a> {
    buf: &'a [u8],
    header: usize,
    body: usize,
    end: usize,
    inner: Option<(&'a [u8], usize, usize, usize)>,
}

/// Follows a part path (RFC 9051 §6.4.5): numbers go through multipart
/// children and into message/rfc822 parts (`2.1.3`: part 3 of the
/// message that part 2.1 carries); a part that is neither has one
/// part, 1: itself.
fn locate<'a>(raw: &'a [u8], top: &'a Message<'a>, path: &[u32]) -> Option<Spot<'a>> {
    let mut buf: &'a [u8] = raw;
    let mut msg: &'a Message<'a> = top;
    let mut part = msg.parts.first()?;
    // Where the current message's bytes end in `buf`. mail-parser gives a
    // message's root part the end of the root's own content (a multipart
    // root stops at its closing boundary, before the epilogue), so a root
    // ends here instead. An encapsulated message shares the outer bytes
    // and offsets unless its part had a transfer encoding; then it has
    // its own decoded bytes.
    let mut limit = raw.len();
    let mut root = true;
    let end_of = |p: &mail_parser::MessagePart<'_>, root: bool, limit: usize| {
        if root {
            limit
        } else {
            (p.raw_end_offset() as usize).min(limit)
        }
    };
    let into = |m: &'a Message<'a>, buf: &'a [u8], carried_to: usize| {
        let own: &'a [u8] = m.raw_message.as_ref();
        if std::ptr::eq(own.as_ptr(), buf.as_ptr()) {
            (own, carried_to.min(own.len()))
        } else {
            (own, own.len())
        }
    };
    for (depth, &n) in path.iter().enumerate() {
        let index = (n as usize).checked_sub(1)?;
        if depth > 0
            && let PartType::Message(inner) = &part.body
        {
            // Into the encapsulated message: number n is a part of its body.
            (buf, limit) = into(inner, buf, end_of(part, root, limit));
            msg = inner;
            part = msg.parts.first()?;
            root = true;
        } else if depth > 0 && part.sub_parts().is_none() {
            return None;
        }
        match part.sub_parts() {
            Some(children) => {
                part = msg.parts.get(*children.get(index)? as usize)?;
                root = false;
            }
            // A single-part body: only 1 names it.
            None if index == 0 => {}
            None => return None,
        }
    }
    let (header, body) = (
        part.raw_header_offset() as usize,
        part.raw_body_offset() as usize,
    );
    let end = end_of(part, root, limit);
    // HEADER and TEXT of an encapsulated message; its text runs to the end
    // of the part that carries it, epilogue included.
    let inner = match &part.body {
        PartType::Message(m) => m.parts.first().map(|r| {
            let (b, text_end) = into(m, buf, end);
            (
                b,
                r.raw_header_offset() as usize,
                r.raw_body_offset() as usize,
                text_end,
            )
        }),
        _ => None,
    };
    Some(Spot {
        buf,
        header,
        body,
        end,
        inner,
    })
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
    // An obsolete source route (`<@relay:user@host>`, RFC 5322 §4.4) is
    // the address's at-domain-list, its second field (RFC 9051 §7.5.2).
    let (route, addr) = match addr.split_once(':') {
        Some((route, rest)) if route.starts_with('@') => (Some(route), rest),
        _ => (None, addr),
    };
    let (local, host) = addr.rsplit_once('@').unwrap_or((addr, ""));
    out.push(b'(');
    out.extend(display_name(name));
    out.push(b' ');
    out.extend(nstr_s(route));
    out.push(b' ');
    out.extend(nstr_s(Some(local)));
    out.push(b' ');
    // RFC 9051 §7.5.2: a NIL host marks a group, so an address that has
    // no domain gets an empty one.
    out.extend(nstr_s(Some(host)));
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
                // `group: (comment) ;` has no member: the comment alone is
                // not an address (Dovecot sends the group frame only).
                for x in g.addresses.iter().filter(|x| x.address.is_some()) {
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

/// The version of [`digest`]'s layout and rendering. Bump it whenever
/// ENVELOPE or BODYSTRUCTURE rendering changes: digests of another version
/// are not used (the message is parsed again), so a fix reaches messages
/// stored before it.
const DIGEST_VERSION: u8 = 1;

/// What FETCH keeps of a new message ([`mailcore::FetchDigest`]): its
/// ENVELOPE, BODYSTRUCTURE and BODY as they go on the wire, each with a
/// 4-byte length, after a version byte.
pub fn digest(raw: &[u8], msg: &Message<'_>) -> Vec<u8> {
    let fields = [
        envelope(msg),
        structure(msg, raw, 0, true, 0),
        structure(msg, raw, 0, false, 0),
    ];
    let mut out = Vec::with_capacity(1 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.push(DIGEST_VERSION);
    for f in &fields {
        // A field over 4 GiB cannot come from a message under the size limit.
        let n = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&f[..n as usize]);
    }
    out
}

/// A [`digest`] read back: ENVELOPE, BODYSTRUCTURE and BODY.
pub struct Digest<'a> {
    pub envelope: &'a [u8],
    pub body_structure: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Digest<'a> {
    /// None for another version or damaged bytes: the caller parses the
    /// message instead.
    pub fn read(b: &'a [u8]) -> Option<Digest<'a>> {
        let (&v, mut rest) = b.split_first()?;
        if v != DIGEST_VERSION {
            return None;
        }
        let mut field = || -> Option<&'a [u8]> {
            let (n, tail) = rest.split_first_chunk::<4>()?;
            let n = u32::from_be_bytes(*n) as usize;
            let (f, tail) = (tail.get(..n)?, tail.get(n..)?);
            rest = tail;
            Some(f)
        };
        Some(Digest {
            envelope: field()?,
            body_structure: field()?,
            body: field()?,
        })
    }

    /// The item as FETCH sends it, for the items a digest answers.
    pub fn render(&self, item: &FetchItem) -> Option<Vec<u8>> {
        let (name, v): (&[u8], &[u8]) = match item {
            FetchItem::Envelope => (b"ENVELOPE ", self.envelope),
            FetchItem::BodyStructure => (b"BODYSTRUCTURE ", self.body_structure),
            FetchItem::Body => (b"BODY ", self.body),
            _ => return None,
        };
        Some([name, v].concat())
    }
}

/// True for the items a [`Digest`] answers.
pub fn in_digest(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Envelope | FetchItem::BodyStructure | FetchItem::Body
    )
}

/// True for the items the message's header alone answers: RFC822.HEADER
/// and the top-level HEADER sections.
pub fn in_header(item: &FetchItem) -> bool {
    match item {
        FetchItem::Rfc822Header => true,
        FetchItem::BodySection { section, .. } => {
            section.part.is_empty()
                && matches!(
                    section.text,
                    SectionText::Header
                        | SectionText::HeaderFields(_)
                        | SectionText::HeaderFieldsNot(_)
                )
        }
        _ => false,
    }
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
        FetchItem::Flags => format!("FLAGS {}", flags(m, recent)).into_bytes(),
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

/// How much of a message a SEARCH key needs beyond its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Row,
    /// The header: address keys, HEADER, the SENT* dates.
    Header,
    /// The whole message: BODY and TEXT.
    Whole,
}

pub fn search_need(k: &SearchKey) -> Need {
    match k {
        SearchKey::Body(_) | SearchKey::Text(_) => Need::Whole,
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => Need::Header,
        // SUBJECT is decoded in the row; everything else is in the header.
        // The row's subject cannot tell an empty Subject: from none, and
        // HEADER SUBJECT "" asks exactly that.
        SearchKey::Header(f, v) if !f.eq_ignore_ascii_case("subject") || v.is_empty() => {
            Need::Header
        }
        SearchKey::Not(k) => search_need(k),
        SearchKey::Or(a, b) => search_need(a).max(search_need(b)),
        SearchKey::And(v) => v.iter().map(search_need).max().unwrap_or(Need::Row),
        _ => Need::Row,
    }
}

/// The BODY strings of a key, for the full-text index.
pub fn body_strings(k: &SearchKey) -> Vec<&str> {
    match k {
        SearchKey::Body(s) => vec![s.as_str()],
        SearchKey::Not(k) => body_strings(k),
        SearchKey::Or(a, b) => [body_strings(a), body_strings(b)].concat(),
        SearchKey::And(v) => v.iter().flat_map(body_strings).collect(),
        _ => Vec::new(),
    }
}

/// The words a text containing `s` must have at the start of a word
/// (lower case): those `s` itself has after a non-alphanumeric character.
/// The first word of `s` may sit inside a word of the text (`eautiful`
/// is in `beautiful`), so it is no help to an index of word starts, and
/// RFC 9051 §6.4.4 asks for substrings.
pub fn word_starts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_separator = false;
    let mut word = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() {
            word.push(c);
            continue;
        }
        if after_separator && !word.is_empty() {
            out.push(word.to_lowercase());
        }
        word.clear();
        after_separator = true;
    }
    if after_separator && !word.is_empty() {
        out.push(word.to_lowercase());
    }
    out
}

/// A SEARCH key decided from the row alone, where it can be: Some(answer),
/// or None when the message's bytes must be read. `possible` maps a BODY
/// string to the UIDs the full-text index says may contain it; any other
/// message does not.
pub fn decide(
    k: &SearchKey,
    m: &MessageSummary,
    c: &SearchCtx,
    possible: &std::collections::HashMap<String, std::collections::HashSet<mailcore::Uid>>,
) -> Option<bool> {
    match k {
        SearchKey::Body(s) => match possible.get(s) {
            Some(uids) if !uids.contains(&m.uid) => Some(false),
            _ => None,
        },
        SearchKey::Not(k) => decide(k, m, c, possible).map(|b| !b),
        SearchKey::Or(a, b) => match (decide(a, m, c, possible), decide(b, m, c, possible)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        SearchKey::And(v) => {
            let mut all = Some(true);
            for k in v {
                match decide(k, m, c, possible) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => all = None,
                }
            }
            all
        }
        k if search_need(k) == Need::Row => Some(matches(k, m, None, c)),
        _ => None,
    }
}

/// True when a MODSEQ criterion appears anywhere in the key.
pub fn uses_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(v) => v.iter().any(uses_modseq),
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
        SearchKey::Keyword(kw, want) => m.keywords.iter().any(|k| k.same(kw)) == *want,
        SearchKey::Header(f, v) => match f.to_ascii_lowercase().as_str() {
            "subject" if raw.is_none() => contains_ci(&m.subject, v),
            field => raw.is_some_and(|r| {
                let h = header_fields(&r[..body_start(r)], std::slice::from_ref(f), false);
                if h.is_empty() || h == b"\r\n" {
                    // No such field: even an empty string does not match
                    // (RFC 9051 §6.4.4 HEADER).
                    return false;
                }
                let text = String::from_utf8_lossy(&h);
                let value = text.split_once(':').map(|x| x.1).unwrap_or("");
                contains_ci(value, v)
                    || address_text(r, field).is_some_and(|t| contains_ci(&t, v))
                    || (field == "subject" && contains_ci(&m.subject, v))
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
        SearchKey::SentBefore(d) => sent_day(m, raw) < *d,
        SearchKey::SentOn(d) => sent_day(m, raw) == *d,
        SearchKey::SentSince(d) => sent_day(m, raw) >= *d,
        SearchKey::Uid(set) => set.contains(m.uid.get() as u32, c.max_uid),
        SearchKey::Seq(set) => set.contains(c.seq, c.max_seq),
        SearchKey::ModSeq(n) => m.modseq.get() as u64 >= *n,
        SearchKey::Not(k) => !matches(k, m, raw, c),
        SearchKey::Or(a, b) => matches(a, m, raw, c) || matches(b, m, raw, c),
        SearchKey::And(v) => v.iter().all(|k| matches(k, m, raw, c)),
    }
}

/// The calendar day the Date: header names, in its own time zone (RFC
/// 9051 §6.4.4: SENT* keys disregard time and time zone, so 23:30 -0500
/// on the 30th is the 30th, not the 1st in UTC); the internal date's UTC
/// day for a message without a usable Date:.
fn sent_day(m: &MessageSummary, raw: Option<&[u8]>) -> i64 {
    raw.and_then(|r| MessageParser::default().parse_headers(r))
        .and_then(|msg| msg.date().map(|d| d.to_timestamp_local()))
        .unwrap_or(m.sent_date.unwrap_or(m.internal_date))
        .div_euclid(86400)
}

/// An address field as SEARCH FROM/TO/CC/BCC sees it (RFC 9051 §6.4.4:
/// the envelope's field): every address as `Name <local@domain>`, with
/// encoded words decoded and group names kept, so a display name, a
/// local part or a domain all match.
fn address_text(raw: &[u8], field: &str) -> Option<String> {
    let msg = MessageParser::default().parse_headers(raw)?;
    let a = match field {
        "from" => msg.from(),
        "to" => msg.to(),
        "cc" => msg.cc(),
        "bcc" => msg.bcc(),
        "reply-to" => msg.reply_to(),
        "sender" => msg.sender(),
        _ => None,
    }?;
    let mut out = String::new();
    let push = |x: &Addr<'_>, out: &mut String| {
        if let Some(n) = &x.name {
            out.push_str(n);
            out.push(' ');
        }
        if let Some(a) = &x.address {
            out.push('<');
            out.push_str(a);
            out.push('>');
        }
        out.push_str(", ");
    };
    match a {
        Address::List(list) => list.iter().for_each(|x| push(x, &mut out)),
        Address::Group(groups) => {
            for g in groups {
                if let Some(n) = &g.name {
                    out.push_str(n);
                    out.push_str(": ");
                }
                g.addresses.iter().for_each(|x| push(x, &mut out));
                out.push_str("; ");
            }
        }
    }
    Some(out)
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

/// Every kind of FETCH data item a client can ask for, rendered from
/// `raw` as a message of its own: the entry point of the `imap_fetch`
/// fuzz target and of the hostile-MIME corpus test. Returns the bytes
/// written, so a caller can bound them.
pub fn render_every_item(raw: &[u8]) -> usize {
    const ITEMS: &[u8] =
        b"f FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY \
BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] \
BODY.PEEK[1.1] BODY.PEEK[1.2.HEADER] BODY.PEEK[2.1.TEXT] BODY.PEEK[3.2.1.MIME] \
BODY.PEEK[1.HEADER.FIELDS (From Subject)] BODY.PEEK[HEADER.FIELDS.NOT (To)] \
BODY.PEEK[1]<0.10> BODY.PEEK[]<5.1000000> RFC822.HEADER RFC822.TEXT)";
    let Ok(Tagged {
        cmd: Command::Fetch { items, .. },
        ..
    }) = crate::imap::proto::parse_command(ITEMS)
    else {
        unreachable!("the item list above parses");
    };
    let summary = MessageSummary::unstored(raw.len() as i64, Flags::SEEN);
    let mime = parse(raw);
    items
        .iter()
        .map(|it| render(it, &summary, Some(raw), mime.as_ref(), false).len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile MIME through every FETCH item (the bounded form of the
    /// `imap_fetch` fuzz target): no panic, and the output stays within a
    /// small multiple of the input (a response is never a blow-up of it).
    #[test]
    fn hostile_mime_renders_bounded() {
        let mut corpus: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n".to_vec(),
            b"Subject: no body".to_vec(),
            b"Content-Type: multipart/mixed\r\n\r\nno boundary".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n".to_vec(),
            b"Content-Type: message/rfc822\r\n\r\n".to_vec(),
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!".to_vec(),
            b"From: =?utf-8?B?////?= <@>\r\nTo: group:;, \"\\\" <a@>\r\nSubject: =?x?Q?=ZZ?=\r\n\r\nx".to_vec(),
            b"Content-Type: text/plain; charset=\"\r\n\r\n\xff\xfe\x00".to_vec(),
        ];
        // Deep nesting: multiparts and encapsulated messages a thousand
        // levels down.
        let mut deep = String::from("x\r\n");
        for i in 0..1000 {
            deep = format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n{deep}\r\n--b{i}--\r\n"
            );
        }
        corpus.push(deep.into_bytes());
        let mut rfc822 = String::from("Subject: inner\r\n\r\nx");
        for _ in 0..1000 {
            rfc822 = format!("Content-Type: message/rfc822\r\n\r\n{rfc822}");
        }
        corpus.push(rfc822.into_bytes());
        // Many parts, and a header line of a megabyte.
        let mut wide = String::from("Content-Type: multipart/mixed; boundary=w\r\n\r\n");
        for _ in 0..5000 {
            wide.push_str("--w\r\nContent-Type: text/plain\r\n\r\ny\r\n");
        }
        wide.push_str("--w--\r\n");
        corpus.push(wide.into_bytes());
        corpus.push(format!("Subject: {}\r\n\r\nz", "a".repeat(1 << 20)).into_bytes());
        for raw in &corpus {
            let out = render_every_item(raw);
            assert!(
                out <= 64 * raw.len() + 64 * 1024,
                "{} bytes of input gave {out} bytes of FETCH data",
                raw.len()
            );
        }
    }

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

    /// A message inside a message inside a message, and one sent base64.
    const NESTED: &[u8] = b"From: a@x.example\r\nSubject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nouter text\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@y.example\r\nSubject: middle\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nmiddle text\r\n--m\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@z.example\r\nSubject: inner\r\n\r\ninner text\r\n--m--\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogZW5jDQoNCmVuY29kZWQgYm9keQ0K\r\n--o--\r\n";

    /// BODY[1.TEXT] of a forwarded multipart message runs to the end of
    /// the message, epilogue included, not to its closing boundary.
    #[test]
    fn encapsulated_text_keeps_the_epilogue() {
        const FWD: &[u8] = b"From: a@x.example\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@y.example\r\nContent-Type: multipart/digest; boundary=\"d\"\r\n\r\npreamble\r\n--d\r\n\r\nSubject: one\r\n\r\n1\r\n--d--\r\n\r\nepilogue\r\n";
        let msg = MessageParser::default().parse(FWD).unwrap();
        let text = section_bytes(
            FWD,
            Some(&msg),
            &Section {
                part: vec![1],
                text: SectionText::Text,
            },
        );
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "preamble\r\n--d\r\n\r\nSubject: one\r\n\r\n1\r\n--d--\r\n\r\nepilogue\r\n"
        );
    }

    #[test]
    fn sections_inside_encapsulated_messages() {
        let msg = MessageParser::default().parse(NESTED).unwrap();
        let s = |part: Vec<u32>, text| {
            String::from_utf8(section_bytes(NESTED, Some(&msg), &Section { part, text })).unwrap()
        };
        assert_eq!(s(vec![1], SectionText::Full), "outer text");
        assert!(s(vec![2], SectionText::Full).starts_with("From: b@y.example\r\nSubject: middle"));
        assert_eq!(
            s(vec![2], SectionText::Mime),
            "Content-Type: message/rfc822\r\n\r\n"
        );
        let h = s(vec![2], SectionText::Header);
        assert!(
            h.starts_with("From: b@y.example\r\n") && h.ends_with("boundary=\"m\"\r\n\r\n"),
            "{h:?}"
        );
        assert!(s(vec![2], SectionText::Text).starts_with("--m\r\n"));
        assert_eq!(s(vec![2, 1], SectionText::Full), "middle text");
        assert_eq!(
            s(vec![2, 2], SectionText::Header),
            "From: c@z.example\r\nSubject: inner\r\n\r\n"
        );
        assert_eq!(s(vec![2, 2], SectionText::Text), "inner text");
        assert_eq!(s(vec![2, 2, 1], SectionText::Full), "inner text");
        assert_eq!(
            s(
                vec![2, 2],
                SectionText::HeaderFields(vec!["SUBJECT".into()])
            ),
            "Subject: inner\r\n\r\n"
        );
        // Base64 on the outside: HEADER and TEXT come from the decoded bytes.
        assert_eq!(s(vec![3], SectionText::Header), "Subject: enc\r\n\r\n");
        assert_eq!(s(vec![3], SectionText::Text), "encoded body\r\n");
        assert_eq!(s(vec![3, 1], SectionText::Full), "encoded body\r\n");
        // Parts that are not there, and HEADER of a part that is no message.
        assert_eq!(s(vec![2, 3], SectionText::Full), "");
        assert_eq!(s(vec![1, 1, 1], SectionText::Full), "");
        assert_eq!(s(vec![1], SectionText::Header), "");
        assert_eq!(s(vec![0], SectionText::Full), "");
    }

    #[test]
    fn envelope_of_groups_and_addresses_without_a_domain() {
        let raw = b"From: localonly\r\nTo: Team: ann@t.example, bo@t.example;, solo@s.example\r\nCc: undisclosed-recipients:;\r\nBcc: g2: (only a comment) ;\r\nSubject: g\r\n\r\nx\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        let e = String::from_utf8(envelope(&msg)).unwrap();
        // A missing domain is "", never NIL: NIL there marks a group.
        assert!(!e.contains("\"localonly\" NIL)"), "not a group: {e}");
        assert!(e.contains("((NIL NIL \"Team\" NIL)(NIL NIL \"ann\" \"t.example\")(NIL NIL \"bo\" \"t.example\")(NIL NIL NIL NIL)(NIL NIL \"solo\" \"s.example\"))"), "{e}");
        assert!(
            e.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"),
            "{e}"
        );
        let routed = MessageParser::default()
            .parse(&b"From: <@relay.example:u@h.example>\r\n\r\nx"[..])
            .unwrap();
        let e2 = String::from_utf8(envelope(&routed)).unwrap();
        assert!(
            e2.contains("((NIL \"@relay.example\" \"u\" \"h.example\"))"),
            "{e2}"
        );
        // A comment in an empty group is not a member.
        assert!(e.contains("((NIL NIL \"g2\" NIL)(NIL NIL NIL NIL))"), "{e}");
    }

    /// A digest reads back as the items it was made from; one of another
    /// version, or cut short, is not used (the message is parsed instead).
    #[test]
    fn digests_read_back_or_not_at_all() {
        let raw = b"From: a@x.example\r\nSubject: d\r\n\r\nbody\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        let d = digest(raw, &msg);
        let got = Digest::read(&d).unwrap();
        assert_eq!(got.envelope, envelope(&msg).as_slice());
        assert_eq!(
            got.render(&FetchItem::BodyStructure).unwrap(),
            [
                b"BODYSTRUCTURE ".as_slice(),
                &structure(&msg, raw, 0, true, 0)
            ]
            .concat()
        );
        assert_eq!(
            got.render(&FetchItem::Body).unwrap(),
            [b"BODY ".as_slice(), &structure(&msg, raw, 0, false, 0)].concat()
        );
        assert!(got.render(&FetchItem::Rfc822Size).is_none());
        let mut old = d.clone();
        old[0] = DIGEST_VERSION.wrapping_sub(1);
        assert!(Digest::read(&old).is_none());
        assert!(Digest::read(&d[..d.len() - 1]).is_none());
        assert!(Digest::read(&[]).is_none());
    }

    #[test]
    fn word_starts_leave_out_the_first_word() {
        assert_eq!(word_starts("Hello beautiful World"), ["beautiful", "world"]);
        assert_eq!(word_starts("eautiful worl"), ["worl"]);
        assert!(word_starts("invoice").is_empty());
        assert_eq!(word_starts(" x"), ["x"]);
        assert_eq!(word_starts("a-b.c "), ["b", "c"]);
    }

    #[test]
    fn sequence_sets_compress() {
        assert_eq!(compress(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compress(&[4]), "4");
    }
}
