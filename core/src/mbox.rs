//! Folders as mbox files, out and in: the mboxrd form (every line that
//! starts with `>*From ` gains one `>` on the way out and loses one on
//! the way in, so any message survives the round trip), with LF line
//! endings as mbox tools expect. Import is idempotent by Message-ID: a
//! message whose Message-ID the folder already holds is skipped, so an
//! import that stopped half way can simply be run again.

use std::collections::HashSet;

use crate::mail::OwnedMailbox;
use crate::{CoreResult, Flags, SortOrder};

/// Messages read from the store at a time while exporting.
const PAGE: u64 = 200;

/// The `From ` line that opens a message: `From - Thu Dec  3 10:00:00 2026`
/// (the sender is not kept; `-` is what tools accept for "unknown").
pub fn from_line(unix: i64) -> String {
    let d = mail_parser::DateTime::from_timestamp(unix);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = DAYS[(unix.div_euclid(86_400)).rem_euclid(7) as usize];
    let mon = MONTHS[(d.month.clamp(1, 12) - 1) as usize];
    format!(
        "From - {wd} {mon} {:>2} {:02}:{:02}:{:02} {}\n",
        d.day, d.hour, d.minute, d.second, d.year
    )
}

/// One message in mboxrd form: its `From ` line, the lines (CRLF made LF,
/// `>*From ` quoted), and the blank line that ends it.
pub fn encode_message(raw: &[u8], internal_date: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(from_line(internal_date).as_bytes());
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let quoted = body.iter().position(|b| *b != b'>').map(|i| &body[i..]);
        if quoted.is_some_and(|rest| rest.starts_with(b"From ")) {
            out.push(b'>');
        }
        out.extend_from_slice(body);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The messages of an mbox file, each with CRLF line endings and the
/// mboxrd quoting undone, and the time its `From ` line gives (when it
/// parses).
pub fn split(data: &[u8]) -> Vec<(Vec<u8>, Option<i64>)> {
    let mut out: Vec<(Vec<u8>, Option<i64>)> = Vec::new();
    let mut cur: Option<(Vec<u8>, Option<i64>)> = None;
    let mut prev_blank = true;
    for line in data.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if prev_blank && body.starts_with(b"From ") {
            if let Some(m) = cur.take() {
                out.push(m);
            }
            cur = Some((Vec::new(), parse_from_line(body)));
            prev_blank = false;
            continue;
        }
        prev_blank = body.is_empty();
        let Some((msg, _)) = cur.as_mut() else {
            continue;
        };
        let unquoted = match body.iter().position(|b| *b != b'>') {
            Some(i) if i > 0 && body[i..].starts_with(b"From ") => &body[1..],
            _ => body,
        };
        msg.extend_from_slice(unquoted);
        msg.extend_from_slice(b"\r\n");
    }
    if let Some(m) = cur.take() {
        out.push(m);
    }
    // The blank line that ends each message in the file is not part of it.
    for (m, _) in &mut out {
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        }
    }
    out
}

/// `From sender Thu Dec  3 10:00:00 2026` -> Unix time.
fn parse_from_line(line: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(line).ok()?;
    let w: Vec<&str> = s.split_whitespace().collect();
    // From, sender, weekday, month, day, time, year
    if w.len() < 7 {
        return None;
    }
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == w[3])? + 1;
    let day: u32 = w[4].parse().ok()?;
    let mut t = w[5].split(':').map(|p| p.parse::<u32>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    let year: i64 = w[6].parse().ok()?;
    crate::scheduled::parse_utc_datetime(&format!("{year:04}-{m:02}-{day:02}T{h:02}:{mi:02}"))
        .map(|x| x + i64::from(sec))
}

/// An import the webmail started, as its page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportJob {
    pub folder: String,
    pub done: usize,
    pub total: usize,
    /// Once over: what it did, or why it stopped.
    pub finished: Option<Result<ImportReport, String>>,
}

/// Each account's latest webmail import (one at a time per account).
#[derive(Default)]
pub(crate) struct Imports(std::sync::Mutex<std::collections::HashMap<crate::AccountId, ImportJob>>);

impl Imports {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut std::collections::HashMap<crate::AccountId, ImportJob>) -> R,
    ) -> R {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }
}

impl crate::Core {
    /// Starts importing `data` into `mbox` in the background; its progress
    /// is [`crate::Core::import_job`]. One import per account at a time
    /// (`Conflict` while one runs). A long import from the webmail so
    /// shows how far it got instead of holding the upload's request open.
    pub fn start_import(
        &self,
        account: crate::AccountId,
        mbox: OwnedMailbox,
        data: Vec<u8>,
    ) -> CoreResult<()> {
        let folder = mbox.name().to_owned();
        self.inner.imports.with(|m| {
            if m.get(&account).is_some_and(|j| j.finished.is_none()) {
                return Err(crate::CoreError::Conflict(
                    "an import is already running".into(),
                ));
            }
            m.insert(
                account,
                ImportJob {
                    folder: folder.clone(),
                    done: 0,
                    total: 0,
                    finished: None,
                },
            );
            Ok(())
        })?;
        let core = self.clone();
        tokio::spawn(async move {
            let r = mbox
                .import_mbox(&data, |done, total| {
                    core.inner.imports.with(|m| {
                        if let Some(j) = m.get_mut(&account) {
                            j.done = done;
                            j.total = total;
                        }
                    })
                })
                .await;
            match &r {
                Ok(r) => {
                    tracing::info!(%account, folder, added = r.added, skipped = r.skipped, "mbox import")
                }
                Err(e) => tracing::warn!(%account, folder, error = %e, "mbox import stopped"),
            }
            core.inner.imports.with(|m| {
                if let Some(j) = m.get_mut(&account) {
                    if let Ok(rep) = &r {
                        j.done = rep.added + rep.skipped;
                    }
                    j.finished = Some(r.map_err(|e| e.to_string()));
                }
            })
        });
        Ok(())
    }

