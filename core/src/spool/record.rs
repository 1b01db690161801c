//! The spool's on-disk record: pure encoding and decoding, no I/O.
//!
//! ```text
//! magic  b"TSR7"            4 bytes (b"TSR4", before the envelope
//!                           flags, b"TSR2", before the junk flag, and
//!                           b"TSR1", before Delivered-To, are still read;
//!                           each magic differs from every other in at
//!                           least two bits, so one flipped bit cannot
//!                           turn a record into another version)
//! length u32 LE             bytes of payload
//! crc    u32 LE             CRC-32 (IEEE) of the payload
//! payload:
//!   received_at  i64 LE     unix seconds the 250 was given
//!   mail_from    u32 LE length + bytes (empty for a bounce)
//!   local        u32 LE count + (i32 LE account id, u32 LE length +
//!                bytes of the address it was delivered for, u8 flags:
//!                1 = to the Junk folder) each; TSR2: no flags byte;
//!                TSR1: i32 LE account ids only
//!   remote       u32 LE count + (u32 LE length + bytes) each
//!   flags        u8: 1 = REQUIRETLS (RFC 8689); TSR4 and before: none
//!   raw          the rest: the message as stored
//! ```
//!
//! The length and checksum make a torn tail (a crash mid-write) visible:
//! the scan stops at the first record whose header is short, whose length
//! runs past the end of the file or whose checksum does not match.

use crate::address::Address;
use crate::delivery::{Envelope, LocalCopy};
use crate::ids::AccountId;

pub(crate) const MAGIC: &[u8; 4] = b"TSR7";
/// Records of the version before: no envelope flags.
const MAGIC_V4: &[u8; 4] = b"TSR4";
/// And before: local copies carry no flags.
const MAGIC_V2: &[u8; 4] = b"TSR2";
/// And the one before that: local copies carry no address.
const MAGIC_V1: &[u8; 4] = b"TSR1";
pub(crate) const HEADER_LEN: usize = 12;
/// No record is larger than this: the SMTP size limit is far below it, and
/// a length field past it is taken for damage, not for a record.
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// One spooled message, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    pub received_at: i64,
    pub envelope: Envelope,
    pub raw: Vec<u8>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// The whole record (header and payload) for `env` and `raw`.
