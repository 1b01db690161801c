//! The webmail's rule builder: a list of "if this, do that" rules, a
//! vacation reply and a forward, written out as one Sieve script. The form
//! is kept beside the script (JSON) so the page can show it again; Sieve
//! is what runs, and what ManageSieve clients and the raw view see.

use serde::{Deserialize, Serialize};

/// What a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    From,
    To,
    Subject,
    /// Any header, named in [`Rule::header`].
    Header,
    /// `List-Id` (RFC 2919).
    ListId,
    /// The message size in kilobytes.
    SizeOver,
    SizeUnder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Contains,
    Is,
    /// Wildcards `*` and `?` (Sieve `:matches`).
    Matches,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// To the folder in [`Rule::arg`].
    Move,
    MarkRead,
    Flag,
    /// The keyword in [`Rule::arg`] (`$Label1`...).
    Label,
    /// A copy to the address in [`Rule::arg`]; the message stays here too.
    Forward,
    /// Sent back with the text in [`Rule::arg`].
    Reject,
    Discard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub field: Field,
    /// For [`Field::Header`].
    #[serde(default)]
    pub header: String,
    pub op: Op,
    pub value: String,
    pub action: Action,
    #[serde(default)]
    pub arg: String,
    /// No later rule runs for a message this one matched.
    #[serde(default)]
    pub stop: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vacation {
    pub subject: String,
    pub body: String,
    /// One reply per sender per this many days (RFC 5230 §4.1; 1 at
    /// least).
    pub days: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub to: String,
    /// Keep a copy here too.
    pub keep: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub vacation: Option<Vacation>,
    #[serde(default)]
    pub forward: Option<Forward>,
}

/// A field, test or action from its form name (`list_id`, `mark_read`).
pub fn parse_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Most rules one form holds.
pub const MAX_RULES: usize = 100;
/// Longest value, folder, reason or vacation subject.
const MAX_TEXT: usize = 1000;
const MAX_BODY: usize = 8000;

/// A Sieve quoted string (RFC 5228 §2.4.2): `"` and `\` escaped. Line
/// breaks stay: a quoted string may span lines.
fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 76
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_address(a: &str) -> Result<(), String> {
    crate::address::Address::parse(a.trim())
        .map(|_| ())
        .map_err(|_| format!("{a:?} is not an email address"))
}

