//! FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9), with CHANGEDSINCE and
//! VANISHED (RFC 7162 §3.1.4, §3.2.6). Message bytes are read in runs so
//! a large FETCH neither reads one row at a time nor holds everything.

use super::prelude::*;

impl Session {
    /// FETCH with VANISHED needs ENABLE QRESYNC (RFC 7162 §3.2.6), and
    /// reports the vanished UIDs before the FETCH responses.
    pub(in crate::imap) async fn fetch_command(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        items: Vec<crate::imap::proto::FetchItem>,
        changed_since: Option<u64>,
        vanished: bool,
    ) -> Res {
        if vanished && !self.qresync {
            self.reply(Response::bad(tag, "ENABLE QRESYNC first"))
                .await?;
            return Ok(Flow::Continue);
        }
        if vanished {
            self.report_vanished(set).await?;
        }
        self.fetch(tag, uid, set, items, changed_since).await
    }

    pub(in crate::imap) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        mut items: Vec<crate::imap::proto::FetchItem>,
        changed_since: Option<u64>,
    ) -> Res {
        use crate::imap::proto::FetchItem;
        self.sync(false).await?;
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        if uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        if changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
            items.push(FetchItem::ModSeq);
        }
        let Some((mailbox, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        // What the items need of each message, least first: the row alone,
        // the digest kept at delivery (ENVELOPE, BODYSTRUCTURE, BODY), the
        // header, or the whole message.
        let wants_digest = items.iter().any(fetch::in_digest);
        let wants_header = items.iter().any(fetch::in_header);
        let wants_whole = items
            .iter()
            .any(|i| fetch::needs_raw(i) && !fetch::in_digest(i) && !fetch::in_header(i));
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    FetchItem::BodySection { peek: false, .. }
                        | FetchItem::Rfc822
                        | FetchItem::Rfc822Text
                )
            });
        // In runs: the raw bytes of a run are read in one go, and a run's
        // \Seen flags are set in one write.
        let mut rest = &targets[..];
        while !rest.is_empty() {
            let run = fetch_run(rest, |seq| match &self.state {
                State::Selected(s) => s.msgs[seq - 1].as_ref().map(|m| m.size),
                _ => None,
            });
            let (chunk, tail) = rest.split_at(run);
            rest = tail;
            let mut seen_now: HashSet<Uid> = HashSet::new();
            if sets_seen {
                // A message CHANGEDSINCE leaves out is not read, so not
                // marked either.
                let unseen: HashMap<Uid, usize> = chunk
                    .iter()
                    .filter(|(seq, _)| {
                        matches!(&self.state, State::Selected(s)
                        if s.msgs[seq - 1].as_ref().is_some_and(|m| {
                            !m.flags.contains(Flags::SEEN)
                                && changed_since.is_none_or(|c| m.modseq.get() as u64 > c)
                        }))
                    })
                    .map(|&(seq, u)| (u, seq))
                    .collect();
                if !unseen.is_empty() {
                    let mut uids: Vec<Uid> = unseen.keys().copied().collect();
                    uids.sort_unstable();
                    let changed = mailbox.set_flags(&uids, FlagOp::Add, Flags::SEEN).await?;
                    if let State::Selected(s) = &mut self.state {
                        for (u, f, m) in changed {
                            seen_now.insert(u);
                            let Some(&seq) = unseen.get(&u) else {
                                continue;
                            };
                            if let Some(msg) = s.msgs[seq - 1].as_mut() {
                                let msg = Arc::make_mut(msg);
                                msg.flags = f;
                                msg.modseq = m;
                            }
                            if s.store_modseq.next() == m {
                                s.store_modseq = m;
                            }
                        }
                    }
                }
            }
            let uids: Vec<Uid> = chunk.iter().map(|&(_, u)| u).collect();
            let digests = if wants_digest {
                mailbox.fetch_cache(&uids).await?
            } else {
                HashMap::new()
            };
            let digest_ok = |u: &Uid| {
                digests
                    .get(u)
                    .is_some_and(|d| fetch::Digest::read(d).is_some())
            };
            // Whole messages for those that need them (a digest item with
            // no usable digest parses the message), headers for the rest.
            let (whole, header): (Vec<Uid>, Vec<Uid>) = uids
                .iter()
                .filter(|u| wants_whole || wants_header || (wants_digest && !digest_ok(u)))
                .partition(|u| wants_whole || (wants_digest && !digest_ok(u)));
            let mut raws: HashMap<Uid, Vec<u8>> = HashMap::new();
            for (list, headers_only) in [(whole, false), (header, true)] {
                if list.is_empty() {
                    continue;
                }
                let read = if headers_only {
                    mailbox.headers(&list).await
                } else {
                    mailbox.raws(&list).await
                };
                match read {
                    Ok(r) => raws.extend(r),
                    Err(CoreError::NotFound(_)) => {}
                    Err(e) => return Err(Fail::Core(e)),
                }
            }
            for &(seq, u) in chunk {
                let msg = match &self.state {
                    State::Selected(s) => s.msgs[seq - 1].clone(),
                    _ => None,
                };
                // Expunged by another session, not yet reported: RFC 9051
                // §7.5.1 lets us omit it.
                let Some(msg) = msg else { continue };
                if changed_since.is_some_and(|c| msg.modseq.get() as u64 <= c) {
                    continue;
                }
                let flags_changed = seen_now.contains(&u);
                let digest = digests.get(&u).and_then(|d| fetch::Digest::read(d));
                let answered = |i: &FetchItem| digest.is_some() && fetch::in_digest(i);
                let raw = if items.iter().any(|i| fetch::needs_raw(i) && !answered(i)) {
                    match raws.remove(&u) {
                        Some(r) => Some(r),
                        // Gone since the view was made.
                        None => continue,
                    }
                } else {
                    None
                };
                // Parsed once for all the items that need the MIME structure
                // and that no digest answers.
                let needs_mime = items.iter().any(|i| fetch::needs_mime(i) && !answered(i));
                let mime = raw.as_deref().filter(|_| needs_mime).and_then(fetch::parse);
                let recent = matches!(&self.state, State::Selected(s) if s.recent.contains(&u));
                let mut parts: Vec<Vec<u8>> = Vec::new();
                let mut has_flags = false;
                for it in &items {
                    if *it == FetchItem::Flags {
                        has_flags = true;
                    }
                    match digest.as_ref().and_then(|d| d.render(it)) {
                        Some(p) => parts.push(p),
                        None => parts.push(fetch::render(
                            it,
                            &msg,
                            raw.as_deref(),
                            mime.as_ref(),
                            recent,
                        )),
                    }
                }
                if flags_changed && !has_flags {
                    parts.push(format!("FLAGS {}", fetch::flags(&msg, recent)).into_bytes());
                }
                self.reply(Response::Fetch { seq, items: parts }).await?;
            }
        }
        self.ok(
            tag,
            &format!("{}FETCH completed", if uid { "UID " } else { "" }),
        )
        .await
    }
}

