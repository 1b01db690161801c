#![no_main]
//! SMTP command lines and DATA lines from a hostile client.

#[path = "../../server/src/smtp/proto.rs"]
#[allow(dead_code)]
mod proto;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = proto::parse_command(data) {
        // Whatever parses must render a reply without panicking.
        let _ = proto::Reply::new(250, "2.0.0", format!("{cmd:?}")).to_wire();
    }
    let _ = proto::unstuff(data);
});
