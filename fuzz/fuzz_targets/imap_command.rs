#![no_main]
//! IMAP commands from a hostile client, literals included: the parser must
//! never panic, and must refuse rather than follow unbounded nesting.

#[path = "../../server/src/imap/proto/mod.rs"]
#[allow(dead_code)]
mod proto;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = proto::parse_command(data);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let _ = proto::literal_suffix(line);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = proto::parse_date(s);
        let _ = proto::parse_date_time(s);
    }
    let _ = proto::IString(data).to_string();
});