    /// The account's latest import, running or over.
    pub fn import_job(&self, account: crate::AccountId) -> Option<ImportJob> {
        self.inner.imports.with(|m| m.get(&account).cloned())
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    /// Already in the folder (same Message-ID).
    pub skipped: usize,
}

impl OwnedMailbox {
    /// The folder as mboxrd, a page at a time (oldest first), to `sink`.
    pub async fn export_mbox<F, Fut>(&self, mut sink: F) -> CoreResult<usize>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut offset = 0;
        let mut n = 0;
        loop {
            let (page, _) = self.list(offset, PAGE, SortOrder::UidAsc).await?;
            if page.is_empty() {
                return Ok(n);
            }
            offset += page.len() as u64;
            let uids: Vec<_> = page.iter().map(|m| m.uid).collect();
            let raws = self.raws(&uids).await?;
            let mut chunk = Vec::new();
            for (uid, raw) in raws {
                let date = page
                    .iter()
                    .find(|m| m.uid == uid)
                    .map_or(0, |m| m.internal_date);
                chunk.extend(encode_message(&raw, date));
                n += 1;
            }
            // The reader went away: stop.
            if !sink(chunk).await {
                return Ok(n);
            }
        }
    }

    /// Adds the messages of an mbox file not already here (by Message-ID;
    /// messages without one are always added), unread unless the file
    /// says `Status: RO`, dated by their `From ` line. `progress` hears
    /// (done, total) at the start and every 100 messages.
    pub async fn import_mbox(
        &self,
        data: &[u8],
        mut progress: impl FnMut(usize, usize),
    ) -> CoreResult<ImportReport> {
        let mut have: HashSet<String> = HashSet::new();
        let mut offset = 0;
        loop {
            let (page, _) = self.list(offset, 1000, SortOrder::UidAsc).await?;
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            have.extend(
                page.into_iter()
                    .map(|m| m.message_id)
                    .filter(|id| !id.is_empty()),
            );
        }
        let mut report = ImportReport::default();
        let messages = split(data);
        let total = messages.len();
        progress(0, total);
        for (i, (raw, date)) in messages.into_iter().enumerate() {
            if i > 0 && i % 100 == 0 {
                progress(i, total);
            }
            let head = mail_parser::MessageParser::default().parse_headers(&raw[..]);
            let message_id = head
                .as_ref()
                .and_then(|h| h.message_id())
                .unwrap_or_default()
                .to_owned();
            let sent = head
                .as_ref()
                .and_then(|h| h.date())
                .map(|d| d.to_timestamp());
            if !message_id.is_empty() && !have.insert(message_id) {
                report.skipped += 1;
                continue;
            }
            let seen = raw
                .split(|b| *b == b'\n')
                .take_while(|l| l.len() > 1)
                .any(|l| l.starts_with(b"Status: RO") || l.starts_with(b"Status: R"));
            let flags = if seen { Flags::SEEN } else { Flags::empty() };
            self.append(&raw, flags, date.or(sent)).await?;
            report.added += 1;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_line() {
        let a =
            b"From: a@b.test\r\nSubject: one\r\n\r\nFrom here on\r\n>From quoted\r\n\r\nlast\r\n";
        let b = b"Subject: two\r\n\r\nbody\r\n";
        let mut file = encode_message(a, 1_796_574_000);
        file.extend(encode_message(b, 0));
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(
            text.starts_with("From - Sun Dec  6 16:20:00 2026\n"),
            "{text}"
        );
        assert!(text.contains("\n>From here on\n>>From quoted\n"), "{text}");
        assert!(
            text.contains("\nFrom - Thu Jan  1 00:00:00 1970\n"),
            "{text}"
        );
        let back = split(&file);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, a.to_vec());
        assert_eq!(back[0].1, Some(1_796_574_000));
        assert_eq!(back[1].0, b.to_vec());
        assert_eq!(back[1].1, Some(0));
    }

    #[test]
    fn from_lines_inside_a_body_need_the_blank_line_before() {
        let file = b"From x Mon Dec  7 08:00:00 2026\nSubject: s\n\nline\nFrom inside\n\nFrom y Mon Dec  7 09:00:00 2026\nSubject: t\n\nx\n";
        let m = split(file);
        assert_eq!(m.len(), 2);
        assert!(String::from_utf8_lossy(&m[0].0).contains("line\r\nFrom inside\r\n"));
        assert_eq!(m[1].1, Some(1_796_634_000));
    }
}
