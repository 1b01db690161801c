//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of IMAP4rev1 mailbox
//! names: used by Tern's IMAP server for its clients, and by the outside-
//! account client to show another server's folder names.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// IMAP4rev1 mailbox names are "modified UTF-7" (RFC 3501 §5.1.3); Tern
/// stores UTF-8. `&...-` runs are modified base64 of UTF-16BE, `&-` is `&`.
/// None when the name is not valid modified UTF-7.
pub fn decode(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.split('&');
    out.push_str(it.next()?);
    for chunk in it {
        let (b64, rest) = chunk.split_once('-')?;
        if b64.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut units = Vec::new();
            for c in b64.bytes() {
                let v = B64.iter().position(|&x| x == c)? as u32;
                bits = (bits << 6) | v;
                nbits += 6;
                if nbits >= 16 {
                    nbits -= 16;
                    units.push((bits >> nbits) as u16);
                    bits &= (1 << nbits) - 1;
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        out.push_str(rest);
    }
    Some(out)
}

pub fn encode(s: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let v = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..=n {
                out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}
