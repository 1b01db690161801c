//! STORE (RFC 9051 §6.4.6, UNCHANGEDSINCE of RFC 7162 §3.1.3), EXPUNGE
//! (§6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use super::prelude::*;

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::imap) async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        op: StoreOp,
        silent: bool,
        names: &[String],
        unchanged_since: Option<u64>,
    ) -> Res {
        self.sync(false).await?;
        let Some((mailbox, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if read_only {
            return self.refuse_read_only(tag).await;
        }
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        // RFC 7162 §3.1.3: messages changed since UNCHANGEDSINCE fail.
        let mut failed = Vec::new();
        let mut uids = Vec::new();
        for (seq, u) in &targets {
            let m = match &self.state {
                State::Selected(s) => s.msgs[seq - 1].clone(),
                _ => None,
            };
            match (m, unchanged_since) {
                (None, _) => {}
                (Some(m), Some(us)) if m.modseq.get() as u64 > us => {
                    failed.push(if uid { u.get() } else { *seq as i64 })
                }
                _ => uids.push(*u),
            }
        }
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let change = match parse_flags(names) {
            Ok(f) => f,
            Err(e) => {
                self.reply(Response::bad(tag, e)).await?;
                return Ok(Flow::Continue);
            }
        };
        let changed = mailbox.store_flags(&uids, op, &change).await?;
        let changed: HashMap<Uid, (FlagSet, ModSeq)> = changed
            .into_iter()
            .map(|c| (c.uid, (c.flags, c.modseq)))
            .collect();
        // Report the new state of every message named (RFC 9051 §6.4.6),
        // unless .SILENT. Unchanged messages keep the flags this view has.
        let mut out = Vec::new();
        if let State::Selected(s) = &mut self.state {
            if let Some((_, m)) = changed.values().next()
                && s.store_modseq.next() == *m
            {
                // Ours was the only change since the last look.
                s.store_modseq = *m;
            }
            // Only keywords a message now has are new to the mailbox (a
            // -FLAGS of an unknown keyword creates nothing).
            let mut grew = false;
            for (f, _) in changed.values() {
                grew |= s.learn_keywords(&f.keywords);
            }
            if grew {
                out.extend(s.flag_responses());
            }
            for (seq, u) in &targets {
                let Some(Some(msg)) = s.msgs.get_mut(seq - 1) else {
                    continue;
                };
                let was_changed = if let Some((f, m)) = changed.get(u) {
                    let msg = Arc::make_mut(msg);
                    msg.flags = f.system;
                    msg.keywords = f.keywords.clone();
                    msg.modseq = *m;
                    true
                } else {
                    false
                };
                if !silent || (self.condstore && was_changed) {
                    let mut l = format!("{seq} FETCH (");
                    if uid {
                        l.push_str(&format!("UID {u} "));
                    }
                    l.push_str(&format!(
                        "FLAGS {}",
                        fetch::flags(msg, s.recent.contains(u))
                    ));
                    if self.condstore {
                        l.push_str(&format!(" MODSEQ ({})", msg.modseq));
                    }
                    l.push(')');
                    out.push(Response::data(l));
                }
            }
        }
        for r in out {
            self.reply(r).await?;
        }
        if failed.is_empty() {
            self.ok(tag, "STORE completed").await
        } else {
            let list: Vec<String> = failed.iter().map(|n| n.to_string()).collect();
            let code = Code::Modified(list.join(","));
            self.ok_with(tag, code, "Conditional STORE failed for some")
                .await
        }
    }

    pub(in crate::imap) async fn expunge(&mut self, tag: &str, only: Option<SeqSet>) -> Res {
        let Some((mailbox, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if read_only {
            return self.refuse_read_only(tag).await;
        }
        let uids = only.as_ref().map(|set| {
            self.resolve(true, set)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, u)| u)
                .collect::<Vec<_>>()
        });
        mailbox.expunge(uids.as_deref()).await?;
        self.sync(true).await?;
        self.ok(tag, "EXPUNGE completed").await
    }
}
