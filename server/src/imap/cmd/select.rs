//! SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3, CONDSTORE and QRESYNC of
//! RFC 7162 §3.2.5), and keeping the selected view in step with the store:
//! EXISTS, EXPUNGE or VANISHED and FETCH FLAGS where §7.5.1 allows them.

use super::prelude::*;

impl Session {
    /// CLOSE (RFC 9051 §6.4.1): expunges silently unless read-only, then
    /// leaves the selected state.
    pub(in crate::imap) async fn close(&mut self, tag: &str) -> Res {
        if let State::Selected(s) = &self.state
            && !s.read_only
        {
            s.mailbox.expunge(None).await?;
        }
        self.state = State::Authenticated;
        self.ok(tag, "CLOSE completed").await
    }

    /// UNSELECT (RFC 3691, RFC 9051 §6.4.2): leaves without expunging.
    pub(in crate::imap) async fn unselect(&mut self, tag: &str) -> Res {
        self.state = State::Authenticated;
        self.ok(tag, "UNSELECT completed").await
    }

    /// SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3), with CONDSTORE and
    /// QRESYNC parameters (RFC 7162 §3.1.8, §3.2.5).
    pub(in crate::imap) async fn select(
        &mut self,
        tag: &str,
        name: &str,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) -> Res {
        // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC; BAD
        // leaves the current selection as it is.
        if qresync.is_some() && !self.qresync {
            self.reply(Response::bad(tag, "ENABLE QRESYNC first"))
                .await?;
            return Ok(Flow::Continue);
        }
        // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
        if let State::Selected(_) = self.state {
            self.state = State::Authenticated;
            self.reply(Response::untagged(
                Status::Ok,
                Some(Code::Closed),
                "Previous mailbox closed",
            ))
            .await?;
        }
        if condstore {
            self.condstore = true;
        }
        let Some(mailbox) = self.mail()?.mailbox(name).await? else {
            return self.no(tag, Code::NonExistent, "No such mailbox").await;
        };
        let mb = mailbox.head().clone();
        // The rows come from the core's index of the mailbox: only what
        // changed since another session looked is read again.
        let list = mailbox.index().await?.messages.clone();
        let uids: Vec<Uid> = list.iter().map(|m| m.uid).collect();
        // RFC 3501 §2.3.2: a read-write SELECT claims the mailbox's recent
        // messages for this session; EXAMINE only looks. The claim ends at
        // the last message this session lists, not at the UIDNEXT read
        // before: a message that arrived between the two reads is in the
        // list, and claiming only up to the older UIDNEXT would leave it to
        // be claimed again by the next session (imaptest caught one
        // message \Recent in two sessions).
        let seen_upto = uids.iter().max().map_or(Uid(0), |u| u.next());
        let floor = if read_only {
            mailbox.recent_mark().await?
        } else {
            mailbox.claim_recent(seen_upto).await?
        };
        let recent: std::collections::HashSet<Uid> =
            uids.iter().copied().filter(|u| *u >= floor).collect();
        let recent_count = recent.len();
        let first_unseen = list
            .iter()
            .position(|m| !m.flags.contains(Flags::SEEN))
            .map(|i| i + 1);
        let exists = list.len();
        let mut sel = Selected {
            mailbox,
            read_only,
            msgs: Vec::with_capacity(list.len()),
            uids,
            highest_modseq: mb.highest_modseq,
            store_modseq: mb.highest_modseq,
            recent,
            keywords: Vec::new(),
        };
        for m in list {
            sel.learn_keywords(&m.keywords);
            sel.msgs.push(Some(m));
        }
        let [flags, permanent] = sel.flag_responses();
        let ok = |code, text| Response::untagged(Status::Ok, Some(code), text);
        let mut out = vec![
            Response::data(format!("{exists} EXISTS")),
            Response::data(format!("{recent_count} RECENT")),
            flags,
            permanent,
            ok(Code::UidValidity(mb.uidvalidity), "UIDs valid"),
            ok(Code::UidNext(mb.uidnext), "Predicted next UID"),
            ok(Code::HighestModSeq(mb.highest_modseq), "Highest"),
        ];
        if self.rev2 {
            // RFC 9051 §6.3.2: the mailbox's canonical name, for rev2
            // clients only; a rev1 client (RFC 3501 §6.3.1 has no such
            // response) would take it as a second INBOX.
            out.push(Response::data(format!(
                "LIST () \"/\" {}",
                IString(self.name_out(&mb.name).as_bytes())
            )));
        }
        if let Some(n) = first_unseen {
            // RFC 3501 §7.1: rev1 clients look for UNSEEN here.
            out.insert(2, ok(Code::Unseen(n), "First unseen"));
        }
        // RFC 7162 §3.2.5.2: with the client's UIDVALIDITY, what vanished
        // and what changed since its MODSEQ, before the tagged OK.
        if let Some(q) = qresync.filter(|q| q.uidvalidity == mb.uidvalidity as u64) {
            if let Some(v) = vanished_line(&sel.uids, mb.uidnext, q.known_uids.as_ref()) {
                out.push(Response::data(v));
            }
            for (i, m) in sel.msgs.iter().enumerate() {
                let Some(m) = m else { continue };
                let known = q
                    .known_uids
                    .as_ref()
                    .is_none_or(|k| k.contains(m.uid.get() as u32, u32::MAX));
                if known && m.modseq.get() as u64 > q.modseq {
                    out.push(Response::data(format!(
                        "{} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                        i + 1,
                        m.uid,
                        fetch::flags(m, sel.recent.contains(&m.uid)),
                        m.modseq
                    )));
                }
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        self.state = State::Selected(Box::new(sel));
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.reply(Response::tagged(tag, Status::Ok, Some(code), text))
            .await?;
        Ok(Flow::Continue)
    }

    /// Brings this session's view up to date and reports the differences
    /// (RFC 9051 §7: EXISTS, EXPUNGE, FETCH FLAGS). With `expunges` false,
    /// vanished messages stay in the view, as `None`, until a command that
    /// may renumber.
    pub(in crate::imap) async fn sync(&mut self, expunges: bool) -> Result<(), Fail> {
        let qresync = self.qresync;
        let State::Selected(sel) = &mut self.state else {
            return Ok(());
        };
        // The core's kept index of the mailbox (`Core::mailbox_index`): one
        // row read says whether it is current, and the rows that changed
        // are read once for every session that looks, not once each. Only
        // when it moved on is this view compared with it, in memory.
        let index = sel.mailbox.index().await?;
        let modseq = index.highest_modseq;
        if modseq == sel.store_modseq && !sel.msgs.iter().any(Option::is_none) {
            return Ok(());
        }
        let seen_modseq = sel.store_modseq;
        sel.store_modseq = modseq;
        let rows = &index.messages;
        let max_known = sel.uids.last().copied().unwrap_or_default();
        let mut out = Vec::new();
        // New keywords first, so the FETCH responses below name only
        // flags the client has been told of.
        let mut grew = false;
        for m in rows.iter().filter(|m| m.modseq > seen_modseq) {
            grew |= sel.learn_keywords(&m.keywords);
        }
        if grew {
            out.extend(sel.flag_responses());
        }
        // Flag changes and vanished messages, in sequence order: both
        // lists ascend by UID, so one walk compares them.
        let mut j = 0;
        for (i, slot) in sel.msgs.iter_mut().enumerate() {
            let Some(old) = slot else { continue };
            while rows.get(j).is_some_and(|m| m.uid < old.uid) {
                j += 1;
            }
            let Some(new) = rows.get(j).filter(|m| m.uid == old.uid) else {
                *slot = None;
                continue;
            };
            // The view may hold a newer row than the index: this session's
            // own STORE or \Seen, read back from its write. A MODSEQ never
            // goes back (RFC 7162 §3.1.1), so the newer row stays.
            if Arc::ptr_eq(new, old) || new.modseq < old.modseq {
                continue;
            }
            if new.flags != old.flags || new.keywords != old.keywords {
                let mut l = format!(
                    "{} FETCH (UID {} FLAGS {}",
                    i + 1,
                    new.uid,
                    fetch::flags(new, sel.recent.contains(&new.uid))
                );
                if self.condstore {
                    l.push_str(&format!(" MODSEQ ({})", new.modseq));
                }
                l.push(')');
                out.push(Response::data(l));
            }
            *slot = Some(new.clone());
        }
        if expunges {
            // Report from the highest sequence number down, so each number
            // is right at the moment the client reads it; after ENABLE
            // QRESYNC, as one VANISHED by UID (RFC 7162 §3.2.10).
            let mut gone = Vec::new();
            for i in (0..sel.msgs.len()).rev() {
                if sel.msgs[i].is_none() {
                    if !qresync {
                        out.push(Response::data(format!("{} EXPUNGE", i + 1)));
                    }
                    gone.push(sel.uids[i].get() as u64);
                    sel.msgs.remove(i);
                    sel.uids.remove(i);
                }
            }
            if qresync && !gone.is_empty() {
                gone.reverse();
                out.push(Response::data(format!(
                    "VANISHED {}",
                    fetch::compress(&gone)
                )));
            }
        }
        let new: Vec<&Arc<MessageSummary>> = rows.iter().filter(|m| m.uid > max_known).collect();
        if !new.is_empty() {
            let upto = new.last().map_or(Uid(0), |m| m.uid.next());
            // New mail is \Recent for the first read-write session to see it.
            let floor = if sel.read_only {
                sel.mailbox.recent_mark().await?
            } else {
                sel.mailbox.claim_recent(upto).await?
            };
            for m in new {
                sel.uids.push(m.uid);
                if m.uid >= floor {
                    sel.recent.insert(m.uid);
                }
                sel.msgs.push(Some(Arc::clone(m)));
            }
            out.push(Response::data(format!("{} EXISTS", sel.msgs.len())));
            out.push(Response::data(format!("{} RECENT", sel.recent.len())));
        }
        sel.highest_modseq = sel.highest_modseq.max(modseq);
        for r in out {
            self.reply(r).await?;
        }
        Ok(())
    }

    /// UID FETCH's VANISHED modifier (RFC 7162 §3.2.6): the UIDs of the
    /// set that are gone. No per-message history of expunges is kept, so
    /// every UID below UIDNEXT that is not in the mailbox is named (RFC
    /// 7162 lets a server name UIDs the client never saw; it ignores them).
    pub(in crate::imap) async fn report_vanished(&mut self, set: &SeqSet) -> Result<(), Fail> {
        let State::Selected(sel) = &self.state else {
            return Ok(());
        };
        let uidnext = sel.mailbox.uidnext().await?;
        let line = vanished_line(&sel.uids, uidnext, Some(set));
        if let Some(l) = line {
            self.reply(Response::data(l)).await?;
        }
        Ok(())
    }
}

/// `* VANISHED (EARLIER) uids`: the UIDs below `uidnext` (and in `within`,
/// when given) that `present` (ascending) lacks, as ranges; None if none.
pub(in crate::imap) fn vanished_line(
    present: &[Uid],
    uidnext: Uid,
    within: Option<&SeqSet>,
) -> Option<String> {
    let top = u32::try_from(uidnext.get().saturating_sub(1)).unwrap_or(u32::MAX);
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    let mut next = 1u32;
    for &u in present {
        let u = u32::try_from(u.get()).unwrap_or(u32::MAX);
        if u > next {
            gaps.push((next, u - 1));
        }
        next = u.saturating_add(1);
    }
    if next <= top {
        gaps.push((next, top));
    }
    let want = within.map_or_else(|| vec![(1, top)], |w| w.ranges(top));
    let mut parts = Vec::new();
    for (a, b) in gaps {
        for &(c, d) in &want {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                parts.push(if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}:{hi}")
                });
            }
        }
    }
    (!parts.is_empty()).then(|| format!("VANISHED (EARLIER) {}", parts.join(",")))
}
