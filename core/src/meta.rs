//! The fields a message list needs, taken once at delivery so that no
//! listing has to parse MIME (DESIGN.md, "Store").

use mail_parser::{Address as MpAddress, HeaderValue, MessageParser};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// `Name <addr>` or the bare address of the first From.
    pub from: String,
    /// The To addresses, comma separated.
    pub to: String,
    pub subject: String,
    pub sent_date: Option<i64>,
    /// Message-ID without angle brackets.
    pub message_id: String,
    pub in_reply_to: String,
    pub references: Vec<String>,
    pub snippet: String,
    pub has_attachments: bool,
    /// The text of the body parts (HTML as text), for the search index
    /// only; not stored in the message row.
    pub search_text: String,
    /// `search_text` holds the whole body text, and every word of it is
    /// short enough to be indexed ([`crate::search::words`]).
    pub search_complete: bool,
    /// Where the body starts in the bytes, when they parse.
    pub header_len: Option<i64>,
    /// What the IMAP server made of the parsed message
    /// ([`crate::FetchDigest`]), kept with the blob.
    pub fetch_cache: Option<Vec<u8>>,
}

const SNIPPET_CHARS: usize = 200;
/// Bodies are indexed up to this much text; the rest of a long message
/// is rarely what anyone searches for.
const SEARCH_TEXT_BYTES: usize = 64 * 1024;
/// Columns are plain strings; cap them so a hostile header cannot bloat
/// every listing.
const FIELD_CHARS: usize = 998;

fn cap(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

fn first_addr(a: Option<&MpAddress>) -> String {
    let Some(first) = a.and_then(|a| a.first()) else {
        return String::new();
    };
    match (first.name(), first.address()) {
        (Some(n), Some(a)) if !n.is_empty() => format!("{n} <{a}>"),
        (_, Some(a)) => a.to_owned(),
        (Some(n), None) => n.to_owned(),
        (None, None) => String::new(),
    }
}

fn all_addrs(a: Option<&MpAddress>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .filter_map(|x| x.address())
        .collect::<Vec<_>>()
        .join(", ")
}

fn id_list(v: &HeaderValue) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

impl MessageMeta {
    /// Never fails: a message that does not parse still gets stored, with
    /// empty fields, because refusing it would lose mail.
    pub fn extract(raw: &[u8]) -> MessageMeta {
        Self::extract_with(raw, None)
    }

    /// [`MessageMeta::extract`], and the FETCH digest made from the same
    /// parse (one MIME parse per delivered message, not two).
    pub fn extract_with(raw: &[u8], digest: Option<crate::FetchDigest>) -> MessageMeta {
        let Some(msg) = MessageParser::default().parse(raw) else {
            return MessageMeta::default();
        };
        let header_len =
            Some(i64::from(msg.root_part().raw_body_offset())).filter(|&n| n as usize <= raw.len());
        let fetch_cache = digest.map(|f| f(raw, &msg));
        let snippet = msg
            .body_text(0)
            .map(|t| {
                let text: String = t
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('>'))
                    .collect::<Vec<_>>()
                    .join(" ");
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .unwrap_or_default();
        let mut search_text = String::new();
        let mut search_complete = true;
        for i in 0.. {
            let Some(t) = msg.body_text(i) else { break };
            for c in t.chars() {
                if search_text.len() >= SEARCH_TEXT_BYTES {
                    search_complete = false;
                    break;
                }
                search_text.push(c);
            }
            search_text.push('\n');
            if search_text.len() >= SEARCH_TEXT_BYTES {
                search_complete = false;
                break;
            }
        }
        search_complete &= crate::search::all_indexable(&search_text);
        let mut references = id_list(msg.references());
        references.truncate(50);
        MessageMeta {
            from: cap(&first_addr(msg.from()), FIELD_CHARS),
            to: cap(&all_addrs(msg.to()), FIELD_CHARS),
            subject: cap(msg.subject().unwrap_or_default(), FIELD_CHARS),
            sent_date: msg.date().map(|d| d.to_timestamp()),
            message_id: cap(msg.message_id().unwrap_or_default(), FIELD_CHARS),
            in_reply_to: id_list(msg.in_reply_to())
                .into_iter()
                .next()
                .map(|s| cap(&s, FIELD_CHARS))
                .unwrap_or_default(),
            references,
            snippet: cap(&snippet, SNIPPET_CHARS),
            has_attachments: msg.attachment_count() > 0,
            search_text,
            search_complete,
            header_len,
            fetch_cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_list_fields() {
        let raw = b"From: Alice Example <alice@example.org>\r\n\
To: bob@example.net, carol@example.net\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= plans\r\n\
Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m1@example.org>\r\n\
In-Reply-To: <m0@example.org>\r\n\
References: <r1@example.org> <m0@example.org>\r\n\
\r\n\
> quoted line\r\n\
Hello   there,\r\nsee you.\r\n";
        let m = MessageMeta::extract(raw);
        assert_eq!(m.from, "Alice Example <alice@example.org>");
        assert_eq!(m.to, "bob@example.net, carol@example.net");
        assert_eq!(m.subject, "Café plans");
        assert_eq!(m.sent_date, Some(1_795_946_400));
        assert_eq!(m.message_id, "m1@example.org");
        assert_eq!(m.in_reply_to, "m0@example.org");
        assert_eq!(m.references, vec!["r1@example.org", "m0@example.org"]);
        assert_eq!(m.snippet, "Hello there, see you.");
        assert!(!m.has_attachments);
    }

    #[test]
    fn garbage_still_yields_meta() {
        let m = MessageMeta::extract(b"\xff\xfe not a message");
        assert!(m.subject.is_empty());
    }
}
