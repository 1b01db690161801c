//! POP3 wire format, pure (RFC 1939, with CAPA from RFC 2449, STLS from
//! RFC 2595, AUTH from RFC 5034 and response codes from RFC 3206).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top(u32, u32),
    Uidl(Option<u32>),
    Capa,
    Stls,
    Auth(Option<String>, Option<String>),
}

impl Command {
    /// The keyword, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Auth(..) => "AUTH",
        }
    }
}

/// The argument error text, for `-ERR`.
pub type ParseError = &'static str;

fn num(s: Option<&str>) -> Result<u32, ParseError> {
    s.and_then(|n| n.parse::<u32>().ok())
        .filter(|&n| n > 0)
        .ok_or("expected a message number")
}

/// Parses one command line (with or without CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| "command is not UTF-8")?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    let cmd = match verb.to_ascii_uppercase().as_str() {
        // RFC 1939 §7: the password may contain spaces; take the rest.
        "USER" => Command::User(rest.trim().to_owned()),
        "PASS" => Command::Pass(rest.to_owned()),
        "STAT" => Command::Stat,
        "LIST" => Command::List(args.next().map(|a| num(Some(a))).transpose()?),
        "RETR" => Command::Retr(num(args.next())?),
        "DELE" => Command::Dele(num(args.next())?),
        "NOOP" => Command::Noop,
        "RSET" => Command::Rset,
        "QUIT" => Command::Quit,
        "TOP" => {
            let n = num(args.next())?;
            let lines = args
                .next()
                .and_then(|l| l.parse::<u32>().ok())
                .ok_or("expected a line count")?;
            Command::Top(n, lines)
        }
        "UIDL" => Command::Uidl(args.next().map(|a| num(Some(a))).transpose()?),
        "CAPA" => Command::Capa,
        "STLS" => Command::Stls,
        "AUTH" => Command::Auth(
            args.next().map(str::to_ascii_uppercase),
            args.next().map(str::to_owned),
        ),
        _ => return Err("unknown command"),
    };
    if matches!(cmd, Command::User(ref u) if u.is_empty()) {
        return Err("USER needs a name");
    }
    if args.next().is_some() && !matches!(cmd, Command::Pass(_) | Command::User(_)) {
        return Err("too many arguments");
    }
    Ok(cmd)
}

/// A multi-line response body (RFC 1939 §3): every line ends in CRLF, a
/// line starting with "." gets one more, and ".CRLF" ends it. Bare LF or
/// CR in the stored message become CRLF line ends here, so no byte the
/// message holds can end the response early.
pub fn multiline(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 40 + 8);
    let mut at_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if at_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_start = true;
            }
            _ => {
                out.push(b);
                at_start = false;
            }
        }
        i += 1;
    }
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The header and the first `lines` lines of the body (TOP, RFC 1939 §7).
pub fn top(message: &[u8], lines: u32) -> &[u8] {
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(message.len());
    let mut end = header_end;
    for _ in 0..lines {
        match message[end..].iter().position(|&b| b == b'\n') {
            Some(p) => end += p + 1,
            None => {
                end = message.len();
                break;
            }
        }
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse_command(b"user alice@example.test\r\n"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(
            parse_command(b"PASS with spaces inside\r\n"),
            Ok(Command::Pass("with spaces inside".into()))
        );
        assert_eq!(parse_command(b"LIST\r\n"), Ok(Command::List(None)));
        assert_eq!(parse_command(b"LIST 2\r\n"), Ok(Command::List(Some(2))));
        assert_eq!(parse_command(b"TOP 1 0\r\n"), Ok(Command::Top(1, 0)));
        assert_eq!(
            parse_command(b"AUTH PLAIN AGEAYg==\r\n"),
            Ok(Command::Auth(Some("PLAIN".into()), Some("AGEAYg==".into())))
        );
        assert!(parse_command(b"RETR 0\r\n").is_err());
        assert!(parse_command(b"RETR x\r\n").is_err());
        assert!(parse_command(b"DELE 1 2\r\n").is_err());
        assert!(parse_command(b"XYZZY\r\n").is_err());
        assert!(parse_command(b"TOP 1\r\n").is_err());
    }

    #[test]
    fn byte_stuffing_is_exact() {
        assert_eq!(
            multiline(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(multiline(b".\r\n"), b"..\r\n.\r\n");
        // Bare LF / CR next to a dot cannot end the response.
        assert_eq!(multiline(b"x\n.\ny"), b"x\r\n..\r\ny\r\n.\r\n");
        assert_eq!(multiline(b"x\r.\r"), b"x\r\n..\r\n.\r\n");
        assert_eq!(multiline(b""), b".\r\n");
    }

    #[test]
    fn top_takes_header_and_lines() {
        let m = b"Subject: s\r\n\r\none\r\ntwo\r\nthree\r\n";
        assert_eq!(top(m, 0), b"Subject: s\r\n\r\n");
        assert_eq!(top(m, 2), b"Subject: s\r\n\r\none\r\ntwo\r\n");
        assert_eq!(top(m, 10), &m[..]);
    }
}
