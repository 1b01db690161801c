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
        let (mailbox, msgs, uids, recent) = match &self.state {
            State::Selected(s) => (
                s.mailbox.clone(),
                s.msgs.clone(),
                s.uids.clone(),
                s.recent.clone(),
            ),
            _ => return Ok(Flow::Continue),
        };
        let need = fetch::search_need(&key);
        let max_uid = uids.last().map_or(0, |u| u.get()) as u32;
        let n = msgs.len() as u32;
        // BODY through the full-text index: a message it does not find
        // (and whose text it holds whole) cannot contain the string, and
        // is not read. The rest are confirmed with RFC 9051's substring
        // rule below.
        let mut possible: HashMap<String, HashSet<Uid>> = HashMap::new();
        for s in fetch::body_strings(&key) {
            let starts = fetch::word_starts(s);
            if starts.is_empty() || possible.contains_key(s) {
                continue;
            }
            if let Some(uids) = mailbox.body_search_candidates(&starts).await? {
                possible.insert(s.to_owned(), uids);
            }
        }
        let ctx = |i: usize, m: &MessageSummary| fetch::SearchCtx {
            seq: i as u32 + 1,
            max_seq: n,
            max_uid,
            recent: recent.contains(&m.uid),
        };
        // What the row (and the index) decide; the rest need their bytes.
        let mut hits: Vec<(usize, Uid, ModSeq)> = Vec::new();
        let mut unsure: Vec<(usize, Uid)> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let Some(m) = m else { continue };
            match fetch::decide(&key, m, &ctx(i, m), &possible) {
                Some(true) => hits.push((i + 1, m.uid, m.modseq)),
                Some(false) => {}
                None => unsure.push((i + 1, m.uid)),
            }
        }
        // Read in runs, as FETCH does (one query per message was most of a
        // text search's cost), and only as much as the key needs.
        let mut rest = &unsure[..];
        while !rest.is_empty() {
            let run = fetch_run(rest, |seq| msgs[seq - 1].as_ref().map(|m| m.size));
            let (chunk, tail) = rest.split_at(run);
            rest = tail;
            let ids: Vec<Uid> = chunk.iter().map(|&(_, u)| u).collect();
            let read = if need == fetch::Need::Whole {
                mailbox.raws(&ids).await
            } else {
                mailbox.headers(&ids).await
            };
            let mut raws: HashMap<Uid, Vec<u8>> = match read {
                Ok(r) => r.into_iter().collect(),
                Err(CoreError::NotFound(_)) => HashMap::new(),
                Err(e) => return Err(Fail::Core(e)),
            };
            for &(seq, u) in chunk {
                let Some(m) = &msgs[seq - 1] else { continue };
                // Gone since the view was made.
                let Some(raw) = raws.remove(&u) else { continue };
                if fetch::matches(&key, m, Some(&raw), &ctx(seq - 1, m)) {
                    hits.push((seq, m.uid, m.modseq));
                }
            }
        }
        hits.sort_unstable();
        let highest = hits.iter().map(|h| h.2).max().unwrap_or_default();
        // RFC 7162 §3.1.5: a search by MODSEQ reports the highest MODSEQ
        // of what it found.
        let modseq = (fetch::uses_modseq(&key) && !hits.is_empty()).then_some(highest);
        let nums: Vec<u64> = hits
            .iter()
            .map(|(s, u, _)| if uid { u.get() as u64 } else { *s as u64 })
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
                        let of = |o: &str, h: &(usize, Uid, ModSeq)| {
                            if opts.iter().any(|x| x == o) {
                                h.2
                            } else {
                                ModSeq(0)
                            }
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
