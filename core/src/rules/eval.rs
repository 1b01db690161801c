//! Running one account's Sieve script (RFC 5228) over one delivered
//! message: the interpreter is sieve-rs; this turns its events into what
//! delivery does (placements, redirects, replies, a refusal). Nothing here
//! touches the store: the caller answers the two questions a script may
//! ask (does this folder exist, was this key seen) and does the rest.

use sieve::{Compiler, Event, Input, Recipient, Runtime, Sieve};

/// The capabilities users' scripts may use. `editheader`, the MIME
/// rewriting ones, `include`, `enotify`, `extlists` and the metadata ones
/// are left out: delivery keeps the message as it came, and one script
/// per account is what runs.
pub const CAPABILITIES: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "body",
    "variables",
    "date",
    "index",
    "relational",
    "imap4flags",
    "vacation",
    "vacation-seconds",
    "copy",
    "subaddress",
    "mailbox",
    "encoded-character",
    "duplicate",
    "regex",
    "comparator-i;ascii-numeric",
];

/// Largest script kept: a filter set written by hand or by a client is a
/// few kilobytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

fn runtime(hostname: &str) -> Runtime {
    use sieve::compiler::grammar::Capability;
    Runtime::new()
        .without_capabilities([
            Capability::EditHeader,
            Capability::Mime,
            Capability::Replace,
            Capability::Enclose,
            Capability::ForEveryPart,
            Capability::ExtractText,
            Capability::Convert,
            Capability::Include,
            Capability::Enotify,
            Capability::ExtLists,
            Capability::MboxMetadata,
            Capability::ServerMetadata,
            Capability::Environment,
            Capability::Fcc,
            Capability::ImapSieve,
            Capability::SpamTest,
            Capability::SpamTestPlus,
            Capability::VirusTest,
            Capability::While,
            Capability::Expressions,
        ])
        // One forward per message (Dovecot's default is 4; the form
        // builder makes one), and at most one reply.
        .with_max_redirects(4)
        .with_max_out_messages(2)
        .with_cpu_limit(10_000)
        .with_vacation_default_subject("Automatic reply")
        .with_vacation_subject_prefix("Auto: ")
        .with_local_hostname(hostname.to_owned())
}

/// Compiles `text`, or says why not, with the line and column.
pub fn compile(text: &str) -> Result<Sieve, String> {
    if text.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "the script is longer than {} KiB",
            MAX_SCRIPT_BYTES / 1024
        ));
    }
    let compiler = Compiler::new().with_max_script_size(MAX_SCRIPT_BYTES);
    let script = compiler
        .compile(text.as_bytes())
        .map_err(|e| format!("line {}, column {}: {e}", e.line_num(), e.line_pos()))?;
    Ok(script)
}

/// Where one copy goes: `folder` `None` is the default place (INBOX, or
/// Junk for a quarantined message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub folder: Option<String>,
    /// IMAP flags and keywords as the script named them (`\Seen`,
    /// `$Label1`).
    pub flags: Vec<String>,
}

/// What a script decided for one copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Empty when the message was discarded, rejected or only redirected.
    pub placements: Vec<Placement>,
    /// Addresses the message goes on to, unchanged (`redirect`).
    pub redirects: Vec<String>,
    /// Messages the script made (a vacation reply) and their recipient;
    /// sent with a null reverse path (RFC 5230 §5.1... 4.5).
    pub replies: Vec<(String, Vec<u8>)>,
    /// `reject`: the reason to send back to the sender.
    pub reject: Option<String>,
    /// Keys the script asked about that were not seen (vacation and
    /// duplicate), with how long to remember them in seconds: the caller
    /// stores them with the delivery.
    pub remember: Vec<(String, u64)>,
    /// The script failed at run time: what is above is the implicit keep
    /// alone.
    pub error: Option<String>,
}

/// What one run needs to know about the delivery.
pub struct Delivery<'a> {
    pub raw: &'a [u8],
    /// The reverse path (empty for a bounce).
    pub mail_from: &'a str,
    /// The recipient address the copy was delivered for.
    pub rcpt: &'a str,
    /// The account's own address and name, which a vacation reply is
    /// from.
    pub user_address: &'a str,
    pub user_name: &'a str,
    pub hostname: &'a str,
}

