#![no_main]
//! FETCH rendering of hostile MIME: every data item a client can ask for
//! (ENVELOPE, BODYSTRUCTURE, nested BODY[n.m.MIME] sections, partials),
//! rendered from any bytes, must never panic. The bounded corpus of the
//! same runs in the test suite (tern::imap::fetch, hostile_mime_renders_bounded).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tern::imap::fetch::render_every_item(data);
});
