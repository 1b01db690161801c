//! IMAP responses (RFC 9051 §7): the only place a reply becomes bytes.
//!
//! A handler says what it answers as a [`Response`]: a tagged status with
//! an optional [`Code`] (§7.1), an untagged status (`* OK`, `* BYE`, ...),
//! untagged data that its renderer already put in wire form (FETCH, LIST,
//! SEARCH lines), or a continuation request (§7.5). [`Response::render`]
//! writes it. A core error becomes a status and code in one place
//! ([`Response::from_core`]), so every command answers a storage outage
//! with the same `NO [UNAVAILABLE]` (DESIGN.md rule 2).
//!
//! Invariant: text and codes never carry CR or LF (they are ours, or
//! stripped here); a tag comes from the parser, which only takes
//! `astring` characters without `+` (RFC 9051 §9 `tag`).

use std::borrow::Cow;
use std::fmt::Write as _;

use mailcore::{CoreError, ModSeq, Uid};

/// RFC 9051 §7.1: the result of a command, or a server status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// §7.1.5: only untagged.
    Bye,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        }
    }
}

/// Response codes (RFC 9051 §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 4978).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Alert,
    AlreadyExists,
    /// RFC 4315 §3.
    AppendUid {
        uidvalidity: i64,
        uid: Uid,
    },
    AuthenticationFailed,
    Cannot,
    Capability(String),
    Closed,
    /// RFC 4978 §3.
    CompressionActive,
    /// RFC 4315 §3: the source and destination UID sets, in wire form.
    CopyUid {
        uidvalidity: i64,
        from: String,
        to: String,
    },
    /// RFC 7162 §3.1.2.
    HighestModSeq(ModSeq),
    Limit,
    /// RFC 7162 §3.1.3: the UIDs or numbers not stored, in wire form.
    Modified(String),
    NonExistent,
    NoPerm,
    OverQuota,
    /// The flags as a parenthesised list, in wire form.
    PermanentFlags(String),
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    TooBig,
    TryCreate,
    Unavailable,
    UidNext(Uid),
    UidValidity(i64),
    Unseen(usize),
}

impl Code {
    fn render(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match self {
            Code::Alert => out.write_str("ALERT"),
            Code::AlreadyExists => out.write_str("ALREADYEXISTS"),
            Code::AppendUid { uidvalidity, uid } => write!(out, "APPENDUID {uidvalidity} {uid}"),
            Code::AuthenticationFailed => out.write_str("AUTHENTICATIONFAILED"),
            Code::Cannot => out.write_str("CANNOT"),
            Code::Capability(c) => write!(out, "CAPABILITY {c}"),
            Code::Closed => out.write_str("CLOSED"),
            Code::CompressionActive => out.write_str("COMPRESSIONACTIVE"),
            Code::CopyUid {
                uidvalidity,
                from,
                to,
            } => write!(out, "COPYUID {uidvalidity} {from} {to}"),
            Code::HighestModSeq(m) => write!(out, "HIGHESTMODSEQ {m}"),
            Code::Limit => out.write_str("LIMIT"),
            Code::Modified(set) => write!(out, "MODIFIED {set}"),
            Code::NonExistent => out.write_str("NONEXISTENT"),
            Code::NoPerm => out.write_str("NOPERM"),
            Code::OverQuota => out.write_str("OVERQUOTA"),
            Code::PermanentFlags(list) => write!(out, "PERMANENTFLAGS {list}"),
            Code::PrivacyRequired => out.write_str("PRIVACYREQUIRED"),
            Code::ReadOnly => out.write_str("READ-ONLY"),
            Code::ReadWrite => out.write_str("READ-WRITE"),
            Code::TooBig => out.write_str("TOOBIG"),
            Code::TryCreate => out.write_str("TRYCREATE"),
            Code::Unavailable => out.write_str("UNAVAILABLE"),
            Code::UidNext(n) => write!(out, "UIDNEXT {n}"),
            Code::UidValidity(n) => write!(out, "UIDVALIDITY {n}"),
            Code::Unseen(n) => write!(out, "UNSEEN {n}"),
        };
    }
}

