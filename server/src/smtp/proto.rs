//! SMTP wire format, pure: bytes in, typed command out; typed reply in,
//! bytes out. No I/O here, so every branch is testable from a string.
//!
//! Grammar: RFC 5321 §4.1.1 (commands) and §4.1.2 (paths), with the
//! ESMTP parameters of RFC 1870 (SIZE), RFC 6152 (BODY=8BITMIME) and
//! RFC 6531 (SMTPUTF8). Source routes in paths (`<@a,@b:u@d>`) are kept
//! verbatim so the router can refuse them as relay attempts.

use std::fmt::Write as _;

/// ESMTP parameters of MAIL and RCPT: `KEY[=VALUE]`, keys upper-cased.
pub type Params = Vec<(String, Option<String>)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<path> params`; an empty path is the null sender.
    Mail {
        from: String,
        params: Vec<(String, Option<String>)>,
    },
    Rcpt {
        to: String,
        params: Vec<(String, Option<String>)>,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `BDAT size [LAST]` (RFC 3030 §2): a chunk of exactly `size` octets
    /// follows the command line, with no dot-stuffing.
    Bdat {
        size: u64,
        last: bool,
    },
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy => "VRFY",
            Command::Expn => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Bdat { .. } => "BDAT",
            Command::Auth { .. } => "AUTH",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// 500 5.5.1: not a command we know.
    Unknown,
    /// 501 5.5.4: a known command with bad arguments.
    Syntax(&'static str),
}

fn split_verb(line: &str) -> (String, &str) {
    let line = line.trim_end_matches(['\r', '\n']);
    match line.split_once(' ') {
        Some((v, rest)) => (v.to_ascii_uppercase(), rest.trim_start()),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// Parses `<path>` followed by space-separated `KEY[=VALUE]` parameters.
fn path_and_params(rest: &str) -> Result<(String, Params), ParseError> {
    let rest = rest.trim();
    let Some(body) = rest.strip_prefix('<') else {
        return Err(ParseError::Syntax("the address must be in angle brackets"));
    };
    // A quoted local part may contain '>'; find the closing bracket
    // outside quotes.
    let mut in_quote = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(ParseError::Syntax("missing closing >"))?;
    let path = body[..end].to_owned();
    if path.chars().any(|c| c.is_control() || c == ' ') && !path.starts_with('"') {
        return Err(ParseError::Syntax(
            "the address contains spaces or control characters",
        ));
    }
    let mut params = Vec::new();
    for p in body[end + 1..].split_whitespace() {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v.to_owned())),
            None => (p.to_ascii_uppercase(), None),
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ParseError::Syntax("malformed parameter"));
        }
        params.push((k, v));
    }
    Ok((path, params))
}

/// Parses one command line (without or with its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax("command is not UTF-8"))?;
    let (verb, rest) = split_verb(line);
    let no_args = |c: Command| {
        if rest.is_empty()
            || matches!(
                c,
                Command::Noop | Command::Help | Command::Vrfy | Command::Expn
            )
        {
            Ok(c)
        } else {
            Err(ParseError::Syntax("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let host = rest.trim();
            if host.is_empty() || host.contains(' ') {
                return Err(ParseError::Syntax(
                    "EHLO needs one domain or address literal",
                ));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(host.to_owned())
            } else {
                Command::Helo(host.to_owned())
            })
        }
        "MAIL" => {
            let r = strip_keyword(rest, "FROM:")
                .ok_or(ParseError::Syntax("expected MAIL FROM:<address>"))?;
            let (from, params) = path_and_params(r)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let r = strip_keyword(rest, "TO:")
                .ok_or(ParseError::Syntax("expected RCPT TO:<address>"))?;
            let (to, params) = path_and_params(r)?;
            if to.is_empty() {
                return Err(ParseError::Syntax("empty recipient"));
            }
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => no_args(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => no_args(Command::Vrfy),
        "EXPN" => no_args(Command::Expn),
        "HELP" => no_args(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "BDAT" => {
            let mut it = rest.split_whitespace();
            let size = it
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
            let last = match it.next() {
                None => false,
                Some(l) if l.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(ParseError::Syntax("expected LAST")),
            };
            if it.next().is_some() {
                return Err(ParseError::Syntax("too many BDAT arguments"));
            }
            Ok(Command::Bdat { size, last })
        }
        "AUTH" => {
            let mut it = rest.split_whitespace();
            let mechanism = it
                .next()
                .ok_or(ParseError::Syntax("AUTH needs a mechanism"))?
                .to_ascii_uppercase();
            let initial = it.next().map(str::to_owned);
            if it.next().is_some() {
                return Err(ParseError::Syntax("too many AUTH arguments"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(ParseError::Unknown),
    }
}

/// `FROM:` / `TO:` case-insensitively, allowing a space after the colon
/// (common in the wild, tolerated by every major MTA).
fn strip_keyword<'a>(rest: &'a str, kw: &str) -> Option<&'a str> {
    // `get` rather than slicing: the client's bytes may put a multi-byte
    // character across the cut (found by the smtp_command fuzz target).
    rest.get(..kw.len())
        .filter(|head| head.eq_ignore_ascii_case(kw))
        .and_then(|_| rest.get(kw.len()..))
        .map(str::trim_start)
}

/// A reply: code, optional RFC 3463 enhanced code, and text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: (!enhanced.is_empty()).then_some(enhanced),
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// The one place replies become wire text (RFC 5321 §4.2.1: every line
    /// but the last has a hyphen after the code).
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let _ = match self.enhanced {
                Some(e) => write!(out, "{}{sep}{e} {text}\r\n", self.code),
                None => write!(out, "{}{sep}{text}\r\n", self.code),
            };
        }
        out
    }
}

/// Undoes RFC 5321 §4.5.2 transparency for one DATA line (without CRLF).
/// Returns `None` for the terminating line `.`.
pub fn unstuff(line: &[u8]) -> Option<&[u8]> {
    if line == b"." {
        return None;
    }
    Some(line.strip_prefix(b".").unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"ehlo client.example\r\n"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME\r\n"),
            Ok(Command::Mail {
                from: "a@b.example".into(),
                params: vec![
                    ("SIZE".into(), Some("1000".into())),
                    ("BODY".into(), Some("8BITMIME".into()))
                ]
            })
        );
        assert_eq!(
            parse_command(b"mail from: <>\r\n"),
            Ok(Command::Mail {
                from: String::new(),
                params: vec![]
            })
        );
        assert_eq!(
            parse_command(b"RCPT TO:<\"u@ext.example\"@local.test>\r\n"),
            Ok(Command::Rcpt {
                to: "\"u@ext.example\"@local.test".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse_command(b"RCPT TO:<@local.test:u@ext.example>\r\n"),
            Ok(Command::Rcpt {
                to: "@local.test:u@ext.example".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse_command(b"AUTH PLAIN AGFAYgBj\r\n"),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFAYgBj".into())
            })
        );
        assert_eq!(parse_command(b"DATA\r\n"), Ok(Command::Data));
        assert_eq!(parse_command(b"STARTTLS\r\n"), Ok(Command::StartTls));
        assert_eq!(
            parse_command(b"BDAT 1024 last\r\n"),
            Ok(Command::Bdat {
                size: 1024,
                last: true
            })
        );
        assert!(matches!(
            parse_command(b"BDAT x\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"BDAT 5 FIRST\r\n"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_command(b"FOO\r\n"), Err(ParseError::Unknown));
        assert!(matches!(
            parse_command(b"MAIL a@b\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"MAIL FROM:a@b\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"RCPT TO:<>\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"RCPT TO:<a@b\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"EHLO\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"DATA now\r\n"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_command(b"\xff\xfe\r\n"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn replies_render() {
        assert_eq!(
            Reply::new(250, "2.1.0", "Sender OK").to_wire(),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            Reply::multi(250, vec!["mx.test".into(), "PIPELINING".into()]).to_wire(),
            "250-mx.test\r\n250 PIPELINING\r\n"
        );
    }

    #[test]
    fn dot_unstuffing() {
        assert_eq!(unstuff(b"."), None);
        assert_eq!(unstuff(b"..hidden"), Some(&b".hidden"[..]));
        assert_eq!(unstuff(b"plain"), Some(&b"plain"[..]));
        assert_eq!(unstuff(b".\n."), Some(&b"\n."[..]));
    }

    /// Hostile input never panics the parser. Not a substitute for a
    /// coverage-guided fuzzer (cargo-fuzz needs nightly, which this
    /// toolchain lacks), but it runs everywhere on every test run.
    #[test]
    fn random_input_never_panics() {
        let pieces: [&[u8]; 16] = [
            b"MAIL FROM:",
            b"RCPT TO:",
            b"<",
            b">",
            b"\"",
            b"\\",
            b"@",
            b" ",
            b"=",
            b"\r\n",
            b"\n",
            b"AUTH ",
            b"\xff",
            b"\xc3\xa9",
            b"SIZE=99999999999999999999",
            b"EHLO",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            let mut line = Vec::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                line.extend_from_slice(pieces[(x % 16) as usize]);
            }
            let _ = parse_command(&line);
            let _ = unstuff(&line);
        }
    }
}