impl RuleForm {
    /// Refuses what the script could not say or a user would not mean.
    pub fn check(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            if r.value.len() > MAX_TEXT || r.arg.len() > MAX_TEXT {
                return Err(format!("rule {n}: the text is too long"));
            }
            if r.value.trim().is_empty() {
                return Err(format!("rule {n}: say what to look for"));
            }
            if r.field == Field::Header && !valid_header_name(r.header.trim()) {
                return Err(format!("rule {n}: {:?} is not a header name", r.header));
            }
            if matches!(r.field, Field::SizeOver | Field::SizeUnder)
                && r.value.trim().parse::<u32>().is_err()
            {
                return Err(format!("rule {n}: the size is a number of kilobytes"));
            }
            match r.action {
                Action::Move | Action::Label if r.arg.trim().is_empty() => {
                    return Err(format!("rule {n}: say which folder or label"));
                }
                Action::Label if crate::messages::Keyword::parse(r.arg.trim()).is_none() => {
                    return Err(format!("rule {n}: {:?} cannot be a label", r.arg));
                }
                Action::Forward => check_address(&r.arg).map_err(|e| format!("rule {n}: {e}"))?,
                _ => {}
            }
        }
        if let Some(v) = &self.vacation {
            if v.subject.len() > MAX_TEXT || v.body.len() > MAX_BODY {
                return Err("the vacation reply is too long".into());
            }
            if v.body.trim().is_empty() {
                return Err("the vacation reply needs a text".into());
            }
            if v.subject.contains(['\r', '\n']) {
                return Err("the vacation subject is one line".into());
            }
        }
        if let Some(f) = &self.forward {
            check_address(&f.to).map_err(|e| format!("forwarding: {e}"))?;
        }
        Ok(())
    }

    /// The script. The order is: vacation first (it must see every
    /// message, RFC 5230 §4.7), then the rules, then the forward.
    pub fn to_sieve(&self) -> String {
        let mut need = vec!["fileinto", "imap4flags", "copy", "variables"];
        if self.rules.iter().any(|r| r.action == Action::Reject) {
            need.push("reject");
        }
        if self.vacation.is_some() {
            need.push("vacation");
        }
        let mut s =
            String::from("# Made by Tern's rule builder; editing it here turns the form off.\n");
        s.push_str(&format!(
            "require [{}];\n",
            need.iter().map(|n| q(n)).collect::<Vec<_>>().join(", ")
        ));
        if let Some(v) = &self.vacation {
            let days = v.days.clamp(1, 365);
            s.push_str(&format!("vacation :days {days}"));
            if !v.subject.trim().is_empty() {
                s.push_str(&format!(" :subject {}", q(v.subject.trim())));
            }
            s.push_str(&format!(" {};\n", q(&v.body.replace("\r\n", "\n"))));
        }
        for r in &self.rules {
            let value = r.value.trim();
            let m = match r.op {
                Op::Contains => ":contains",
                Op::Is => ":is",
                Op::Matches => ":matches",
            };
            let test = match r.field {
                Field::From => format!("address {m} \"from\" {}", q(value)),
                Field::To => format!("address {m} [\"to\", \"cc\"] {}", q(value)),
                Field::Subject => format!("header {m} \"subject\" {}", q(value)),
                Field::Header => format!("header {m} {} {}", q(r.header.trim()), q(value)),
                Field::ListId => format!("header {m} \"list-id\" {}", q(value)),
                Field::SizeOver => format!("size :over {}K", value.parse::<u32>().unwrap_or(0)),
                Field::SizeUnder => format!("size :under {}K", value.parse::<u32>().unwrap_or(0)),
            };
            let arg = r.arg.trim();
            let action = match r.action {
                Action::Move => format!("fileinto {};", q(arg)),
                Action::MarkRead => "addflag \"\\\\Seen\";".to_owned(),
                Action::Flag => "addflag \"\\\\Flagged\";".to_owned(),
                Action::Label => format!("addflag {};", q(arg)),
                Action::Forward => format!("redirect :copy {};", q(arg)),
                Action::Reject => format!(
                    "reject {};",
                    q(if arg.is_empty() {
                        "Refused by the recipient's rules."
                    } else {
                        arg
                    })
                ),
                Action::Discard => "discard;".to_owned(),
            };
            // "Stop" ends the rules, not the forward below them: a
            // variable says a rule matched. What is sent back or deleted
            // is not filed or forwarded by anything after it: a real stop.
            let stop = if matches!(r.action, Action::Reject | Action::Discard) {
                " stop;"
            } else if r.stop {
                " set \"done\" \"1\";"
            } else {
                ""
            };
            s.push_str(&format!(
                "if allof(string :is \"${{done}}\" \"\", {test}) {{ {action}{stop} }}\n"
            ));
        }
        if let Some(f) = &self.forward {
            let copy = if f.keep { ":copy " } else { "" };
            s.push_str(&format!("redirect {copy}{};\n", q(f.to.trim())));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_compiles_and_escapes_its_strings() {
        let f = RuleForm {
            rules: vec![
                Rule {
                    field: Field::Subject,
                    header: String::new(),
                    op: Op::Contains,
                    value: "say \"hi\" \\ there".into(),
                    action: Action::Move,
                    arg: "Bills".into(),
                    stop: true,
                },
                Rule {
                    field: Field::Header,
                    header: "X-Spam".into(),
                    op: Op::Is,
                    value: "yes".into(),
                    action: Action::Reject,
                    arg: "no \"spam\"".into(),
                    stop: false,
                },
                Rule {
                    field: Field::SizeOver,
                    header: String::new(),
                    op: Op::Is,
                    value: "500".into(),
                    action: Action::Label,
                    arg: "$Label2".into(),
                    stop: false,
                },
            ],
            vacation: Some(Vacation {
                subject: "Away".into(),
                body: "Back on \"Monday\".\nAnn".into(),
                days: 7,
            }),
            forward: Some(Forward {
                to: "ann@else.test".into(),
                keep: true,
            }),
        };
        f.check().unwrap();
        let s = f.to_sieve();
        assert!(
            s.contains(r#"header :contains "subject" "say \"hi\" \\ there""#),
            "{s}"
        );
        assert!(s.contains("redirect :copy \"ann@else.test\";"), "{s}");
        assert!(s.contains("size :over 500K"), "{s}");
        super::super::eval::compile(&s).unwrap();
        let bad = RuleForm {
            rules: vec![Rule {
                field: Field::Header,
                header: "X: y".into(),
                ..f.rules[1].clone()
            }],
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }
}
