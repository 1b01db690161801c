//! IMAP command syntax (RFC 9051 §9, with the RFC 3501 forms rev1 clients
//! send): bytes in, a typed command out. No I/O here.
//!
//! The session hands over one complete command as it came off the wire:
//! the line, and after each `{n}`/`{n+}` the CRLF and the n literal bytes
//! (the session has already checked n against its limits). So the parser
//! sees exactly the RFC grammar and can be fuzzed on raw bytes.
//!
//! Layout: `lexer` holds the primitives (atoms, strings, numbers, sets,
//! flags, dates), `fetch` and `search` the two large grammars, `date` the
//! IMAP date forms; each rule carries its ABNF (RFC 9051 §9) as its doc
//! comment. This file has the command types and the command grammar.

use std::fmt;

mod date;
mod fetch;
mod lexer;
mod search;

pub use date::{format_date_time, parse_date, parse_date_time};
use lexer::{P, R};

/// Deepest nesting of parentheses the parser follows (SEARCH, lists).
pub const MAX_DEPTH: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    pub tag: String,
    pub cmd: Command,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not even a tag: answer with an untagged BAD.
    NoTag,
    /// A tag, but the rest is wrong: answer `tag BAD <msg>`.
    Bad { tag: String, msg: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqBound {
    Num(u32),
    /// `*`: the largest number in use.
    Star,
}

/// A sequence set (RFC 9051 §9 `sequence-set`): ranges, in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSet(pub Vec<(SeqBound, SeqBound)>);

impl SeqSet {
    /// The set as sorted, merged, inclusive ranges, given `*`.
    pub fn ranges(&self, max: u32) -> Vec<(u32, u32)> {
        let v = |b: SeqBound| match b {
            SeqBound::Num(x) => x,
            SeqBound::Star => max,
        };
        let mut r: Vec<(u32, u32)> = self
            .0
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (v(a), v(b));
                if a <= b { (a, b) } else { (b, a) }
            })
            .collect();
        r.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Does `n` fall in the set, given the largest number in use (`*`)?
    pub fn contains(&self, n: u32, max: u32) -> bool {
        let v = |b: SeqBound| match b {
            SeqBound::Num(x) => x,
            SeqBound::Star => max,
        };
        self.0.iter().any(|&(a, b)| {
            let (a, b) = (v(a), v(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            lo <= n && n <= hi
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    /// `BODY[]` or `BODY[1.2]`: the whole message or part.
    Full,
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: SectionText,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    BodyStructure,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    ModSeq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Add,
    Remove,
    Replace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Flag(&'static str, bool),
    New,
    Old,
    Recent,
    Keyword(String, bool),
    Header(String, String),
    Body(String),
    Text(String),
    Larger(u64),
    Smaller(u64),
    /// Internal date, as days since 1970-01-01.
    Before(i64),
    On(i64),
    Since(i64),
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Uid(SeqSet),
    Seq(SeqSet),
    ModSeq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

/// SELECT's QRESYNC parameter (RFC 7162 §3.2.5): what the client last
/// knew of the mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u64,
    pub modseq: u64,
    pub known_uids: Option<SeqSet>,
}

/// LIST and LSUB (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListArgs {
    pub reference: String,
    pub patterns: Vec<String>,
    pub subscribed_only: bool,
    /// RFC 6154 §3 selection option: only special-use mailboxes.
    pub special_use_only: bool,
    /// RFC 5258 §3.5: also parents whose children match the selection.
    pub recursive_match: bool,
    pub lsub: bool,
    pub return_subscribed: bool,
    pub return_special_use: bool,
    pub return_status: Option<Vec<StatusItem>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Check,
    Login {
        user: String,
        pass: String,
    },
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Enable(Vec<String>),
    Id,
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    Create(String),
    Delete(String),
    Rename(String, String),
    Subscribe(String),
    Unsubscribe(String),
    List(ListArgs),
    Namespace,
    /// RFC 4978: `compress = "COMPRESS" SP algorithm`.
    Compress(String),
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<String>,
        date: Option<i64>,
        message: Vec<u8>,
    },
    Idle,
    Close,
    Unselect,
    Expunge {
        uids: Option<SeqSet>,
    },
    Search {
        uid: bool,
        /// `RETURN (...)` of ESEARCH (RFC 4731); `Some(empty)` means ALL.
        ret: Option<Vec<String>>,
        key: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
        /// RFC 7162 §3.2.6: also report what vanished since CHANGEDSINCE.
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SeqSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
}

impl Command {
    /// The command's name, for the per-state table and log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Check => "CHECK",
            Command::Login { .. } => "LOGIN",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Enable(_) => "ENABLE",
            Command::Id => "ID",
            Command::Select {
                read_only: false, ..
            } => "SELECT",
            Command::Select { .. } => "EXAMINE",
            Command::Create(_) => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename(..) => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List(ListArgs { lsub: true, .. }) => "LSUB",
            Command::List(_) => "LIST",
            Command::Namespace => "NAMESPACE",
            Command::Compress(_) => "COMPRESS",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Idle => "IDLE",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge { .. } => "EXPUNGE",
            Command::Search { .. } => "SEARCH",
            Command::Fetch { .. } => "FETCH",
            Command::Store { .. } => "STORE",
            Command::Copy { .. } => "COPY",
            Command::Move { .. } => "MOVE",
        }
    }
}

/// If a line (with its CRLF) ends in a literal announcement `{n}` or
/// `{n+}`, returns n and whether it is non-synchronizing (LITERAL+,
/// RFC 7888). An unparseable or absurd count is `Some((u64::MAX, _))`, so
/// the caller refuses it before allocating anything.
pub fn literal_suffix(line: &[u8]) -> Option<(u64, bool)> {
    let l = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let mut digits = &l[open + 1..];
    let nonsync = digits.last() == Some(&b'+');
    if nonsync {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Some((n, nonsync))
}

impl P<'_> {
    /// `status-att = "MESSAGES" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" /
    /// "DELETED" / "SIZE"` (RFC 9051 §9), with rev1's `"RECENT"` and
    /// `"HIGHESTMODSEQ"` (RFC 7162 §7), in a parenthesised list.
    fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.open()?;
        let mut v = Vec::new();
        while !self.eat(b')') {
            if !v.is_empty() {
                self.sp()?;
            }
            v.push(match self.atom()?.to_ascii_uppercase().as_str() {
                "MESSAGES" => StatusItem::Messages,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "DELETED" => StatusItem::Deleted,
                "SIZE" => StatusItem::Size,
                "RECENT" => StatusItem::Recent,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                o => return Err(format!("unknown status item {o}")),
            });
        }
        self.depth -= 1;
        Ok(v)
    }
}

/// Parses one complete command (see the module comment).
pub fn parse_command(b: &[u8]) -> Result<Tagged, ParseError> {
    let mut p = P { b, i: 0, depth: 0 };
    let tag = match p.atom() {
        Ok(t) if !t.contains('+') => t.to_owned(),
        _ => return Err(ParseError::NoTag),
    };
    let bad = |msg: String| ParseError::Bad {
        tag: tag.clone(),
        msg,
    };
    p.sp().map_err(bad)?;
    let cmd = parse_body(&mut p).map_err(bad)?;
    Ok(Tagged { tag, cmd })
}

fn parse_body(p: &mut P<'_>) -> R<Command> {
    let name = p.atom()?.to_ascii_uppercase();
    let mut uid = false;
    let name = if name == "UID" {
        uid = true;
        p.sp()?;
        p.atom()?.to_ascii_uppercase()
    } else {
        name
    };
    let cmd = match name.as_str() {
        "CAPABILITY" if !uid => Command::Capability,
        "NOOP" if !uid => Command::Noop,
        "LOGOUT" if !uid => Command::Logout,
        "STARTTLS" if !uid => Command::StartTls,
        "CHECK" if !uid => Command::Check,
        "IDLE" if !uid => Command::Idle,
        "CLOSE" if !uid => Command::Close,
        "UNSELECT" if !uid => Command::Unselect,
        "NAMESPACE" if !uid => Command::Namespace,
        "COMPRESS" if !uid => {
            p.sp()?;
            Command::Compress(p.atom()?.to_ascii_uppercase())
        }
        "ID" if !uid => {
            // RFC 2971: the client's parameters are informational only;
            // accept NIL or a list and ignore it.
            p.sp()?;
            if p.peek() == Some(b'(') {
                p.open()?;
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    if p.atom().map(|a| a.eq_ignore_ascii_case("NIL")).is_err() {
                        p.string()?;
                    }
                }
                p.depth -= 1;
            } else if !p.atom()?.eq_ignore_ascii_case("NIL") {
                return Err("ID takes NIL or a list".into());
            }
            Command::Id
        }
        "LOGIN" if !uid => {
            p.sp()?;
            let user = p.astring()?;
            p.sp()?;
            let pass = p.astring()?;
            Command::Login { user, pass }
        }
        "AUTHENTICATE" if !uid => {
            p.sp()?;
            let mechanism = p.atom()?.to_ascii_uppercase();
            let initial = if p.eat(b' ') {
                Some(if p.eat(b'=') {
                    String::new()
                } else {
                    p.atom()?.to_owned()
                })
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        "ENABLE" if !uid => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                v.push(p.atom()?.to_ascii_uppercase());
            }
            if v.is_empty() {
                return Err("ENABLE needs a capability".into());
            }
            Command::Enable(v)
        }
        "SELECT" | "EXAMINE" if !uid => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            let mut condstore = false;
            let mut qresync = None;
            if p.eat(b' ') {
                p.open()?;
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    match p.atom()?.to_ascii_uppercase().as_str() {
                        "CONDSTORE" => condstore = true,
                        // RFC 7162 §3.2.5: QRESYNC (uidvalidity modseq
                        // [known-uids [seq-match-data]]).
                        "QRESYNC" => {
                            p.sp()?;
                            p.open()?;
                            let uidvalidity = p.number()?;
                            p.sp()?;
                            let modseq = p.number()?;
                            let mut known_uids = None;
                            if p.eat(b' ') && p.peek() != Some(b'(') {
                                known_uids = Some(p.seq_set()?);
                                p.eat(b' ');
                            }
                            // The sequence-to-UID hints only save a server
                            // work it does not need to do here; parsed and
                            // set aside.
                            if p.peek() == Some(b'(') {
                                p.open()?;
                                p.seq_set()?;
                                p.sp()?;
                                p.seq_set()?;
                                p.close()?;
                            }
                            p.close()?;
                            qresync = Some(Qresync {
                                uidvalidity,
                                modseq,
                                known_uids,
                            });
                        }
                        o => return Err(format!("unsupported select parameter {o}")),
                    }
                }
                p.depth -= 1;
            }
            Command::Select {
                mailbox,
                read_only: name == "EXAMINE",
                condstore,
                qresync,
            }
        }
        "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" if !uid => {
            p.sp()?;
            let m = p.mailbox()?;
            match name.as_str() {
                "CREATE" => {
                    // RFC 6154 §5.2 USE, RFC 4466 create params: ignored.
                    if p.eat(b' ') {
                        p.open()?;
                        let mut lvl = 1;
                        while lvl > 0 {
                            match p.peek() {
                                Some(b'(') => lvl += 1,
                                Some(b')') => lvl -= 1,
                                None => return Err("unterminated parameters".into()),
                                _ => {}
                            }
                            p.i += 1;
                        }
                        p.depth -= 1;
                    }
                    Command::Create(m)
                }
                "DELETE" => Command::Delete(m),
                "SUBSCRIBE" => Command::Subscribe(m),
                _ => Command::Unsubscribe(m),
            }
        }
        "RENAME" if !uid => {
            p.sp()?;
            let a = p.mailbox()?;
            p.sp()?;
            let b = p.mailbox()?;
            Command::Rename(a, b)
        }
        "LIST" | "LSUB" if !uid => {
            p.sp()?;
            let lsub = name == "LSUB";
            let mut subscribed_only = lsub;
            let (mut special_use_only, mut recursive_match) = (false, false);
            // RFC 5258 LIST-EXTENDED selection options.
            if !lsub && p.peek() == Some(b'(') {
                p.open()?;
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    match p.atom()?.to_ascii_uppercase().as_str() {
                        "SUBSCRIBED" => subscribed_only = true,
                        "SPECIAL-USE" => special_use_only = true,
                        "RECURSIVEMATCH" => recursive_match = true,
                        // No remote mailboxes here: REMOTE changes nothing.
                        "REMOTE" => {}
                        o => return Err(format!("unsupported LIST option {o}")),
                    }
                }
                p.depth -= 1;
                p.sp()?;
                // RFC 5258 §3.1: RECURSIVEMATCH needs a selection option
                // it can modify.
                if recursive_match && !subscribed_only && !special_use_only {
                    return Err("RECURSIVEMATCH needs another selection option".into());
                }
            }
            let reference = p.mailbox()?;
            p.sp()?;
            let mut patterns = Vec::new();
            if !lsub && p.peek() == Some(b'(') {
                p.open()?;
                while !p.eat(b')') {
                    if !patterns.is_empty() {
                        p.sp()?;
                    }
                    patterns.push(p.list_mailbox()?);
                }
                p.depth -= 1;
            } else {
                patterns.push(p.list_mailbox()?);
            }
            let (mut rs, mut ru, mut rst) = (subscribed_only && !lsub, false, None);
            if !lsub && p.eat(b' ') {
                if !p.atom()?.eq_ignore_ascii_case("RETURN") {
                    return Err("expected RETURN".into());
                }
                p.sp()?;
                p.open()?;
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    match p.atom()?.to_ascii_uppercase().as_str() {
                        "SUBSCRIBED" => rs = true,
                        "SPECIAL-USE" => ru = true,
                        "CHILDREN" => {}
                        "STATUS" => {
                            p.sp()?;
                            rst = Some(p.status_items()?);
                        }
                        o => return Err(format!("unsupported LIST return option {o}")),
                    }
                }
                p.depth -= 1;
            }
            Command::List(ListArgs {
                reference,
                patterns,
                subscribed_only,
                special_use_only,
                recursive_match,
                lsub,
                return_subscribed: rs,
                return_special_use: ru,
                return_status: rst,
            })
        }
        "STATUS" if !uid => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            p.sp()?;
            let items = p.status_items()?;
            Command::Status { mailbox, items }
        }
        "APPEND" if !uid => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            p.sp()?;
            let mut flags = Vec::new();
            if p.peek() == Some(b'(') {
                flags = p.flag_list()?;
                p.sp()?;
            }
            let mut date = None;
            if p.peek() == Some(b'"') {
                let s = String::from_utf8(p.quoted()?).map_err(|_| "bad date-time")?;
                date = Some(parse_date_time(&s).ok_or("bad date-time")?);
                p.sp()?;
            }
            let message = p.literal()?;
            Command::Append {
                mailbox,
                flags,
                date,
                message,
            }
        }
        "EXPUNGE" => {
            let uids = if uid {
                p.sp()?;
                Some(p.seq_set()?)
            } else {
                None
            };
            Command::Expunge { uids }
        }
        "SEARCH" => {
            p.sp()?;
            let mut ret = None;
            let save = p.i;
            if p.atom().is_ok_and(|a| a.eq_ignore_ascii_case("RETURN")) {
                p.sp()?;
                p.open()?;
                let mut v = Vec::new();
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    v.push(p.atom()?.to_ascii_uppercase());
                }
                p.depth -= 1;
                ret = Some(v);
                p.sp()?;
            } else {
                p.i = save;
            }
            let save = p.i;
            if p.atom().is_ok_and(|a| a.eq_ignore_ascii_case("CHARSET")) {
                p.sp()?;
                let cs = p.astring()?;
                if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                    return Err(format!("[BADCHARSET (UTF-8 US-ASCII)] charset {cs}"));
                }
                p.sp()?;
            } else {
                p.i = save;
            }
            let mut keys = vec![p.search_key()?];
            while p.eat(b' ') {
                keys.push(p.search_key()?);
            }
            let key = if keys.len() == 1 {
                keys.pop().unwrap_or(SearchKey::All)
            } else {
                SearchKey::And(keys)
            };
            Command::Search { uid, ret, key }
        }
        "FETCH" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mut items = Vec::new();
            if p.peek() == Some(b'(') {
                p.open()?;
                while !p.eat(b')') {
                    if !items.is_empty() {
                        p.sp()?;
                    }
                    items.extend(p.fetch_att()?);
                }
                p.depth -= 1;
            } else {
                items = p.fetch_att()?;
            }
            let mut changed_since = None;
            let mut vanished = false;
            if p.eat(b' ') {
                // RFC 7162 §3.1.4.1 and §3.2.6 FETCH modifiers.
                p.open()?;
                while !p.eat(b')') {
                    if p.peek() == Some(b' ') {
                        p.sp()?;
                    }
                    match p.atom()?.to_ascii_uppercase().as_str() {
                        "CHANGEDSINCE" => {
                            p.sp()?;
                            changed_since = Some(p.number()?);
                        }
                        "VANISHED" => vanished = true,
                        _ => return Err("unsupported FETCH modifier".into()),
                    }
                }
                p.depth -= 1;
                // §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
                if vanished && (!uid || changed_since.is_none()) {
                    return Err("VANISHED needs UID FETCH and CHANGEDSINCE".into());
                }
            }
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            }
        }
        "STORE" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mut unchanged_since = None;
            if p.peek() == Some(b'(') {
                p.open()?;
                if !p.atom()?.eq_ignore_ascii_case("UNCHANGEDSINCE") {
                    return Err("unsupported STORE modifier".into());
                }
                p.sp()?;
                unchanged_since = Some(p.number()?);
                p.close()?;
                p.sp()?;
            }
            let item = p.atom()?.to_ascii_uppercase();
            let (op, rest) = match item.as_bytes().first() {
                Some(b'+') => (StoreOp::Add, &item[1..]),
                Some(b'-') => (StoreOp::Remove, &item[1..]),
                _ => (StoreOp::Replace, &item[..]),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return Err("expected FLAGS".into()),
            };
            p.sp()?;
            let flags = if p.peek() == Some(b'(') {
                p.flag_list()?
            } else {
                let mut v = vec![p.flag()?];
                while p.eat(b' ') {
                    v.push(p.flag()?);
                }
                v
            };
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            }
        }
        "COPY" | "MOVE" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mailbox = p.mailbox()?;
            if name == "COPY" {
                Command::Copy { uid, set, mailbox }
            } else {
                Command::Move { uid, set, mailbox }
            }
        }
        _ => return Err(format!("unknown command {name}")),
    };
    p.end()?;
    Ok(cmd)
}