pub(crate) fn encode(env: &Envelope, raw: &[u8], received_at: i64) -> Vec<u8> {
    let mut p = Vec::with_capacity(raw.len() + 64 + env.mail_from.len());
    p.extend_from_slice(&received_at.to_le_bytes());
    put_bytes(&mut p, env.mail_from.as_bytes());
    p.extend_from_slice(&(env.local.len() as u32).to_le_bytes());
    for c in &env.local {
        p.extend_from_slice(&c.account_id.get().to_le_bytes());
        put_bytes(&mut p, c.delivered_to.as_bytes());
        p.push(u8::from(c.junk));
    }
    p.extend_from_slice(&(env.remote.len() as u32).to_le_bytes());
    for a in &env.remote {
        put_bytes(&mut p, a.to_string().as_bytes());
    }
    p.push(u8::from(env.require_tls));
    p.extend_from_slice(raw);
    let mut out = Vec::with_capacity(HEADER_LEN + p.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

/// What the scan found at one offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole record of `len` bytes (header included).
    Whole { len: usize },
    /// Nothing more: the offset is the end of the data.
    End,
    /// Damage: a short header, a bad magic, a length past the end of the
    /// data or a checksum that does not match.
    Torn(&'static str),
}

/// Looks at the record that starts `buf`, which holds the rest of a file.
pub(crate) fn frame(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::End;
    }
    if buf.len() < HEADER_LEN {
        return Frame::Torn("short header");
    }
    if ![MAGIC, MAGIC_V4, MAGIC_V2, MAGIC_V1].contains(&&buf[..4].try_into().unwrap_or([0u8; 4])) {
        return Frame::Torn("bad magic");
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if len > MAX_PAYLOAD {
        return Frame::Torn("length past the limit");
    }
    let Some(end) = HEADER_LEN.checked_add(len) else {
        return Frame::Torn("length overflows");
    };
    if end > buf.len() {
        return Frame::Torn("record runs past the end of the file");
    }
    if crc32fast::hash(&buf[HEADER_LEN..end]) != crc {
        return Frame::Torn("checksum mismatch");
    }
    Frame::Whole { len: end }
}

/// The `received_at` of a whole record, without decoding (or copying) the
/// rest: what a start-up scan of a large spool needs.
pub(crate) fn received_at(record: &[u8]) -> Option<i64> {
    let b = record.get(HEADER_LEN..HEADER_LEN + 8)?;
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

/// The accounts a whole record has local copies for, without copying the
/// message: what the start-up scan needs for "mail held for you".
pub(crate) fn accounts(record: &[u8]) -> Vec<AccountId> {
    let Some(magic) = record.get(..4) else {
        return Vec::new();
    };
    let v1 = magic == MAGIC_V1;
    let flags = magic == MAGIC || magic == MAGIC_V4;
    let Some(b) = record.get(HEADER_LEN..) else {
        return Vec::new();
    };
    let mut r = Reader { b };
    let mut out = Vec::new();
    (|| {
        r.take(8)?;
        r.bytes()?;
        let n = r.u32()? as usize;
        for _ in 0..n.min(100_000) {
            let id = i32::from_le_bytes(r.take(4)?.try_into().ok()?);
            if !v1 {
                r.bytes()?;
            }
            if flags {
                r.take(1)?;
            }
            let id = AccountId::from_row(id);
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Some(())
    })();
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Decodes a whole record (as [`frame`] accepted it). `None` when the
/// payload, though its checksum matched, does not parse: written by a
/// different version, which this one must not guess at.
pub(crate) fn decode(record: &[u8]) -> Option<SpoolRecord> {
    let magic = record.get(..4)?;
    let v1 = magic == MAGIC_V1;
    let flags = magic == MAGIC || magic == MAGIC_V4;
    let env_flags = magic == MAGIC;
    let mut r = Reader {
        b: record.get(HEADER_LEN..)?,
    };
    let t = r.take(8)?;
    let received_at = i64::from_le_bytes(t.try_into().ok()?);
    let mail_from = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let n_local = r.u32()? as usize;
    let mut local = Vec::with_capacity(n_local.min(1024));
    for _ in 0..n_local {
        let b = r.take(4)?;
        let account_id = i32::from_le_bytes(b.try_into().ok()?);
        let delivered_to = if v1 {
            String::new()
        } else {
            String::from_utf8(r.bytes()?.to_vec()).ok()?
        };
        let junk = if flags { r.take(1)?[0] & 1 == 1 } else { false };
        local.push(LocalCopy {
            account_id: AccountId::from_row(account_id),
            delivered_to,
            junk,
        });
    }
    let n_remote = r.u32()? as usize;
    let mut remote = Vec::with_capacity(n_remote.min(1024));
    for _ in 0..n_remote {
        let s = std::str::from_utf8(r.bytes()?).ok()?;
        remote.push(Address::parse(s).ok()?);
    }
    let require_tls = if env_flags {
        r.take(1)?[0] & 1 == 1
    } else {
        false
    };
    Some(SpoolRecord {
        received_at,
        envelope: Envelope {
            require_tls,
            mail_from,
            local,
            remote,
        },
        raw: r.b.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Envelope, Vec<u8>) {
        (
            Envelope {
                require_tls: false,
                mail_from: "a@b.test".into(),
                local: vec![
                    LocalCopy::new(AccountId::from_row(3), "a@here.test"),
                    LocalCopy::new(AccountId::from_row(9), "b@here.test"),
                ],
                remote: vec![Address::parse("x@far.test").unwrap()],
            },
            b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        )
    }

    #[test]
    fn round_trip() {
        let (env, raw) = sample();
        let rec = encode(&env, &raw, 1_700_000_000);
        assert_eq!(frame(&rec), Frame::Whole { len: rec.len() });
        let back = decode(&rec).unwrap();
        assert_eq!(back.envelope, env);
        assert_eq!(back.raw, raw);
        assert_eq!(back.received_at, 1_700_000_000);
        assert_eq!(received_at(&rec), Some(1_700_000_000));
    }

    /// A record of an older format around `payload`, as that version wrote it.
    fn framed(magic: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut rec = magic.to_vec();
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        rec.extend_from_slice(payload);
        rec
    }

    /// A spool written by the version before (TSR1) still drains after an
    /// upgrade: its copies are delivered, without a Delivered-To.
    #[test]
    fn reads_the_version_before() {
        let raw = b"Subject: old\r\n\r\nx\r\n";
        let mut p = Vec::new();
        p.extend_from_slice(&7i64.to_le_bytes());
        put_bytes(&mut p, b"a@b.test");
        p.extend_from_slice(&2u32.to_le_bytes());
        p.extend_from_slice(&3i32.to_le_bytes());
        p.extend_from_slice(&9i32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(raw);
        let rec = framed(MAGIC_V1, &p);
        assert_eq!(frame(&rec), Frame::Whole { len: rec.len() });
        let back = decode(&rec).unwrap();
        assert_eq!(
            back.envelope.local,
            vec![
                LocalCopy::new(AccountId::from_row(3), ""),
                LocalCopy::new(AccountId::from_row(9), "")
            ]
        );
        assert_eq!(back.envelope.mail_from, "a@b.test");
        assert_eq!(back.raw, raw);
    }

    /// A TSR2 spool (before the junk flag) still drains after an upgrade,
    /// to INBOX; a junk copy survives the round trip in the current one.
    #[test]
    fn reads_tsr2_and_keeps_the_junk_flag() {
        let raw = b"Subject: v2\r\n\r\nx\r\n";
        let mut p = Vec::new();
        p.extend_from_slice(&7i64.to_le_bytes());
        put_bytes(&mut p, b"a@b.test");
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&3i32.to_le_bytes());
        put_bytes(&mut p, b"bob@b.test");
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(raw);
        let rec = framed(MAGIC_V2, &p);
        assert_eq!(frame(&rec), Frame::Whole { len: rec.len() });
        let back = decode(&rec).unwrap();
        assert_eq!(
            back.envelope.local,
            vec![LocalCopy::new(AccountId::from_row(3), "bob@b.test")]
        );
        let mut copy = LocalCopy::new(AccountId::from_row(4), "ann@b.test");
        copy.junk = true;
        let env = Envelope {
            require_tls: false,
            mail_from: "x@y.test".into(),
            local: vec![
                copy.clone(),
                LocalCopy::new(AccountId::from_row(5), "c@b.test"),
            ],
            remote: vec![],
        };
        let back = decode(&encode(&env, raw, 1)).unwrap();
        assert_eq!(back.envelope, env);
        assert!(back.envelope.local[0].junk && !back.envelope.local[1].junk);
    }

    /// A TSR4 spool (before the envelope flags) drains after an upgrade,
    /// without REQUIRETLS; the flag survives the round trip now.
    #[test]
    fn reads_tsr4_and_keeps_requiretls() {
        let raw = b"Subject: v4\r\n\r\nx\r\n";
        let mut p = Vec::new();
        p.extend_from_slice(&7i64.to_le_bytes());
        put_bytes(&mut p, b"a@b.test");
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&3i32.to_le_bytes());
        put_bytes(&mut p, b"bob@b.test");
        p.push(1);
        p.extend_from_slice(&1u32.to_le_bytes());
        put_bytes(&mut p, b"x@far.test");
        p.extend_from_slice(raw);
        let back = decode(&framed(MAGIC_V4, &p)).unwrap();
        assert!(back.envelope.local[0].junk);
        assert!(!back.envelope.require_tls);
        assert_eq!(back.raw, raw, "no flags byte taken from the message");
        let (mut env, raw) = sample();
        env.require_tls = true;
        assert!(decode(&encode(&env, &raw, 1)).unwrap().envelope.require_tls);
        for (a, b) in [
            (MAGIC, MAGIC_V4),
            (MAGIC, MAGIC_V2),
            (MAGIC, MAGIC_V1),
            (MAGIC_V4, MAGIC_V2),
        ] {
            let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert!(bits >= 2, "{a:?} {b:?}");
        }
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_caught() {
        let (env, raw) = sample();
        let rec = encode(&env, &raw, 1);
        for cut in 1..rec.len() {
            assert!(
                matches!(frame(&rec[..cut]), Frame::Torn(_)),
                "cut at {cut} not seen"
            );
        }
        for i in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(frame(&bad), Frame::Torn(_)),
                    "flip at {i}.{bit} not seen"
                );
            }
        }
        assert_eq!(frame(&[]), Frame::End);
    }
}
