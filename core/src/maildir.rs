//! Export as Maildir in a zip file: what Dovecot, Courier, mutt and
//! `mbsync` read, and what a user can unpack anywhere. One folder is one
//! maildir (`cur/`, `new/`, `tmp/`); the whole account is Maildir++ (INBOX
//! at the top, `.Sent/`, `.Work.2026/`...). File names carry the flags
//! (`:2,FS`), so read, flagged and answered survive the trip.
//!
//! The zip is written as it goes (entries stored, not compressed: mail is
//! mostly text already sent compressed over the wire, and storing keeps a
//! large export cheap to make), with Zip64 records once it passes 4 GiB or
//! 65,535 entries, so an export of any size opens.

use crate::mail::{Mail, OwnedMailbox};
use crate::{CoreResult, Flags, SortOrder};

const PAGE: u64 = 200;

/// A zip file being written: each call returns the bytes to append.
#[derive(Default)]
pub struct ZipWriter {
    offset: u64,
    central: Vec<u8>,
    entries: u64,
}

/// DOS date and time (local = UTC here) of a unix time; 1980 at the
/// earliest, as the format cannot say earlier.
fn dos_time(unix: i64) -> (u16, u16) {
    let d = mail_parser::DateTime::from_timestamp(unix.max(315_532_800));
    let date = (d.year.saturating_sub(1980) << 9) | (u16::from(d.month) << 5) | u16::from(d.day);
    let time = (u16::from(d.hour) << 11) | (u16::from(d.minute) << 5) | (u16::from(d.second) / 2);
    (date, time)
}

impl ZipWriter {
    pub fn new() -> ZipWriter {
        ZipWriter::default()
    }

    /// A directory entry (`name` ends in `/`).
    pub fn dir(&mut self, name: &str, unix: i64) -> Vec<u8> {
        self.entry(name, b"", unix, 0o40755)
    }

    pub fn file(&mut self, name: &str, data: &[u8], unix: i64) -> Vec<u8> {
        self.entry(name, data, unix, 0o100644)
    }

