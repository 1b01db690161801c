//! The primitives of IMAP syntax (RFC 9051 §9): atoms, strings, numbers,
//! sequence sets, flags and dates, read from one complete command.

use super::date::parse_date;
use super::{MAX_DEPTH, SeqBound, SeqSet};

pub(super) struct P<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
    pub(super) depth: usize,
}

pub(super) type R<T> = Result<T, String>;

pub(super) fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !b"(){ %*\"\\]".contains(&c)
}

impl<'a> P<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, c: u8) -> R<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}'", c as char))
        }
    }

    pub(super) fn sp(&mut self) -> R<()> {
        self.expect(b' ')
    }

    pub(super) fn at_end(&self) -> bool {
        matches!(&self.b[self.i..], b"\r\n" | b"\n" | b"")
    }

    pub(super) fn end(&mut self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err("unexpected characters at the end of the command".into())
        }
    }

    /// `atom = 1*ATOM-CHAR` (RFC 9051 §9), where `ATOM-CHAR` is any CHAR
    /// but `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
    /// quoted-specials / resp-specials`; `extra` admits some of those
    /// (`]` for `ASTRING-CHAR`, `%` and `*` for `list-char`).
    pub(super) fn atom_with(&mut self, extra: &[u8]) -> R<&'a str> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if is_atom_char(c) || extra.contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return Err("expected an atom".into());
        }
        std::str::from_utf8(&self.b[start..self.i]).map_err(|_| "bad atom".into())
    }

    /// `atom = 1*ATOM-CHAR` (RFC 9051 §9).
    pub(super) fn atom(&mut self) -> R<&'a str> {
        self.atom_with(b"")
    }

    /// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`, `QUOTED-CHAR = <any TEXT-CHAR
    /// except quoted-specials> / "\" quoted-specials` (RFC 9051 §9).
    pub(super) fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.i += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `literal = "{" number64 ["+"] "}" CRLF *CHAR8` (RFC 9051 §9; the `+`
    /// is LITERAL+, RFC 7888). The session has already read the bytes.
    pub(super) fn literal(&mut self) -> R<Vec<u8>> {
        self.expect(b'{')?;
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad literal length")?;
        self.eat(b'+');
        self.expect(b'}')?;
        self.eat(b'\r');
        self.expect(b'\n')?;
        if self.b.len() - self.i < n {
            return Err("literal shorter than announced".into());
        }
        let v = self.b[self.i..self.i + n].to_vec();
        self.i += n;
        Ok(v)
    }

    /// `string = quoted / literal` (RFC 9051 §9).
    pub(super) fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err("expected a string".into()),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`, `ASTRING-CHAR = ATOM-CHAR /
    /// resp-specials` (RFC 9051 §9).
    pub(super) fn astring_bytes(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => Ok(self.atom_with(b"]")?.as_bytes().to_vec()),
        }
    }

    /// `astring` (RFC 9051 §9) as UTF-8 text.
    pub(super) fn astring(&mut self) -> R<String> {
        String::from_utf8(self.astring_bytes()?).map_err(|_| "string is not UTF-8".into())
    }

    /// A mailbox name; `INBOX` in any case is INBOX (RFC 9051 §5.1).
    pub(super) fn mailbox(&mut self) -> R<String> {
        let s = self.astring()?;
        Ok(if s.eq_ignore_ascii_case("INBOX") {
            "INBOX".into()
        } else {
            s
        })
    }

    /// `list-mailbox`: like astring, but `%` and `*` are allowed in atoms.
    pub(super) fn list_mailbox(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => {
                String::from_utf8(self.string()?).map_err(|_| "string is not UTF-8".into())
            }
            _ => Ok(self.atom_with(b"%*]")?.to_owned()),
        }
    }

    /// `number = 1*DIGIT` (RFC 9051 §9; up to `number64`).
    pub(super) fn number(&mut self) -> R<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "expected a number".into())
    }

    /// `nz-number = digit-nz *DIGIT`, at most 4,294,967,295 (RFC 9051 §9).
    pub(super) fn nz_number(&mut self) -> R<u32> {
        let n = self.number()?;
        if n == 0 || n > u32::MAX as u64 {
            return Err("number out of range".into());
        }
        Ok(n as u32)
    }

    /// `seq-number = nz-number / "*"` (RFC 9051 §9).
    pub(super) fn seq_bound(&mut self) -> R<SeqBound> {
        if self.eat(b'*') {
            Ok(SeqBound::Star)
        } else {
            Ok(SeqBound::Num(self.nz_number()?))
        }
    }

    /// `sequence-set = (seq-number / seq-range) ["," sequence-set]`,
    /// `seq-range = seq-number ":" seq-number` (RFC 9051 §9), at most
    /// 10,000 ranges.
    pub(super) fn seq_set(&mut self) -> R<SeqSet> {
        let mut v = Vec::new();
        loop {
            let a = self.seq_bound()?;
            let b = if self.eat(b':') { self.seq_bound()? } else { a };
            v.push((a, b));
            if v.len() > 10_000 {
                return Err("sequence set too long".into());
            }
            if !self.eat(b',') {
                break;
            }
        }
        Ok(SeqSet(v))
    }

    /// `"("`, counting the depth against [`MAX_DEPTH`](super::MAX_DEPTH).
    pub(super) fn open(&mut self) -> R<()> {
        self.expect(b'(')?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("too deeply nested".into());
        }
        Ok(())
    }

    /// `")"`.
    pub(super) fn close(&mut self) -> R<()> {
        self.expect(b')')?;
        self.depth -= 1;
        Ok(())
    }

    /// `flag-list = "(" [flag *(SP flag)] ")"` (RFC 9051 §9).
    pub(super) fn flag_list(&mut self) -> R<Vec<String>> {
        self.open()?;
        let mut v = Vec::new();
        while !self.eat(b')') {
            if !v.is_empty() {
                self.sp()?;
            }
            v.push(self.flag()?);
        }
        self.depth -= 1;
        Ok(v)
    }

    /// `flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" /
    /// flag-keyword / flag-extension`, `flag-extension = "\" atom`
    /// (RFC 9051 §9); the session decides which it accepts.
    pub(super) fn flag(&mut self) -> R<String> {
        let bs = self.eat(b'\\');
        let a = self.atom()?;
        Ok(if bs { format!("\\{a}") } else { a.to_owned() })
    }

    /// `date = date-text / DQUOTE date-text DQUOTE`, `date-text = date-day
    /// "-" date-month "-" date-year` (RFC 9051 §9), as days since the epoch.
    pub(super) fn date(&mut self) -> R<i64> {
        let q = self.eat(b'"');
        let a = self.atom()?;
        if q {
            self.expect(b'"')?;
        }
        parse_date(a).ok_or_else(|| "bad date".into())
    }
}
