//! The MIME view of one message, for the webmail: headers as text, the
//! plain-text body, the raw HTML body (the web layer sanitises it; the core
//! knows no HTML) and the attachments with their sizes.

use crate::ids::{AccountId, MailboxId, Uid};
use mail_parser::{Address as MpAddress, MessageParser, MimeHeaders, PartType};

use crate::Core;
use crate::error::{CoreError, CoreResult};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Position among the message's attachments, as used for download.
    pub index: u32,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageView {
    pub from: String,
    /// Bare addresses, for reply-all.
    pub from_addrs: Vec<String>,
    pub to: String,
    pub to_addrs: Vec<String>,
    pub cc: String,
    pub cc_addrs: Vec<String>,
    pub reply_to_addrs: Vec<String>,
    /// Only drafts keep a Bcc header; sent mail never has one.
    pub bcc_addrs: Vec<String>,
    pub subject: String,
    pub date: Option<i64>,
    pub message_id: String,
    pub references: Vec<String>,
    /// The text/plain part, or the HTML part turned into text when there is
    /// no plain part (for quoting in replies).
    pub text: String,
    /// True when `text` came from a real text/plain part.
    pub has_text_part: bool,
    /// The first text/html part, unsanitised.
    pub html: Option<String>,
    /// The first [`MAX_LISTED_ATTACHMENTS`] attachments; a hostile message
    /// with 100,000 parts must not make a 26 MB page.
    pub attachments: Vec<AttachmentInfo>,
    /// How many attachments the message has in all.
    pub attachment_count: usize,
    /// Every `Authentication-Results:` value, topmost first (RFC 8601).
    pub auth_results: Vec<String>,
}

/// How many attachments a page lists; the rest are counted.
pub const MAX_LISTED_ATTACHMENTS: usize = 200;

