//! ManageSieve wire format (RFC 5804), pure: lines and literals in, a
//! typed command out; replies out as bytes, in one place.
//!
//! A command is words (atoms), quoted strings and literals. A literal is
//! `{N+}` or `{N}` at the end of a line, then N octets; the session reads
//! those and hands them back here as one more string.

/// One word of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Atom(String),
    Str(Vec<u8>),
    Number(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Capability,
    StartTls,
    /// Mechanism and the initial response, if sent (RFC 5804 §2.1).
    Authenticate(String, Option<String>),
    Logout,
    Noop(Option<String>),
    Unauthenticate,
    HaveSpace(String, u64),
    PutScript(String, Vec<u8>),
    CheckScript(Vec<u8>),
    ListScripts,
    /// An empty name deactivates every script (§2.8).
    SetActive(String),
    GetScript(String),
    DeleteScript(String),
    RenameScript(String, String),
}

/// What ended a line: nothing more, or a literal of this many octets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineEnd {
    Done,
    Literal(usize),
}

/// Splits one line (CRLF included or not) into tokens. A line that ends
/// in `{N}` or `{N+}` says how many octets follow.
pub fn tokenize(line: &[u8], out: &mut Vec<Token>) -> Result<LineEnd, &'static str> {
    let mut line = line;
    while let Some((&b, rest)) = line.split_last() {
        if b == b'\n' || b == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err("unterminated string"),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match line.get(i + 1) {
                                Some(c @ (b'"' | b'\\')) => s.push(*c),
                                _ => return Err("bad escape in a string"),
                            }
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            b'{' => {
                let end = line[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or("unterminated literal")?
                    + i;
                if end + 1 != line.len() {
                    return Err("a literal must end its line");
                }
                let spec = std::str::from_utf8(&line[i + 1..end]).map_err(|_| "bad literal")?;
                let n: usize = spec
                    .strip_suffix('+')
                    .unwrap_or(spec)
                    .parse()
                    .map_err(|_| "bad literal length")?;
                return Ok(LineEnd::Literal(n));
            }
            _ => {
                let end = line[i..]
                    .iter()
                    .position(|&c| c == b' ')
                    .map_or(line.len(), |p| p + i);
                let word = std::str::from_utf8(&line[i..end]).map_err(|_| "not UTF-8")?;
                if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(Token::Number(word.parse().map_err(|_| "number too large")?));
                } else {
                    out.push(Token::Atom(word.to_owned()));
                }
                i = end;
            }
        }
    }
    Ok(LineEnd::Done)
}

fn string(t: Option<Token>) -> Result<String, &'static str> {
    match t {
        Some(Token::Str(s)) => String::from_utf8(s).map_err(|_| "a name must be UTF-8"),
        _ => Err("expected a string"),
    }
}

fn bytes(t: Option<Token>) -> Result<Vec<u8>, &'static str> {
    match t {
        Some(Token::Str(s)) => Ok(s),
        _ => Err("expected a string"),
    }
}

/// The command the tokens of one whole command make.
pub fn parse(tokens: Vec<Token>) -> Result<Command, &'static str> {
    let mut it = tokens.into_iter();
    let verb = match it.next() {
        Some(Token::Atom(a)) => a.to_ascii_uppercase(),
        _ => return Err("expected a command"),
    };
    let cmd = match verb.as_str() {
        "CAPABILITY" => Command::Capability,
        "STARTTLS" => Command::StartTls,
        "LOGOUT" => Command::Logout,
        "UNAUTHENTICATE" => Command::Unauthenticate,
        "LISTSCRIPTS" => Command::ListScripts,
        "NOOP" => Command::Noop(match it.next() {
            None => None,
            t => Some(string(t)?),
        }),
        "AUTHENTICATE" => {
            let mech = string(it.next())?.to_ascii_uppercase();
            let initial = match it.next() {
                None => None,
                t => Some(string(t)?),
            };
            Command::Authenticate(mech, initial)
        }
        "HAVESPACE" => {
            let name = string(it.next())?;
            match it.next() {
                Some(Token::Number(n)) => Command::HaveSpace(name, n),
                _ => return Err("expected a size"),
            }
        }
        "PUTSCRIPT" => Command::PutScript(string(it.next())?, bytes(it.next())?),
        "CHECKSCRIPT" => Command::CheckScript(bytes(it.next())?),
        "SETACTIVE" => Command::SetActive(string(it.next())?),
        "GETSCRIPT" => Command::GetScript(string(it.next())?),
        "DELETESCRIPT" => Command::DeleteScript(string(it.next())?),
        "RENAMESCRIPT" => Command::RenameScript(string(it.next())?, string(it.next())?),
        _ => return Err("unknown command"),
    };
    if it.next().is_some() {
        return Err("too many arguments");
    }
    Ok(cmd)
}