    fn entry(&mut self, name: &str, data: &[u8], unix: i64, mode: u32) -> Vec<u8> {
        let crc = crc32fast::hash(data);
        let size = data.len() as u64;
        let (date, time) = dos_time(unix);
        let big = size >= 0xFFFF_FFFF || self.offset >= 0xFFFF_FFFF;
        let mut out = Vec::with_capacity(30 + name.len() + 20 + data.len());
        // Local file header (APPNOTE 4.3.7); sizes go in a Zip64 extra
        // when they do not fit.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // names are UTF-8
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        let small = |v: u64| if big { 0xFFFF_FFFFu32 } else { v as u32 };
        out.extend_from_slice(&small(size).to_le_bytes());
        out.extend_from_slice(&small(size).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(if big { 20u16 } else { 0 }).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        if big {
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.extend_from_slice(data);

        // Its central directory record, kept for the end.
        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&((3u16 << 8) | 45).to_le_bytes()); // made by Unix
        c.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
        c.extend_from_slice(&0x0800u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&time.to_le_bytes());
        c.extend_from_slice(&date.to_le_bytes());
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&small(size).to_le_bytes());
        c.extend_from_slice(&small(size).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&(if big { 28u16 } else { 0 }).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&(mode << 16).to_le_bytes());
        c.extend_from_slice(&small(self.offset).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        if big {
            c.extend_from_slice(&1u16.to_le_bytes());
            c.extend_from_slice(&24u16.to_le_bytes());
            c.extend_from_slice(&size.to_le_bytes());
            c.extend_from_slice(&size.to_le_bytes());
            c.extend_from_slice(&self.offset.to_le_bytes());
        }
        self.offset += out.len() as u64;
        self.entries += 1;
        out
    }

    /// The central directory and the end records.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.central;
        let cd_size = out.len() as u64;
        let cd_start = self.offset;
        let end = cd_start + cd_size;
        let zip64 = self.entries >= 0xFFFF || cd_start >= 0xFFFF_FFFF || cd_size >= 0xFFFF_FFFF;
        if zip64 {
            // Zip64 end of central directory record and its locator
            // (APPNOTE 4.3.14, 4.3.15).
            out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&((3u16 << 8) | 45).to_le_bytes());
            out.extend_from_slice(&45u16.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&self.entries.to_le_bytes());
            out.extend_from_slice(&self.entries.to_le_bytes());
            out.extend_from_slice(&cd_size.to_le_bytes());
            out.extend_from_slice(&cd_start.to_le_bytes());
            out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        let n16 = if zip64 { 0xFFFF } else { self.entries as u16 };
        let n32 = |v: u64| if zip64 { 0xFFFF_FFFFu32 } else { v as u32 };
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n32(cd_size).to_le_bytes());
        out.extend_from_slice(&n32(cd_start).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

/// The maildir info part (`:2,` and the flag letters in ASCII order).
fn info(flags: Flags) -> String {
    let mut s = String::from(":2,");
    for (f, c) in [
        (Flags::DRAFT, 'D'),
        (Flags::FLAGGED, 'F'),
        (Flags::ANSWERED, 'R'),
        (Flags::SEEN, 'S'),
        (Flags::DELETED, 'T'),
    ] {
        if flags.contains(f) {
            s.push(c);
        }
    }
    s
}

/// Maildir++'s directory for a folder: INBOX is the top, others `.A.B/`
/// for `A/B` (a `.` inside a name becomes `_`, as the separator is `.`).
pub fn maildirpp_dir(folder: &str) -> String {
    if folder.eq_ignore_ascii_case("INBOX") {
        return String::new();
    }
    let parts: Vec<String> = folder
        .split('/')
        .map(|p| p.replace(['.', '\\'], "_"))
        .collect();
    format!(".{}/", parts.join("."))
}

impl OwnedMailbox {
    /// The folder's messages as maildir entries under `dir` (`""` or ending
    /// in `/`), a page at a time, to `sink`; false from it stops.
    pub async fn export_maildir<F, Fut>(
        &self,
        dir: &str,
        zip: &mut ZipWriter,
        sink: &mut F,
    ) -> CoreResult<Option<usize>>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut first = Vec::new();
        for sub in ["cur/", "new/", "tmp/"] {
            first.extend(zip.dir(&format!("{dir}{sub}"), 0));
        }
        if !sink(first).await {
            return Ok(None);
        }
        let mut offset = 0;
        let mut n = 0;
        loop {
            let (page, _) = self.list(offset, PAGE, SortOrder::UidAsc).await?;
            if page.is_empty() {
                return Ok(Some(n));
            }
            offset += page.len() as u64;
            let uids: Vec<_> = page.iter().map(|m| m.uid).collect();
            let raws = self.raws(&uids).await?;
            let mut chunk = Vec::new();
            for (uid, raw) in raws {
                let Some(m) = page.iter().find(|m| m.uid == uid) else {
                    continue;
                };
                let name = format!(
                    "{dir}cur/{}.U{}.tern{}",
                    m.internal_date,
                    uid.get(),
                    info(m.flags)
                );
                chunk.extend(zip.file(&name, &raw, m.internal_date));
                n += 1;
            }
            if !sink(chunk).await {
                return Ok(None);
            }
        }
    }
}

impl Mail {
    /// `folder` as a maildir, or with `None` every folder as Maildir++,
    /// zipped, to `sink`. Returns the number of messages written, or
    /// `None` when the reader went away.
    pub async fn export_maildir_zip<F, Fut>(
        &self,
        folder: Option<&str>,
        mut sink: F,
    ) -> CoreResult<Option<usize>>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut zip = ZipWriter::new();
        let folders: Vec<(String, String)> = match folder {
            Some(f) => vec![(f.to_owned(), String::new())],
            None => self
                .mailboxes()
                .await?
                .into_iter()
                .map(|m| {
                    let d = maildirpp_dir(&m.name);
                    (m.name, d)
                })
                .collect(),
        };
        let mut total = 0;
        for (name, dir) in folders {
            let mbox = self.open(&name).await?;
            match mbox.export_maildir(&dir, &mut zip, &mut sink).await? {
                Some(n) => total += n,
                None => return Ok(None),
            }
        }
        if !sink(zip.finish()).await {
            return Ok(None);
        }
        Ok(Some(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags() {
        assert_eq!(maildirpp_dir("INBOX"), "");
        assert_eq!(maildirpp_dir("Work/2026.q1"), ".Work.2026_q1/");
        assert_eq!(info(Flags::SEEN.union(Flags::FLAGGED)), ":2,FS");
        assert_eq!(info(Flags::empty()), ":2,");
    }

    #[test]
    fn a_small_zip_has_its_entries_and_end_record() {
        let mut z = ZipWriter::new();
        let mut out = z.dir("cur/", 0);
        out.extend(z.file(
            "cur/1.U1.tern:2,S",
            b"Subject: a\r\n\r\nb\r\n",
            1_796_000_000,
        ));
        out.extend(z.finish());
        assert_eq!(&out[..4], b"PK\x03\x04");
        let end = &out[out.len() - 22..];
        assert_eq!(&end[..4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([end[10], end[11]]), 2);
    }
}