/// One response line (a FETCH literal inside `Data` is the renderer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// `tag STATUS [code] text`.
    Tagged {
        tag: &'a str,
        status: Status,
        code: Option<Code>,
        text: Cow<'a, str>,
    },
    /// `* STATUS [code] text`.
    Untagged {
        status: Status,
        code: Option<Code>,
        text: Cow<'a, str>,
    },
    /// `* ...` data in wire form, without the `* ` and the CRLF.
    Data(Cow<'a, str>),
    /// `* seq FETCH (item item ...)` (RFC 9051 §7.5.2): each item already
    /// in wire form, literals and all (bytes, not text).
    Fetch { seq: usize, items: Vec<Vec<u8>> },
    /// `+ text` (RFC 9051 §7.5).
    Continue(Cow<'a, str>),
}

impl<'a> Response<'a> {
    pub fn tagged(
        tag: &'a str,
        status: Status,
        code: Option<Code>,
        text: impl Into<Cow<'a, str>>,
    ) -> Self {
        Response::Tagged {
            tag,
            status,
            code,
            text: text.into(),
        }
    }

    pub fn ok(tag: &'a str, text: impl Into<Cow<'a, str>>) -> Self {
        Self::tagged(tag, Status::Ok, None, text)
    }

    pub fn no(tag: &'a str, code: Option<Code>, text: impl Into<Cow<'a, str>>) -> Self {
        Self::tagged(tag, Status::No, code, text)
    }

    pub fn bad(tag: &'a str, text: impl Into<Cow<'a, str>>) -> Self {
        Self::tagged(tag, Status::Bad, None, text)
    }

    pub fn untagged(status: Status, code: Option<Code>, text: impl Into<Cow<'a, str>>) -> Self {
        Response::Untagged {
            status,
            code,
            text: text.into(),
        }
    }

    pub fn bye(code: Option<Code>, text: impl Into<Cow<'a, str>>) -> Self {
        Self::untagged(Status::Bye, code, text)
    }

    pub fn data(d: impl Into<Cow<'a, str>>) -> Self {
        Response::Data(d.into())
    }

    /// The answer to a command that met a core error (RFC 5530 codes).
    pub fn from_core(tag: &'a str, e: &CoreError) -> Self {
        let (code, text) = match e {
            CoreError::Unavailable(_) => (
                Some(Code::Unavailable),
                "Mail store temporarily unavailable, try again later".to_owned(),
            ),
            CoreError::NotFound(what) => (Some(Code::NonExistent), format!("{what} not found")),
            CoreError::Conflict(what) => {
                (Some(Code::AlreadyExists), format!("{what} already exists"))
            }
            CoreError::OverQuota => (Some(Code::OverQuota), "Mailbox full".to_owned()),
            CoreError::Limit(m) => (Some(Code::Limit), m.clone()),
            CoreError::Forbidden => (Some(Code::NoPerm), "Permission denied".to_owned()),
            CoreError::Invalid(m) => (None, m.clone()),
        };
        Response::no(tag, code, text)
    }

    /// Appends the wire form, CRLF included.
    pub fn render(&self, out: &mut Vec<u8>) {
        if let Response::Fetch { seq, items } = self {
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(it);
            }
            out.extend_from_slice(b")\r\n");
            return;
        }
        let mut line = String::with_capacity(64);
        let status_line = |line: &mut String, status: Status, code: &Option<Code>, text: &str| {
            line.push_str(status.as_str());
            if let Some(c) = code {
                line.push_str(" [");
                c.render(line);
                line.push(']');
            }
            if !text.is_empty() {
                line.push(' ');
                line.push_str(text);
            }
        };
        match self {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                line.push_str(tag);
                line.push(' ');
                status_line(&mut line, *status, code, text);
            }
            Response::Untagged { status, code, text } => {
                line.push_str("* ");
                status_line(&mut line, *status, code, text);
            }
            Response::Data(d) => {
                line.push_str("* ");
                line.push_str(d);
            }
            Response::Continue(t) => {
                line.push('+');
                line.push(' ');
                line.push_str(t);
            }
            Response::Fetch { .. } => unreachable!("rendered above"),
        }
        // Text we did not write ourselves (a core error's message) must
        // not end the line early or smuggle in a second response.
        if matches!(
            self,
            Response::Tagged { .. } | Response::Untagged { .. } | Response::Continue(_)
        ) && line.contains(['\r', '\n'])
        {
            line.retain(|c| c != '\r' && c != '\n');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Response<'_>) -> String {
        let mut out = Vec::new();
        r.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tagged_untagged_and_continuation() {
        assert_eq!(
            wire(Response::ok("a1", "NOOP completed")),
            "a1 OK NOOP completed\r\n"
        );
        assert_eq!(
            wire(Response::tagged(
                "a2",
                Status::Ok,
                Some(Code::AppendUid {
                    uidvalidity: 7,
                    uid: Uid(42)
                }),
                "APPEND completed",
            )),
            "a2 OK [APPENDUID 7 42] APPEND completed\r\n"
        );
        assert_eq!(
            wire(Response::no("a3", Some(Code::TryCreate), "No such mailbox")),
            "a3 NO [TRYCREATE] No such mailbox\r\n"
        );
        assert_eq!(
            wire(Response::bye(Some(Code::Alert), "Signed out")),
            "* BYE [ALERT] Signed out\r\n"
        );
        assert_eq!(wire(Response::data("3 EXISTS")), "* 3 EXISTS\r\n");
        assert_eq!(
            wire(Response::Fetch {
                seq: 2,
                items: vec![b"UID 7".to_vec(), b"BODY[] {3}\r\nabc".to_vec()],
            }),
            "* 2 FETCH (UID 7 BODY[] {3}\r\nabc)\r\n"
        );
        assert_eq!(wire(Response::Continue("".into())), "+ \r\n");
        assert_eq!(
            wire(Response::untagged(
                Status::Ok,
                Some(Code::PermanentFlags("(\\Seen \\*)".into())),
                "Flags permitted",
            )),
            "* OK [PERMANENTFLAGS (\\Seen \\*)] Flags permitted\r\n"
        );
    }

    #[test]
    fn core_errors_map_to_rfc5530_codes() {
        let r = Response::from_core("x", &CoreError::Unavailable("disk".into()));
        assert_eq!(
            wire(r),
            "x NO [UNAVAILABLE] Mail store temporarily unavailable, try again later\r\n"
        );
        let r = Response::from_core("x", &CoreError::NotFound("mailbox Foo".into()));
        assert_eq!(wire(r), "x NO [NONEXISTENT] mailbox Foo not found\r\n");
        let r = Response::from_core("x", &CoreError::OverQuota);
        assert_eq!(wire(r), "x NO [OVERQUOTA] Mailbox full\r\n");
        // A message the core wrote cannot break the line.
        let r = Response::from_core("x", &CoreError::Invalid("bad\r\n* 1 EXISTS".into()));
        assert_eq!(wire(r), "x NO bad* 1 EXISTS\r\n");
    }
}