/// Runs `script`. `folder_exists` answers the `mailboxexists` test;
/// `seen` whether a vacation/duplicate key was remembered and not
/// expired. An error in the script (the CPU limit, a runtime error) ends
/// the run with the implicit keep alone, as RFC 5228 §2.10.6 asks: mail
/// is never lost to a broken rule.
pub fn run(
    script: std::sync::Arc<Sieve>,
    d: &Delivery<'_>,
    folder_exists: &dyn Fn(&str) -> bool,
    seen: &dyn Fn(&str) -> bool,
) -> Outcome {
    let rt = runtime(d.hostname);
    let mut instance = rt
        .filter(d.raw)
        .with_user_address(d.user_address)
        .with_user_full_name(d.user_name);
    if !d.mail_from.is_empty() {
        instance.set_envelope(sieve::Envelope::From, d.mail_from);
    }
    instance.set_envelope(sieve::Envelope::To, d.rcpt);
    let mut out = Outcome::default();
    let mut made: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut input = Input::script("rules", script);
    let mut error = None;
    while let Some(result) = instance.run(input) {
        input = Input::True;
        let event = match result {
            Ok(e) => e,
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        };
        match event {
            Event::IncludeScript { .. } | Event::ListContains { .. } | Event::Function { .. } => {
                input = Input::False;
            }
            Event::MailboxExists { mailboxes, .. } => {
                let all = mailboxes.iter().all(|m| match m {
                    sieve::Mailbox::Name(n) => folder_exists(n),
                    sieve::Mailbox::Id(_) => false,
                });
                input = all.into();
            }
            Event::DuplicateId { id, expiry, .. } => {
                let key = seen_key(&id);
                let was = seen(&key) || out.remember.iter().any(|(k, _)| *k == key);
                if !was {
                    out.remember.push((key, expiry));
                }
                input = was.into();
            }
            Event::SetEnvelope { .. } | Event::Notify { .. } => {}
            Event::Keep { flags, .. } => out.placements.push(Placement {
                folder: None,
                flags,
            }),
            Event::FileInto { folder, flags, .. } => out.placements.push(Placement {
                folder: Some(folder),
                flags,
            }),
            Event::Discard => {}
            Event::Reject { reason, .. } => out.reject = Some(reason),
            Event::CreatedMessage {
                message_id,
                message,
            } => made.push((message_id, message)),
            Event::SendMessage {
                recipient,
                message_id,
                ..
            } => {
                let Recipient::Address(to) = recipient else {
                    continue;
                };
                if message_id == 0 {
                    out.redirects.push(to);
                } else if let Some((_, m)) = made.iter().find(|(id, _)| *id == message_id) {
                    out.replies.push((to, m.clone()));
                }
            }
        }
    }
    // sieve-rs looks for `Auto-Submitted` among the headers mail-parser
    // does not name, and mail-parser 0.11 names it, so the interpreter
    // would answer a robot: RFC 5230 §5 says never to.
    if !out.replies.is_empty() && automatic(d.raw) {
        out.replies.clear();
    }
    // A refused message gets its refusal, not an "I am away" as well
    // (RFC 5230 §4.7 leaves vacation beside reject to the server).
    if out.reject.is_some() {
        out.replies.clear();
        out.remember.clear();
    }
    match error {
        None => out,
        Some(e) => Outcome {
            placements: vec![Placement::default()],
            error: Some(e),
            ..Default::default()
        },
    }
}

/// Whether the message says a program sent it: `Auto-Submitted` other
/// than `no` (RFC 3834 §5), or `Precedence: bulk/list/junk`.
fn automatic(raw: &[u8]) -> bool {
    let Some(m) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return false;
    };
    m.headers().iter().any(|h| {
        let name = h.name();
        let value = h
            .value()
            .as_text()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (name.eq_ignore_ascii_case("Auto-Submitted") && value != "no")
            || (name.eq_ignore_ascii_case("Precedence")
                && ["bulk", "list", "junk"].contains(&value.as_str()))
    })
}

