//! Mailbox commands: LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9,
//! LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154, LIST-STATUS RFC 5819),
//! and STATUS (§6.3.11).

use super::prelude::*;

impl Session {
    /// CREATE (RFC 9051 §6.3.4); missing superiors are created too, and a
    /// trailing separator only declares the name (§6.3.4, RFC 3501 §6.3.3).
    pub(in crate::imap) async fn create(&mut self, tag: &str, name: String) -> Res {
        let name = declared_name(name);
        self.mail()?
            .create_mailbox(&name, NewMailbox::Unsubscribed)
            .await?;
        self.ok(tag, "CREATE completed").await
    }

    /// DELETE (RFC 9051 §6.3.5): never INBOX.
    pub(in crate::imap) async fn delete(&mut self, tag: &str, name: &str) -> Res {
        if name == "INBOX" {
            return self.no(tag, Code::Cannot, "INBOX cannot be deleted").await;
        }
        self.mail()?.delete_mailbox(name).await?;
        self.ok(tag, "DELETE completed").await
    }

    /// RENAME (RFC 9051 §6.3.6): the mailbox keeps its UIDVALIDITY.
    pub(in crate::imap) async fn rename(&mut self, tag: &str, from: &str, to: &str) -> Res {
        self.mail()?.rename_mailbox(from, to).await?;
        self.ok(tag, "RENAME completed").await
    }

    /// SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8): a name may be
    /// subscribed before it exists and stays subscribed after DELETE.
    pub(in crate::imap) async fn subscribe(&mut self, tag: &str, name: String, on: bool) -> Res {
        let name = if on { declared_name(name) } else { name };
        self.mail()?.set_subscribed(&name, on).await?;
        let done = if on {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        };
        self.ok(tag, done).await
    }