/// At most this many messages' bytes are read from the store at once.
pub(in crate::imap) const RUN_MESSAGES: usize = 64;

/// And at most this many bytes (a run always has at least one message).
pub(in crate::imap) const RUN_BYTES: i64 = 8 * 1024 * 1024;

/// How many of `targets` (sequence number, UID) the next run of a FETCH
/// takes. `size` gives a message's size by sequence number (None: gone).
pub(in crate::imap) fn fetch_run(
    targets: &[(usize, Uid)],
    size: impl Fn(usize) -> Option<i64>,
) -> usize {
    let mut bytes = 0i64;
    let mut n = 0;
    for &(seq, _) in targets.iter().take(RUN_MESSAGES) {
        bytes = bytes.saturating_add(size(seq).unwrap_or(0).max(0));
        if n > 0 && bytes > RUN_BYTES {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_runs_are_bounded_by_count_and_bytes() {
        let targets: Vec<(usize, Uid)> = (1..=200).map(|i| (i, Uid(i as i64))).collect();
        assert_eq!(fetch_run(&targets, |_| Some(3000)), RUN_MESSAGES);
        assert_eq!(fetch_run(&targets[..5], |_| Some(3000)), 5);
        // 3 MiB each: two fit under 8 MiB, the third would not.
        assert_eq!(fetch_run(&targets, |_| Some(3 << 20)), 2);
        // One message larger than the whole budget still makes a run.
        assert_eq!(fetch_run(&targets, |_| Some(50 << 20)), 1);
        assert_eq!(fetch_run(&targets, |_| None), RUN_MESSAGES);
        assert_eq!(fetch_run(&[], |_| Some(1)), 0);
    }
}
