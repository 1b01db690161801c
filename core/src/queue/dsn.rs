//! Delivery status notifications (RFC 3464), sent to the envelope sender
//! when recipients fail for good or have been delayed for hours.
//!
//! The report is a `multipart/report; report-type=delivery-status` (RFC 6522)
//! with three parts, in the order the RFC requires: a human-readable
//! explanation first, then the machine-readable `message/delivery-status`,
//! then the original message's header (`text/rfc822-headers`), so the sender
//! can tell which message it was without getting the whole body back.
//!
//! The caller must never ask for a DSN about a message whose envelope sender
//! is null (RFC 5321 §4.5.5, RFC 3464 §2): that is how bounce loops start.

use rand::Rng;

use crate::submission::rfc5322_date;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    /// `Action: failed`: the recipients will not get the message.
    Failed,
    /// `Action: delayed`: still retrying (RFC 3464 §2.3.3).
    Delayed,
}

/// One recipient's line in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    pub rcpt: String,
    /// The remote reply, e.g. `550 5.1.1 no such user`, or our own reason.
    pub diagnostic: String,
    /// The MX that answered, when one did.
    pub remote_mta: Option<String>,
    /// RFC 3463 status code, e.g. `5.1.1`.
    pub status: String,
}

pub struct DsnInput<'a> {
    pub kind: DsnKind,
    pub reporting_mta: &'a str,
    pub sender: &'a str,
    pub arrival_date: i64,
    pub now: i64,
    /// For `Delayed`: when we give up.
    pub retry_until: Option<i64>,
    pub recipients: &'a [DsnRecipient],
    pub original: &'a [u8],
}

/// The RFC 3463 status in a reply's text, or one derived from its code.
pub fn status_of(code: u16, text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = first.split('.').collect();
    let enhanced = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if enhanced {
        first.to_owned()
    } else {
        match code {
            200..=299 => "2.0.0".into(),
            500..=599 => "5.0.0".into(),
            _ => "4.0.0".into(),
        }
    }
}

/// Header fields must be one line and bounded; replies can be neither.
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out.trim().to_owned()
}

/// The header block of the original message, up to the first empty line.
fn original_headers(raw: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\r\n\r\n") {
            return &raw[..i + 2];
        }
        if raw[i..].starts_with(b"\n\n") {
            return &raw[..i + 1];
        }
        i += 1;
    }
    raw
}

pub fn build(d: &DsnInput<'_>) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let boundary = format!("=_tern_dsn_{:016x}", rng.r#gen::<u64>());
    let msg_id = format!("<dsn.{:016x}@{}>", rng.r#gen::<u64>(), d.reporting_mta);
    let (subject, action) = match d.kind {
        DsnKind::Failed => ("Undelivered Mail Returned to Sender", "failed"),
        DsnKind::Delayed => ("Delayed Mail (still being retried)", "delayed"),
    };
    let mut human = String::new();
    match d.kind {
        DsnKind::Failed => {
            human.push_str(&format!(
                "This is the mail system at {}.\r\n\r\nYour message could not be delivered to the \
                 recipients below. The mail system gave up; nobody will try again.\r\n\r\n",
                d.reporting_mta
            ));
        }
        DsnKind::Delayed => {
            human.push_str(&format!(
                "This is the mail system at {}.\r\n\r\nYour message has not been delivered yet to \
                 the recipients below. This is only a warning: the mail system keeps trying",
                d.reporting_mta
            ));
            if let Some(until) = d.retry_until {
                human.push_str(&format!(" until {}", rfc5322_date(until)));
            }
            human.push_str(". You do not need to send it again.\r\n\r\n");
        }
    }
    for r in d.recipients {
        human.push_str(&format!(
            "<{}>: {}\r\n",
            one_line(&r.rcpt, 320),
            one_line(&r.diagnostic, 900)
        ));
    }

    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nArrival-Date: {}\r\n",
        d.reporting_mta,
        rfc5322_date(d.arrival_date)
    );
    for r in d.recipients {
        status.push_str("\r\n");
        status.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            one_line(&r.rcpt, 320),
            action,
            one_line(&r.status, 16)
        ));
        if let Some(mta) = &r.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta, 255)));
        }
        status.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&r.diagnostic, 900),
            rfc5322_date(d.now)
        ));
        if let (DsnKind::Delayed, Some(until)) = (d.kind, d.retry_until) {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }

    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
             To: <{to}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: {msg_id}\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             This is a MIME-encapsulated delivery status report.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             {human}\r\n\
             --{boundary}\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             {status}\r\n\
             --{boundary}\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n",
            mta = d.reporting_mta,
            to = one_line(d.sender, 320),
            date = rfc5322_date(d.now),
        )
        .as_bytes(),
    );
    out.extend_from_slice(&super::wire_form(original_headers(d.original)));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_enhanced_code_or_the_reply_class() {
        assert_eq!(status_of(550, "5.1.1 no such user"), "5.1.1");
        assert_eq!(status_of(550, "no such user"), "5.0.0");
        assert_eq!(status_of(451, "try later"), "4.0.0");
        assert_eq!(status_of(550, "5.1 x"), "5.0.0");
    }

    #[test]
    fn report_has_three_parts_in_rfc_order_and_one_line_fields() {
        let rcpts = [DsnRecipient {
            rcpt: "bob@remote.test".into(),
            diagnostic: "550 5.1.1 no\r\nInjected: yes".into(),
            remote_mta: Some("mx.remote.test".into()),
            status: "5.1.1".into(),
        }];
        let raw = build(&DsnInput {
            kind: DsnKind::Failed,
            reporting_mta: "mail.tern.test",
            sender: "alice@tern.test",
            arrival_date: 0,
            now: 60,
            retry_until: None,
            recipients: &rcpts,
            original: b"Subject: hello\r\nMessage-ID: <m1@x>\r\n\r\nsecret body\r\n",
        });
        let text = String::from_utf8(raw).unwrap();
        let human = text.find("text/plain").unwrap();
        let status = text.find("message/delivery-status").unwrap();
        let headers = text.find("text/rfc822-headers").unwrap();
        assert!(human < status && status < headers);
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no  Injected: yes\r\n"));
        assert!(!text.contains("\r\nInjected:"), "no header injection");
        assert!(text.contains("Message-ID: <m1@x>"));
        assert!(!text.contains("secret body"), "only the header comes back");
        assert!(text.contains("Auto-Submitted: auto-replied"));
    }
}