    /// STATUS (RFC 9051 §6.3.11).
    pub(in crate::imap) async fn status(
        &mut self,
        tag: &str,
        mailbox: &str,
        items: &[StatusItem],
    ) -> Res {
        let mail = self.mail()?;
        let mb = mail
            .mailbox_status(mailbox)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("mailbox {mailbox}")))?;
        let wire = self.name_out(&mb.name);
        let line = status_line(mail, &mb, &wire, items).await?;
        self.reply(Response::data(line)).await?;
        self.ok(tag, "STATUS completed").await
    }

    /// APPEND (RFC 9051 §6.3.12), answering APPENDUID (RFC 4315 §3); a
    /// missing mailbox is TRYCREATE (§7.1).
    pub(in crate::imap) async fn append(
        &mut self,
        tag: &str,
        mailbox: &str,
        flags: &[String],
        date: Option<i64>,
        message: &[u8],
    ) -> Res {
        let flags = match parse_flags(flags) {
            Ok(f) => f,
            Err(e) => {
                self.reply(Response::bad(tag, e)).await?;
                return Ok(Flow::Continue);
            }
        };
        let Some(mb) = self.mail()?.mailbox(mailbox).await? else {
            return self.no(tag, Code::TryCreate, "No such mailbox").await;
        };
        let uid = mb.append_flagged(message, &flags, date).await?;
        self.sync(true).await?;
        let code = Code::AppendUid {
            uidvalidity: mb.head().uidvalidity,
            uid,
        };
        self.ok_with(tag, code, "APPEND completed").await
    }

    #[allow(clippy::too_many_arguments)]
    /// LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9, RFC 5258
    /// LIST-EXTENDED, RFC 6154 SPECIAL-USE). Superior names that are not
    /// mailboxes themselves (left when a parent is deleted) are listed as
    /// `\Noselect`, as RFC 3501 §6.3.8 asks.
    pub(in crate::imap) async fn list(&mut self, tag: &str, a: ListArgs) -> Res {
        let cmd = if a.lsub { "LSUB" } else { "LIST" };
        // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
        if a.patterns.len() == 1 && a.patterns[0].is_empty() {
            self.reply(Response::data(format!("{cmd} (\\Noselect) \"/\" \"\"")))
                .await?;
            return self.ok(tag, &format!("{cmd} completed")).await;
        }
        let mail = self.mail()?;
        let boxes = mail.mailboxes().await?;
        // Subscribed names without a mailbox (RFC 9051 §6.3.7): listed by
        // LSUB and by LIST (SUBSCRIBED) only.
        let lone = if a.lsub || a.subscribed_only {
            mail.lone_subscriptions().await?
        } else {
            Vec::new()
        };
        let by_name: HashMap<&str, &mailcore::Mailbox> =
            boxes.iter().map(|b| (b.name.as_str(), b)).collect();
        // Every mailbox, each preceded by those of its superiors that are
        // not mailboxes, once.
        let mut names: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for b in &boxes {
            for (i, _) in b.name.match_indices('/') {
                let up = &b.name[..i];
                if !by_name.contains_key(up) && seen.insert(up) {
                    names.push(up);
                }
            }
            if seen.insert(b.name.as_str()) {
                names.push(b.name.as_str());
            }
        }
        for n in &lone {
            if seen.insert(n.as_str()) {
                names.push(n.as_str());
            }
        }
        let selected = |mb: &mailcore::Mailbox| {
            (!a.subscribed_only || mb.subscribed)
                && (!a.special_use_only || mb.special_use.is_some())
        };
        let any_selection = a.subscribed_only || a.special_use_only;
        let trailing_percent = a.patterns.iter().any(|p| p.ends_with('%'));
        let matches = |name: &str| {
            a.patterns
                .iter()
                .any(|p| wildcard_match(&format!("{}{p}", a.reference), name))
        };
        let mut out = Vec::new();
        for name in names {
            if !matches(name) {
                continue;
            }
            let prefix = format!("{name}/");
            let below = || boxes.iter().filter(|b| b.name.starts_with(&prefix));
            let has_children = below().next().is_some();
            let mb = by_name.get(name).copied();
            let wire = self.name_out(name);
            let chosen = mb.is_some_and(selected);
            // RFC 5258 §3.5 (RECURSIVEMATCH), RFC 3501 §6.3.9 (LSUB with
            // a trailing %): a parent that is not chosen itself but has a
            // chosen child.
            let child_chosen = any_selection && !chosen && below().any(&selected);
            let mut attrs: Vec<&str> = Vec::new();
            let mut extended = "";
            let lone_sub = mb.is_none() && lone.iter().any(|l| l == name);
            if lone_sub {
                // RFC 5258 §3.1: a subscribed name that does not exist.
                if !a.lsub {
                    attrs.extend(["\\NonExistent", "\\Subscribed"]);
                }
            } else if chosen {
                if !a.lsub {
                    attrs.push(if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                }
            } else if a.lsub && child_chosen && trailing_percent {
                attrs.push("\\Noselect");
            } else if a.recursive_match
                // RFC 5258 §3.5: CHILDINFO tells of chosen children the
                // reply does not show; one that matches a pattern is
                // listed itself (as Dovecot does).
                && below().any(|b| selected(b) && !matches(&b.name))
            {
                match mb {
                    Some(_) => attrs.push("\\HasChildren"),
                    None => attrs.push("\\NonExistent"),
                }
                extended = if a.subscribed_only {
                    " (\"CHILDINFO\" (\"SUBSCRIBED\"))"
                } else {
                    ""
                };
            } else if mb.is_none() && !any_selection && !a.lsub {
                attrs.extend(["\\Noselect", "\\HasChildren"]);
            } else {
                continue;
            }
            if let Some(mb) = mb {
                if !a.lsub && (a.return_subscribed || a.subscribed_only) && mb.subscribed {
                    attrs.push("\\Subscribed");
                }
                // RFC 6154: the special-use attributes are always shown
                // in LIST (LSUB keeps RFC 3501's attributes only).
                if let Some(su) = mb.special_use.as_ref().filter(|_| !a.lsub) {
                    attrs.push(su.as_str());
                }
            }
            out.push(Response::data(format!(
                "{cmd} ({}) \"/\" {}{extended}",
                attrs.join(" "),
                IString(wire.as_bytes())
            )));
            if let (Some(items), Some(mb), true) = (&a.return_status, mb, chosen) {
                out.push(Response::data(
                    status_line(mail.clone(), mb, &wire, items).await?,
                ));
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        self.ok(tag, &format!("{cmd} completed")).await
    }
}

/// A free function (not a method) so its future does not borrow the
/// session, whose stream is not `Sync`.
pub(in crate::imap) async fn status_line(
    mail: Mail,
    mb: &mailcore::Mailbox,
    wire_name: &str,
    items: &[StatusItem],
) -> Result<String, Fail> {
    {
        let mut parts = Vec::new();
        let need_deleted = items.contains(&StatusItem::Deleted);
        let need_recent = items.contains(&StatusItem::Recent);
        // The counts came with `mb`; these two items read the messages.
        let owned = if need_deleted || need_recent {
            mail.mailbox(&mb.name).await?
        } else {
            None
        };
        let recent = match owned.as_ref().filter(|_| need_recent) {
            Some(o) => {
                let floor = o.recent_mark().await?;
                o.uids().await?.into_iter().filter(|u| *u >= floor).count()
            }
            None => 0,
        };
        let deleted = if let Some(o) = owned.as_ref().filter(|_| need_deleted) {
            let (list, _) = o.list(0, u64::MAX >> 1, SortOrder::UidAsc).await?;
            list.iter()
                .filter(|m| m.flags.contains(Flags::DELETED))
                .count()
        } else {
            0
        };
        for it in items {
            parts.push(match it {
                StatusItem::Messages => format!("MESSAGES {}", mb.total),
                StatusItem::UidNext => format!("UIDNEXT {}", mb.uidnext),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", mb.uidvalidity),
                StatusItem::Unseen => format!("UNSEEN {}", mb.unseen),
                StatusItem::Deleted => format!("DELETED {deleted}"),
                StatusItem::Size => format!("SIZE {}", mb.size),
                StatusItem::Recent => format!("RECENT {recent}"),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", mb.highest_modseq),
            });
        }
        Ok(format!(
            "STATUS {} ({})",
            IString(wire_name.as_bytes()),
            parts.join(" ")
        ))
    }
}

/// RFC 3501 §6.3.3, RFC 9051 §6.3.4: a trailing separator on CREATE (and
/// SUBSCRIBE) only declares that names will be made under this one; a
/// server that needs no such declaration ignores it.
pub(in crate::imap) fn declared_name(name: String) -> String {
    match name.strip_suffix('/') {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => name,
    }
}

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%`
/// anything but the hierarchy delimiter.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    // RFC 9051 §5.1: INBOX is case-insensitive, also as the first level
    // of a pattern (`inbox/%`).
    let pattern = match pattern.get(..5) {
        Some(head)
            if head.eq_ignore_ascii_case("INBOX")
                && matches!(pattern.as_bytes().get(5), None | Some(b'/')) =>
        {
            format!("INBOX{}", &pattern[5..])
        }
        _ => pattern.to_owned(),
    };
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Dynamic programming over (pattern position, name position): time
    // O(|p|·|n|) whatever wildcards a hostile client sends. `row[j]`: the
    // pattern so far matches name[..j].
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        match c {
            b'*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            b'%' => {
                // Like *, but no match across a hierarchy delimiter.
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == b'/' {
                        any = false;
                    }
                    any |= row[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard_match("*", "Archive/2026"));
        assert!(wildcard_match("%", "Archive"));
        assert!(!wildcard_match("%", "Archive/2026"));
        assert!(wildcard_match("Archive/%", "Archive/2026"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("Sent", "Sent Items"));
        assert!(wildcard_match("inbox/%", "INBOX/Lists"));
        assert!(!wildcard_match("inboxes", "INBOXES"));
        assert!(wildcard_match("%/%", "a/b"));
        assert!(!wildcard_match("%/%", "a/b/c"));
        assert!(!wildcard_match("%/%", "a"));
        assert!(wildcard_match("a%/*", "abc/d/e"));
        assert!(wildcard_match("%b%", "abc"));
        assert!(!wildcard_match("%c", "a/bc"));
        // A hostile pattern is |p|·|n| work; backtracking would not end.
        let name = "a".repeat(255);
        assert!(!wildcard_match(&format!("{}b", "*a%".repeat(100)), &name));
        assert!(wildcard_match(&"*a".repeat(100), &name));
    }
}