/// A quoted string for a reply (§4): `"` and `\` escaped; text with a
/// line break goes as a literal instead.
pub fn quoted(s: &str) -> Vec<u8> {
    if s.contains(['\r', '\n']) {
        return literal(s.as_bytes());
    }
    let mut o = Vec::with_capacity(s.len() + 2);
    o.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            o.push(b'\\');
        }
        o.push(b);
    }
    o.push(b'"');
    o
}

/// A server-to-client literal: `{N}` CRLF and the octets.
pub fn literal(b: &[u8]) -> Vec<u8> {
    let mut o = format!("{{{}}}\r\n", b.len()).into_bytes();
    o.extend_from_slice(b);
    o
}

/// Response codes used here (§1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    None,
    NonExistent,
    Active,
    AlreadyExists,
    QuotaMaxScripts,
    QuotaMaxSize,
    TryLater,
    AuthTooWeak,
    EncryptNeeded,
}

impl Code {
    fn text(self) -> Option<&'static str> {
        Some(match self {
            Code::None => return None,
            Code::NonExistent => "NONEXISTENT",
            Code::Active => "ACTIVE",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::QuotaMaxScripts => "QUOTA/MAXSCRIPTS",
            Code::QuotaMaxSize => "QUOTA/MAXSIZE",
            Code::TryLater => "TRYLATER",
            Code::AuthTooWeak => "AUTH-TOO-WEAK",
            Code::EncryptNeeded => "ENCRYPT-NEEDED",
        })
    }
}

/// `OK`, `NO` or `BYE`, with a code and a human text.
pub fn reply(kind: &str, code: Code, text: &str) -> Vec<u8> {
    let mut o = kind.as_bytes().to_vec();
    if let Some(c) = code.text() {
        o.extend_from_slice(format!(" ({c})").as_bytes());
    }
    if !text.is_empty() {
        o.push(b' ');
        o.extend_from_slice(&quoted(text));
    }
    o.extend_from_slice(b"\r\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(line: &str) -> (Vec<Token>, LineEnd) {
        let mut v = Vec::new();
        let end = tokenize(line.as_bytes(), &mut v).unwrap();
        (v, end)
    }

    #[test]
    fn commands_strings_and_literals() {
        let (t, end) = toks("PUTSCRIPT \"my \\\"rules\\\"\" {31+}\r\n");
        assert_eq!(end, LineEnd::Literal(31));
        assert_eq!(t[1], Token::Str(b"my \"rules\"".to_vec()));
        let mut t = t;
        t.push(Token::Str(b"keep;".to_vec()));
        assert_eq!(
            parse(t).unwrap(),
            Command::PutScript("my \"rules\"".into(), b"keep;".to_vec())
        );
        let (t, end) = toks("havespace \"x\" 1024");
        assert_eq!(end, LineEnd::Done);
        assert_eq!(parse(t).unwrap(), Command::HaveSpace("x".into(), 1024));
        let (t, _) = toks("AUTHENTICATE \"PLAIN\" \"AGJvYgBwdw==\"");
        assert_eq!(
            parse(t).unwrap(),
            Command::Authenticate("PLAIN".into(), Some("AGJvYgBwdw==".into()))
        );
        assert!(parse(toks("SETACTIVE").0).is_err());
        assert!(parse(toks("GETSCRIPT \"a\" \"b\"").0).is_err());
        assert!(tokenize(b"PUTSCRIPT \"a", &mut Vec::new()).is_err());
        assert!(tokenize(b"PUTSCRIPT {5+} x", &mut Vec::new()).is_err());
        assert_eq!(
            parse(toks("SETACTIVE \"\"").0).unwrap(),
            Command::SetActive(String::new())
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply("NO", Code::NonExistent, "no \"such\" script"),
            b"NO (NONEXISTENT) \"no \\\"such\\\" script\"\r\n"
        );
        assert_eq!(reply("OK", Code::None, ""), b"OK\r\n");
        assert_eq!(quoted("a\nb"), b"{3}\r\na\nb");
    }
}
