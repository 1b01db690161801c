#![no_main]
//! A whole port-25 SMTP session from a hostile client's bytes, past the
//! parser: BDAT sizes, DATA framing, limits. The core runs on a SQLite
//! database made once per fuzzing process.

use std::sync::OnceLock;

use mailcore::{Core, CoreOptions, Role};

struct World {
    rt: tokio::runtime::Runtime,
    core: Core,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/fuzz.db", dir.path().display());
        let core = rt.block_on(async {
            let core = Core::open(CoreOptions::new(url)).await.expect("core");
            core.add_domain("example.test").await.expect("domain");
            core.add_account("alice@example.test", "correct horse battery", Role::User)
                .await
                .expect("account");
            core
        });
        World { rt, core, _dir: dir }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let w = world();
    let out = w.rt.block_on(tern::smtp::harness::drive(&w.core, data));
    assert!(out.starts_with(b"220 "));
});