fn display(a: Option<&MpAddress>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(addr)) if !n.is_empty() => format!("{n} <{addr}>"),
            (_, Some(addr)) => addr.to_owned(),
            (Some(n), None) => n.to_owned(),
            _ => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn addrs(a: Option<&MpAddress>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn ids(v: &mail_parser::HeaderValue) -> Vec<String> {
    match v {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn content_type(p: &mail_parser::MessagePart) -> String {
    p.content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase()
}

/// One attachment's bytes and how to label them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentData {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl MessageView {
    /// Never fails: an unparsable message shows as its raw text.
    pub fn parse(raw: &[u8]) -> MessageView {
        let Some(msg) = MessageParser::default().parse(raw) else {
            return MessageView {
                text: String::from_utf8_lossy(raw).into_owned(),
                has_text_part: true,
                ..Default::default()
            };
        };
        let plain = msg.text_part(0).and_then(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        });
        let html = msg.html_part(0).and_then(|p| match &p.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        });
        let has_text_part = plain.is_some();
        // Lines end in LF for display and quoting; CRLF is a wire detail.
        let text = plain
            .or_else(|| msg.body_text(0).map(|t| t.into_owned()))
            .unwrap_or_default()
            .replace("\r\n", "\n");
        let attachment_count = msg.attachment_count();
        let attachments = msg
            .attachments()
            .take(MAX_LISTED_ATTACHMENTS)
            .enumerate()
            .map(|(i, p)| AttachmentInfo {
                index: i as u32,
                filename: p
                    .attachment_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("attachment-{}", i + 1)),
                content_type: content_type(p),
                size: p.contents().len() as u64,
            })
            .collect();
        MessageView {
            from: display(msg.from()),
            from_addrs: addrs(msg.from()),
            to: display(msg.to()),
            to_addrs: addrs(msg.to()),
            cc: display(msg.cc()),
            cc_addrs: addrs(msg.cc()),
            reply_to_addrs: addrs(msg.reply_to()),
            bcc_addrs: addrs(msg.bcc()),
            subject: msg.subject().unwrap_or_default().to_owned(),
            date: msg.date().map(|d| d.to_timestamp()),
            message_id: msg.message_id().unwrap_or_default().to_owned(),
            references: ids(msg.references()),
            text,
            has_text_part,
            html,
            attachments,
            attachment_count,
            auth_results: msg
                .headers()
                .iter()
                .filter(|h| {
                    h.name
                        .as_str()
                        .eq_ignore_ascii_case("Authentication-Results")
                })
                .filter_map(|h| h.value.as_text().map(str::to_owned))
                .collect(),
        }
    }

    /// Whether this host's sender checks vouched for the `From:` address:
    /// Some(true) when its `Authentication-Results:` (authserv-id
    /// `hostname`) says DMARC passed, or DKIM or SPF passed for the From
    /// domain (or a parent of it); Some(false) when it checked and nothing
    /// did; None when it did not check (mail from local users, or older
    /// mail). Only the header this host writes counts: one from elsewhere
    /// says nothing (the server removes forged ones in its own name).
    pub fn sender_verified(&self, hostname: &str) -> Option<bool> {
        let ours = self.auth_results.iter().find(|v| {
            v.trim_start()
                .split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .is_some_and(|id| id.eq_ignore_ascii_case(hostname))
        })?;
        let from_domain = self
            .from_addrs
            .first()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())?;
        let aligned = |d: &str| {
            let d = d
                .trim_matches(|c| c == '"' || c == '<' || c == '>')
                .to_ascii_lowercase();
            let d = d.rsplit_once('@').map_or(d.as_str(), |(_, x)| x);
            crate::address::domain_aligned(d, &from_domain)
        };
        let verified = ours.split(';').skip(1).any(|result| {
            let mut words = result.split_whitespace();
            let Some((method, outcome)) = words.next().and_then(|w| w.split_once('=')) else {
                return false;
            };
            if !outcome.eq_ignore_ascii_case("pass") {
                return false;
            }
            let props: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
            match method.to_ascii_lowercase().as_str() {
                "dmarc" => true,
                "dkim" => props
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("header.d") && aligned(v)),
                "spf" => props
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("smtp.mailfrom") && aligned(v)),
                _ => false,
            }
        });
        Some(verified)
    }

    /// Every attachment of a message with its bytes, in order (what a
    /// forward or a reopened draft carries along), from one parse.
    pub fn all_attachments(raw: &[u8]) -> Vec<AttachmentData> {
        let Some(msg) = MessageParser::default().parse(raw) else {
            return Vec::new();
        };
        (0..msg.attachment_count() as u32)
            .filter_map(|i| attachment_of(&msg, i))
            .collect()
    }

    /// The bytes of attachment `index` (decoded from its transfer encoding).
    pub fn attachment(raw: &[u8], index: u32) -> Option<AttachmentData> {
        attachment_of(&MessageParser::default().parse(raw)?, index)
    }
}

fn attachment_of(msg: &mail_parser::Message, index: u32) -> Option<AttachmentData> {
    let p = msg.attachment(index)?;
    let bytes = match &p.body {
        // A forwarded message as an attachment: its original bytes.
        PartType::Message(m) => m.raw_message().to_vec(),
        _ => p.contents().to_vec(),
    };
    Some(AttachmentData {
        filename: p
            .attachment_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("attachment-{}", index + 1)),
        content_type: content_type(p),
        bytes,
    })
}

impl Core {
    pub(crate) async fn message_view(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uid: Uid,
    ) -> CoreResult<MessageView> {
        let raw = self.message_raw(account_id, mailbox_id, uid).await?;
        Ok(MessageView::parse(&raw))
    }

