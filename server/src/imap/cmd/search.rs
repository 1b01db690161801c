//! SEARCH (RFC 9051 §6.4.4), with ESEARCH's RETURN options (RFC 4731)
//! and MODSEQ (RFC 7162 §3.1.5).

use super::fetch::fetch_run;
use super::prelude::*;

impl Session {
    pub(in crate::imap) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<String>>,
        key: SearchKey,
    ) -> Res {
        self.sync(false).await?;
        let account = self.account_id();
        let (mailbox_id, msgs, uids, recent) = match &self.state {
            State::Selected(s) => (s.id, s.msgs.clone(), s.uids.clone(), s.recent.clone()),
            _ => return Ok(Flow::Continue),
        };
        let needs_raw = fetch::search_needs_raw(&key);
        let max_uid = uids.last().copied().unwrap_or(0) as u32;
        let n = msgs.len() as u32;
        let mut hits: Vec<(usize, i64, i64)> = Vec::new();
        let mut highest = 0i64;
        let present: Vec<(usize, i64)> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i + 1, m.uid)))
            .collect();
        let mut raws: HashMap<i64, Vec<u8>> = HashMap::new();
        let mut next_run = 0;
        for (k, &(seq, _)) in present.iter().enumerate() {
            let i = seq - 1;
            let Some(m) = &msgs[i] else { continue };
            // Read in runs, as FETCH does (one query per message was most
            // of a text search's cost).
            if needs_raw && k == next_run {
                let left = &present[k..];
                let run = fetch_run(left, |seq| msgs[seq - 1].as_ref().map(|m| m.size));
                next_run = k + run;
                let uids: Vec<i64> = left[..run].iter().map(|&(_, u)| u).collect();
                raws = match self.core.messages_raw(account, mailbox_id, &uids).await {
                    Ok(r) => r.into_iter().collect(),
                    Err(CoreError::NotFound(_)) => HashMap::new(),
                    Err(e) => return Err(Fail::Core(e)),
                };
            }
            let raw = if needs_raw {
                match raws.remove(&m.uid) {
                    Some(r) => Some(r),
                    None => continue,
                }
            } else {
                None
            };
            let ctx = fetch::SearchCtx {
                seq: i as u32 + 1,
                max_seq: n,
                max_uid,
                recent: recent.contains(&m.uid),
            };
            if fetch::matches(&key, m, raw.as_deref(), &ctx) {
                hits.push((i + 1, m.uid, m.modseq));
                highest = highest.max(m.modseq);
            }
        }
        // RFC 7162 §3.1.5: a search by MODSEQ reports the highest MODSEQ
        // of what it found.
        let modseq = (fetch::uses_modseq(&key) && !hits.is_empty()).then_some(highest);
        let nums: Vec<u64> = hits
            .iter()
            .map(|(s, u, _)| if uid { *u as u64 } else { *s as u64 })
            .collect();
        match ret {
            // RFC 4731 ESEARCH.
            Some(opts) => {
                let opts = if opts.is_empty() {
                    vec!["ALL".to_owned()]
                } else {
                    opts
                };
                let mut l = format!("ESEARCH (TAG {})", IString(tag.as_bytes()));
                if uid {
                    l.push_str(" UID");
                }
                for o in &opts {
                    match o.as_str() {
                        "MIN" if !nums.is_empty() => l.push_str(&format!(" MIN {}", nums[0])),
                        "MAX" if !nums.is_empty() => {
                            l.push_str(&format!(" MAX {}", nums[nums.len() - 1]))
                        }
                        "COUNT" => l.push_str(&format!(" COUNT {}", nums.len())),
                        "ALL" if !nums.is_empty() => {
                            l.push_str(&format!(" ALL {}", fetch::compress(&nums)))
                        }
                        _ => {}
                    }
                }
                // RFC 7162 §3.1.5: with only MIN and/or MAX asked for,
                // MODSEQ is the highest of the messages those name.
                let only_ends = opts.iter().all(|o| o == "MIN" || o == "MAX");
                let modseq = match (modseq, hits.first(), hits.last()) {
                    (Some(_), Some(first), Some(last)) if only_ends => {
                        let of = |o: &str, h: &(usize, i64, i64)| {
                            if opts.iter().any(|x| x == o) { h.2 } else { 0 }
                        };
                        Some(of("MIN", first).max(of("MAX", last)))
                    }
                    (m, ..) => m,
                };
                if let Some(m) = modseq {
                    l.push_str(&format!(" MODSEQ {m}"));
                }
                self.reply(Response::data(l)).await?;
            }
            None => {
                let list: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
                let sp = if list.is_empty() { "" } else { " " };
                let tail = modseq.map(|m| format!(" (MODSEQ {m})")).unwrap_or_default();
                self.reply(Response::data(format!(
                    "SEARCH{sp}{}{tail}",
                    list.join(" ")
                )))
                .await?;
            }
        }
        self.ok(
            tag,
            &format!("{}SEARCH completed", if uid { "UID " } else { "" }),
        )
        .await
    }
}
