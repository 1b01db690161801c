//! SEARCH keys (RFC 9051 §6.4.4, §9).

use super::lexer::{P, R};
use super::{MAX_DEPTH, SearchKey};

impl P<'_> {
    /// `search-key` (RFC 9051 §9, with RFC 3501's rev1 keys and `MODSEQ` of
    /// RFC 7162 §7): flags, dates, addresses, HEADER, sizes, sequence and UID
    /// sets, NOT, OR and parenthesised lists, nested at most
    /// [`MAX_DEPTH`](super::MAX_DEPTH).
    pub(super) fn search_key(&mut self) -> R<SearchKey> {
        if self.peek() == Some(b'(') {
            self.open()?;
            let mut keys = vec![self.search_key()?];
            while !self.eat(b')') {
                self.sp()?;
                keys.push(self.search_key()?);
            }
            self.depth -= 1;
            return Ok(SearchKey::And(keys));
        }
        if self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'*') {
            return Ok(SearchKey::Seq(self.seq_set()?));
        }
        let name = self.atom()?.to_ascii_uppercase();
        let mut s = || -> R<String> {
            self.sp()?;
            self.astring()
        };
        Ok(match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Flag("\\Answered", true),
            "DELETED" => SearchKey::Flag("\\Deleted", true),
            "DRAFT" => SearchKey::Flag("\\Draft", true),
            "FLAGGED" => SearchKey::Flag("\\Flagged", true),
            "SEEN" => SearchKey::Flag("\\Seen", true),
            "UNANSWERED" => SearchKey::Flag("\\Answered", false),
            "UNDELETED" => SearchKey::Flag("\\Deleted", false),
            "UNDRAFT" => SearchKey::Flag("\\Draft", false),
            "UNFLAGGED" => SearchKey::Flag("\\Flagged", false),
            "UNSEEN" => SearchKey::Flag("\\Seen", false),
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "KEYWORD" => SearchKey::Keyword(s()?, true),
            "UNKEYWORD" => SearchKey::Keyword(s()?, false),
            "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => {
                let v = s()?;
                let field = name[..1].to_string() + &name[1..].to_ascii_lowercase();
                SearchKey::Header(field, v)
            }
            "HEADER" => {
                let f = s()?;
                let v = s()?;
                SearchKey::Header(f, v)
            }
            "BODY" => SearchKey::Body(s()?),
            "TEXT" => SearchKey::Text(s()?),
            "LARGER" => {
                self.sp()?;
                SearchKey::Larger(self.number()?)
            }
            "SMALLER" => {
                self.sp()?;
                SearchKey::Smaller(self.number()?)
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match name.as_str() {
                    "BEFORE" => SearchKey::Before(d),
                    "ON" => SearchKey::On(d),
                    "SINCE" => SearchKey::Since(d),
                    "SENTBEFORE" => SearchKey::SentBefore(d),
                    "SENTON" => SearchKey::SentOn(d),
                    _ => SearchKey::SentSince(d),
                }
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.seq_set()?)
            }
            // RFC 7162 §3.1.5: `MODSEQ [SP entry-name SP entry-type-req]
            // SP mod-sequence-valzer`. Changes are not kept per flag here,
            // so an entry (`"/flags/\\seen" all`) narrows nothing: the
            // message's own MODSEQ is compared, as RFC 7162 permits.
            "MODSEQ" => {
                self.sp()?;
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    let kind = self.atom()?;
                    if !["priv", "shared", "all"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(kind))
                    {
                        return Err(format!("bad MODSEQ entry type {kind}"));
                    }
                    self.sp()?;
                }
                SearchKey::ModSeq(self.number()?)
            }
            "NOT" => {
                self.sp()?;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err("too deeply nested".into());
                }
                let k = self.search_key()?;
                self.depth -= 1;
                SearchKey::Not(Box::new(k))
            }
            "OR" => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err("too deeply nested".into());
                }
                self.sp()?;
                let a = self.search_key()?;
                self.sp()?;
                let b = self.search_key()?;
                self.depth -= 1;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            _ => return Err(format!("unknown search key {name}")),
        })
    }
}