/// What `sieve_seen` stores for a key: its SHA-256, so a sender's address
/// is not kept in the clear and the column has one length.
fn seen_key(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MSG: &[u8] = b"From: Ann <ann@out.test>\r\nTo: bob@here.test\r\nSubject: Invoice 42\r\nList-Id: <news.out.test>\r\nMessage-ID: <m1@out.test>\r\n\r\nPlease pay.\r\n";

    const PERSONAL: &[u8] = b"From: Ann <ann@out.test>\r\nTo: bob@here.test\r\nSubject: Lunch?\r\nMessage-ID: <m2@out.test>\r\n\r\nAt noon?\r\n";

    fn go(script: &str, seen: &dyn Fn(&str) -> bool) -> Outcome {
        go_with(MSG, script, seen)
    }

    fn go_with(raw: &[u8], script: &str, seen: &dyn Fn(&str) -> bool) -> Outcome {
        let s = Arc::new(compile(script).unwrap());
        run(
            s,
            &Delivery {
                raw,
                mail_from: "ann@out.test",
                rcpt: "bob@here.test",
                user_address: "bob@here.test",
                user_name: "Bob",
                hostname: "mx.here.test",
            },
            &|f| f == "Bills",
            seen,
        )
    }

    #[test]
    fn fileinto_flags_and_implicit_keep() {
        let o = go(
            r#"require ["fileinto","imap4flags"];
               if header :contains "subject" "invoice" { fileinto :flags "\\Seen $Label1" "Bills"; }"#,
            &|_| false,
        );
        assert_eq!(
            o.placements,
            vec![Placement {
                folder: Some("Bills".into()),
                flags: vec!["\\Seen".into(), "$Label1".into()]
            }]
        );
        let o = go(
            r#"if header :contains "subject" "nothing" { discard; }"#,
            &|_| false,
        );
        assert_eq!(o.placements, vec![Placement::default()]);
        let o = go(r#"if exists "list-id" { discard; stop; }"#, &|_| false);
        assert!(o.placements.is_empty());
    }

    #[test]
    fn redirect_reject_and_vacation_once() {
        let o = go(
            r#"require "copy"; redirect :copy "carol@else.test";"#,
            &|_| false,
        );
        assert_eq!(o.redirects, vec!["carol@else.test".to_string()]);
        assert_eq!(o.placements.len(), 1);
        let o = go(r#"require "reject"; reject "not here";"#, &|_| false);
        assert_eq!(o.reject.as_deref(), Some("not here"));
        assert!(o.placements.is_empty());
        // The list header keeps vacation quiet (RFC 5230 §4.6).
        let o = go(r#"require "vacation"; vacation "away";"#, &|_| false);
        assert!(o.replies.is_empty());
        // A personal message gets one reply, from the user, to the
        // sender, marked as automatic; then the key is remembered.
        let v = r#"require "vacation"; vacation :days 3 :subject "Away" "Back Monday.";"#;
        let o = go_with(PERSONAL, v, &|_| false);
        assert_eq!(o.replies.len(), 1, "{o:?}");
        let (to, reply) = &o.replies[0];
        assert_eq!(to, "ann@out.test");
        let text = String::from_utf8_lossy(reply);
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        assert!(text.contains("Subject: Away"), "{text}");
        assert!(text.contains("Back Monday."), "{text}");
        assert!(text.contains("bob@here.test"), "{text}");
        assert_eq!(o.remember.len(), 1);
        assert_eq!(o.remember[0].1, 3 * 86_400);
        assert_eq!(o.placements.len(), 1);
        let key = o.remember[0].0.clone();
        let o = go_with(PERSONAL, v, &|k| k == key);
        assert!(o.replies.is_empty());
        // Not to a bounce or to automatic mail.
        let auto = [b"Auto-Submitted: auto-generated\r\n".as_slice(), PERSONAL].concat();
        assert!(go_with(&auto, v, &|_| false).replies.is_empty());
    }

    #[test]
    fn errors_keep_the_message_and_compile_errors_name_the_line() {
        let e = compile("require \"fileinto\";\nfileinto \"x\"\n").unwrap_err();
        assert!(e.starts_with("line "), "{e}");
        assert!(compile(&"#".repeat(MAX_SCRIPT_BYTES + 1)).is_err());
    }
}