    pub(crate) async fn message_attachment(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        uid: Uid,
        index: u32,
    ) -> CoreResult<AttachmentData> {
        let raw = self.message_raw(account_id, mailbox_id, uid).await?;
        MessageView::attachment(&raw, index)
            .ok_or_else(|| CoreError::NotFound(format!("attachment {index}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_hosts_results_vouch_for_the_from_domain() {
        let view = |headers: &str| {
            MessageView::parse(
                format!("{headers}From: Ann <ann@news.example>\r\nSubject: x\r\n\r\nbody\r\n")
                    .as_bytes(),
            )
        };
        let v = view(
            "Authentication-Results: mx.tern.test;\r\n\tdkim=pass header.d=news.example header.s=s1;\r\n\tspf=fail smtp.mailfrom=x@other.example;\r\n\tdmarc=pass header.from=news.example\r\n",
        );
        assert_eq!(v.sender_verified("mx.tern.test"), Some(true));
        assert_eq!(v.sender_verified("MX.Tern.Test"), Some(true));
        assert_eq!(v.sender_verified("other.host"), None, "not our header");
        // DKIM by another domain, SPF for another: nothing vouches.
        let v = view(
            "Authentication-Results: mx.tern.test; dkim=pass header.d=evil.example; spf=pass smtp.mailfrom=a@evil.example; dmarc=fail header.from=news.example\r\n",
        );
        assert_eq!(v.sender_verified("mx.tern.test"), Some(false));
        // SPF for a subdomain of the From domain is aligned (relaxed).
        let v = view(
            "Authentication-Results: mx.tern.test; spf=pass smtp.mailfrom=\"b@mail.news.example\"\r\n",
        );
        assert_eq!(v.sender_verified("mx.tern.test"), Some(true));
        // A forged pass further down, from elsewhere, changes nothing.
        let v = view(
            "Authentication-Results: mx.tern.test; dmarc=fail header.from=news.example\r\nAuthentication-Results: mx.tern.test.evil; dmarc=pass\r\n",
        );
        assert_eq!(v.sender_verified("mx.tern.test"), Some(false));
        assert_eq!(
            view("").sender_verified("mx.tern.test"),
            None,
            "not checked"
        );
    }

    use super::*;

    const MIXED: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.test, Carol <carol@example.test>\r\n\
Cc: dave@example.test\r\n\
Subject: Report\r\n\
Message-ID: <r1@example.org>\r\n\
References: <r0@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=b2\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Plain body\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>HTML body</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"q3.pdf\"\r\n\
Content-Disposition: attachment; filename=\"q3.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn view_of_a_mixed_message() {
        let v = MessageView::parse(MIXED);
        assert_eq!(v.from, "Alice <alice@example.org>");
        assert_eq!(v.to_addrs, ["bob@example.test", "carol@example.test"]);
        assert_eq!(v.cc_addrs, ["dave@example.test"]);
        assert_eq!(v.text.trim_end(), "Plain body");
        assert!(v.has_text_part);
        assert_eq!(
            v.html.as_deref().map(str::trim_end),
            Some("<p>HTML body</p>")
        );
        assert_eq!(v.references, ["r0@example.org"]);
        assert_eq!(
            v.attachments,
            [AttachmentInfo {
                index: 0,
                filename: "q3.pdf".into(),
                content_type: "application/pdf".into(),
                size: 9
            }]
        );
        let a = MessageView::attachment(MIXED, 0).unwrap();
        assert_eq!(a.bytes, b"%PDF-1.4\n");
        assert!(MessageView::attachment(MIXED, 1).is_none());
    }
}

/// A file name that is safe to put in a header or hand to a browser: no
/// path (`../`, `/`, `\`), no NUL, CR, LF or other control characters, no
/// bidirectional overrides (RTLO turns `exe.pdf` into `fdp.exe`), no
/// leading dots, at most 200 characters. Never empty.
pub fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    c,
                    '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                )
        })
        .map(|c| {
            if matches!(c, '"' | ':' | '*' | '?' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .take(200)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    if trimmed.is_empty() {
        "attachment".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod many_parts_tests {
    use super::*;

    /// A hostile message with thousands of parts lists the first 200
    /// attachments and counts the rest, so its page stays small.
    #[test]
    fn attachments_are_capped_and_counted() {
        let mut raw = String::from(
            "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n",
        );
        for i in 0..2500 {
            raw.push_str(&format!(
                "--b\r\nContent-Type: application/octet-stream\r\n\
                 Content-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\nx\r\n"
            ));
        }
        raw.push_str("--b--\r\n");
        let v = MessageView::parse(raw.as_bytes());
        assert_eq!(v.attachment_count, 2500);
        assert_eq!(v.attachments.len(), MAX_LISTED_ATTACHMENTS);
        assert_eq!(v.attachments[0].filename, "f0.bin");
        assert_eq!(v.attachments[199].filename, "f199.bin");
        assert_eq!(v.text.trim_end(), "hello");
    }
}

#[cfg(test)]
mod filename_tests {
    use super::safe_filename;

    #[test]
    fn hostile_names_are_defused() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(
            safe_filename("a\r\nContent-Type: text\0.txt"),
            "aContent-Type_ text.txt"
        );
        assert_eq!(safe_filename("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(safe_filename("..."), "attachment");
        assert_eq!(safe_filename("résumé \"final\".pdf"), "résumé _final_.pdf");
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, for message lists and headers.
/// A reader's time zone as an offset from UTC (the browser's, or the one
/// set in the webmail's settings): how dates are shown, and how a date and
/// time typed into a form is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    pub offset_min: i32,
}

impl Zone {
    pub const UTC: Zone = Zone { offset_min: 0 };

    /// UTC-12:00 to UTC+14:00, the offsets in use.
    pub fn from_offset(offset_min: i32) -> Option<Zone> {
        (-720..=840)
            .contains(&offset_min)
            .then_some(Zone { offset_min })
    }

    fn shift(self) -> i64 {
        i64::from(self.offset_min) * 60
    }

    /// `2026-12-06 17:20` in this zone.
    pub fn date(self, unix: i64) -> String {
        short_date(unix + self.shift())
    }

    /// `UTC`, `UTC+01:00`, `UTC-05:30`.
    pub fn label(self) -> String {
        if self.offset_min == 0 {
            return "UTC".into();
        }
        let sign = if self.offset_min < 0 { '-' } else { '+' };
        let m = self.offset_min.unsigned_abs();
        format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
    }

    /// A form's `2026-12-06T17:20`, read in this zone.
    pub fn parse(self, local: &str) -> Option<i64> {
        crate::scheduled::parse_utc_datetime(local).map(|t| t - self.shift())
    }

    /// A snooze choice (`crate::snooze::snooze_until`) in this zone:
    /// "tomorrow 08:00" is 08:00 here.
    pub fn snooze_until(self, choice: &str, now: i64) -> Option<i64> {
        crate::snooze::snooze_until(choice, now + self.shift()).map(|t| t - self.shift())
    }
}

pub fn short_date(unix: i64) -> String {
    let d = mail_parser::DateTime::from_timestamp(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        d.year, d.month, d.day, d.hour, d.minute
    )
}

#[cfg(test)]
mod zone_tests {
    use super::Zone;

    #[test]
    fn zones_show_and_read_dates() {
        let cet = Zone::from_offset(60).unwrap();
        let ist = Zone::from_offset(330).unwrap();
        let nyc = Zone::from_offset(-300).unwrap();
        // 2026-12-06 16:20 UTC.
        let t = 1_796_574_000;
        assert_eq!(Zone::UTC.date(t), "2026-12-06 16:20");
        assert_eq!(cet.date(t), "2026-12-06 17:20");
        assert_eq!(ist.date(t), "2026-12-06 21:50");
        assert_eq!(nyc.date(t), "2026-12-06 11:20");
        assert_eq!(
            (cet.label(), ist.label(), nyc.label()),
            ("UTC+01:00".into(), "UTC+05:30".into(), "UTC-05:00".into())
        );
        assert_eq!(Zone::UTC.label(), "UTC");
        assert_eq!(cet.parse("2026-12-06T17:20"), Some(t));
        assert_eq!(nyc.parse("2026-12-06T11:20"), Some(t));
        assert_eq!(Zone::from_offset(900), None);
        // Tomorrow 08:00 in New York is 13:00 UTC.
        assert_eq!(nyc.snooze_until("tomorrow", t), Some(1_796_648_400));
    }
}