// Modified UTF-7 (RFC 3501 §5.1.3) lives in the core: the outside-account
// client needs it too.
pub use mailcore::mutf7::{decode as mutf7_decode, encode as mutf7_encode};

/// An IMAP string for a response: a quoted string when it is short and
/// plain, else a literal, so no byte a client sent can break the syntax.
pub struct IString<'a>(pub &'a [u8]);

impl fmt::Display for IString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self.0.len() < 1000
            && self
                .0
                .iter()
                .all(|&c| c >= 0x20 && c != 0x7f && c != b'"' && c != b'\\' && c < 0x80);
        if plain {
            write!(f, "\"{}\"", String::from_utf8_lossy(self.0))
        } else {
            write!(f, "{{{}}}\r\n", self.0.len())?;
            f.write_str(&String::from_utf8_lossy(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Command {
        parse_command(s.as_bytes()).unwrap().cmd
    }

    #[test]
    fn login_with_quoted_and_literal_strings() {
        assert_eq!(
            cmd("a1 LOGIN alice \"pa ss\\\"w\"\r\n"),
            Command::Login {
                user: "alice".into(),
                pass: "pa ss\"w".into()
            }
        );
        assert_eq!(
            cmd("a1 LOGIN {5}\r\nalice {3+}\r\npw!\r\n"),
            Command::Login {
                user: "alice".into(),
                pass: "pw!".into()
            }
        );
    }

    #[test]
    fn literal_suffix_finds_announcements() {
        assert_eq!(literal_suffix(b"a LOGIN {5}\r\n"), Some((5, false)));
        assert_eq!(literal_suffix(b"a APPEND x {12+}\r\n"), Some((12, true)));
        assert_eq!(
            literal_suffix(b"a LOGIN {4294967295999999999999}\r\n"),
            Some((u64::MAX, false))
        );
        assert_eq!(literal_suffix(b"a NOOP\r\n"), None);
        assert_eq!(literal_suffix(b"a X {}\r\n"), None);
    }

    #[test]
    fn fetch_items_sections_and_partials() {
        match cmd(
            "7 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1.2.MIME] BODY[]<0.100>)\r\n",
        ) {
            Command::Fetch {
                uid, set, items, ..
            } => {
                assert!(uid);
                assert_eq!(set, SeqSet(vec![(SeqBound::Num(1), SeqBound::Star)]));
                assert_eq!(items[0], FetchItem::Flags);
                assert_eq!(
                    items[1],
                    FetchItem::BodySection {
                        peek: true,
                        section: Section {
                            part: vec![],
                            text: SectionText::HeaderFields(vec!["From".into(), "Subject".into()])
                        },
                        partial: None
                    }
                );
                assert_eq!(
                    items[2],
                    FetchItem::BodySection {
                        peek: false,
                        section: Section {
                            part: vec![1, 2],
                            text: SectionText::Mime
                        },
                        partial: None
                    }
                );
                assert_eq!(
                    items[3],
                    FetchItem::BodySection {
                        peek: false,
                        section: Section {
                            part: vec![],
                            text: SectionText::Full
                        },
                        partial: Some((0, 100))
                    }
                );
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn search_keys_nest_but_not_forever() {
        match cmd("s SEARCH OR FROM alice (UNSEEN NOT DELETED) UID 3:5\r\n") {
            Command::Search {
                key: SearchKey::And(k),
                ..
            } => {
                assert_eq!(k.len(), 2);
                assert!(matches!(k[0], SearchKey::Or(..)));
                assert!(matches!(k[1], SearchKey::Uid(_)));
            }
            o => panic!("{o:?}"),
        }
        let deep = format!("s SEARCH {}ALL{}\r\n", "(".repeat(50), ")".repeat(50));
        assert!(matches!(
            parse_command(deep.as_bytes()),
            Err(ParseError::Bad { .. })
        ));
        let nots = format!("s SEARCH {}ALL\r\n", "NOT ".repeat(50));
        assert!(matches!(
            parse_command(nots.as_bytes()),
            Err(ParseError::Bad { .. })
        ));
    }

    #[test]
    fn store_list_status_append_select() {
        assert!(matches!(
            cmd("a STORE 1,3:4 +FLAGS.SILENT (\\Seen $Junk)\r\n"),
            Command::Store { op: StoreOp::Add, silent: true, ref flags, .. } if flags == &["\\Seen", "$Junk"]
        ));
        assert!(matches!(
            cmd("a LIST (SUBSCRIBED) \"\" (\"*\" INBOX) RETURN (STATUS (MESSAGES UNSEEN) SPECIAL-USE)\r\n"),
            Command::List(ListArgs { subscribed_only: true, return_special_use: true, return_status: Some(_), ref patterns, .. }) if patterns.len() == 2
        ));
        assert!(matches!(
            cmd("a APPEND Sent (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {3}\r\nabc\r\n"),
            Command::Append { date: Some(837596665), ref message, .. } if message == b"abc"
        ));
        assert!(matches!(
            cmd("a select inbox (CONDSTORE)\r\n"),
            Command::Select { ref mailbox, condstore: true, read_only: false, qresync: None } if mailbox == "INBOX"
        ));
        // RFC 7162 §3.2.5 and §3.2.6.
        match cmd(
            "a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 4:6)))\r\n",
        ) {
            Command::Select {
                qresync: Some(q), ..
            } => {
                assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
                let k = q.known_uids.unwrap();
                assert!(k.contains(43, 0) && !k.contains(42, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cmd("a SELECT INBOX (QRESYNC (1 2))\r\n"),
            Command::Select {
                qresync: Some(Qresync {
                    known_uids: None,
                    ..
                }),
                ..
            }
        ));
        assert!(matches!(
            cmd("a UID FETCH 1:* FLAGS (CHANGEDSINCE 12 VANISHED)\r\n"),
            Command::Fetch {
                vanished: true,
                changed_since: Some(12),
                ..
            }
        ));
        assert!(parse_command(b"a FETCH 1:* FLAGS (CHANGEDSINCE 12 VANISHED)\r\n").is_err());
        assert!(matches!(
            cmd("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n"),
            Command::Search {
                key: SearchKey::ModSeq(620162338),
                ..
            }
        ));
    }

    #[test]
    fn errors_keep_the_tag() {
        assert_eq!(parse_command(b"\r\n"), Err(ParseError::NoTag));
        assert!(
            matches!(parse_command(b"t1 FROB\r\n"), Err(ParseError::Bad { tag, .. }) if tag == "t1")
        );
        assert!(matches!(
            parse_command(b"t1 LOGIN {10}\r\nabc\r\n"),
            Err(ParseError::Bad { .. })
        ));
        assert!(matches!(
            parse_command(b"t1 FETCH 0 FLAGS\r\n"),
            Err(ParseError::Bad { .. })
        ));
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        assert_eq!(format_date_time(837596665), "17-Jul-1996 09:44:25 +0000");
        assert_eq!(
            parse_date_time("17-Jul-1996 09:44:25 +0000"),
            Some(837596665)
        );
        // Leap days: 2000 and 2024 have one, 1900 and 2100 do not.
        let day = |s| parse_date(s).unwrap();
        assert_eq!(day("1-Mar-2000") - day("28-Feb-2000"), 2);
        assert_eq!(day("1-Mar-2024") - day("28-Feb-2024"), 2);
        assert_eq!(day("1-Mar-1900") - day("28-Feb-1900"), 1);
        assert_eq!(day("1-Mar-2100") - day("28-Feb-2100"), 1);
        assert_eq!(day("31-Dec-1969"), -1);
        // Every day of four centuries formats and reads back as itself.
        for d in day("1-Jan-1900")..day("1-Jan-2300") {
            let text = format_date_time(d * 86400 + 3661);
            assert!(text.ends_with(" 01:01:01 +0000"), "{text}");
            let date = text.split(' ').find(|p| !p.is_empty()).unwrap();
            assert_eq!(parse_date(date), Some(d), "{text}");
        }
    }

    #[test]
    fn modified_utf7_round_trips() {
        // RFC 3501 §5.1.3's own example.
        assert_eq!(
            mutf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(
            mutf7_encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mutf7_encode("Entwürfe & Co"), "Entw&APw-rfe &- Co");
        assert_eq!(
            mutf7_decode("Entw&APw-rfe &- Co").as_deref(),
            Some("Entwürfe & Co")
        );
        assert_eq!(mutf7_decode("bad&"), None);
        assert_eq!(mutf7_encode("😀"), "&2D3eAA-");
        assert_eq!(mutf7_decode("&2D3eAA-").as_deref(), Some("😀"));
    }

    #[test]
    fn strings_that_are_not_plain_become_literals() {
        assert_eq!(IString(b"hello").to_string(), "\"hello\"");
        assert_eq!(IString(b"a\"b").to_string(), "{3}\r\na\"b");
        assert_eq!(IString(b"x\r\ny").to_string(), "{4}\r\nx\r\ny");
    }
}
