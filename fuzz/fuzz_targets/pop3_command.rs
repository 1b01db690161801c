#![no_main]
//! POP3 command lines from a hostile client, and stored messages (which
//! come from anyone who can send mail) through the multi-line encoder.

#[path = "../../server/src/pop3/proto.rs"]
#[allow(dead_code)]
mod proto;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = proto::parse_command(data);
    let out = proto::multiline(data);
    // The encoded body may contain the terminator only at its very end.
    let body = &out[..out.len() - 3];
    assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"), "early terminator");
    assert!(!body.starts_with(b".\r\n"));
    for n in [0, 1, 5] {
        let _ = proto::top(data, n);
    }
});
