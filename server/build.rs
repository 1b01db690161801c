//! With the `embed-site` feature, the browser's files (the hydration JS,
//! the wasm, the CSS) are compiled into the binary, so a release `tern`
//! runs from any directory with no `target/site` beside it.
//! `scripts/build-release.sh` builds them first and points
//! `TERN_EMBED_SITE_DIR` at the directory that holds them.
//!
//! Without the feature this writes an empty list and the server reads the
//! files from `web.site_root` as before.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The files a built site has (see `build_site` in scripts/lib.sh).
const FILES: [&str; 3] = ["tern.js", "tern.wasm", "tern.css"];

fn main() {
    println!("cargo:rerun-if-env-changed=TERN_EMBED_SITE_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::from("pub const FILES: &[(&str, &[u8])] = &[\n");
    if std::env::var_os("CARGO_FEATURE_EMBED_SITE").is_some() {
        let dir = std::env::var("TERN_EMBED_SITE_DIR").unwrap_or_else(|_| {
            panic!(
                "the embed-site feature needs TERN_EMBED_SITE_DIR: the directory with {FILES:?} \
                 (scripts/build-release.sh sets it)"
            )
        });
        let dir = PathBuf::from(dir);
        for f in FILES {
            let path = dir.join(f);
            let path = path
                .canonicalize()
                .unwrap_or_else(|e| panic!("embed-site: {} is missing ({e})", path.display()));
            println!("cargo:rerun-if-changed={}", path.display());
            let _ = writeln!(
                code,
                "    ({f:?}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
    }
    code.push_str("];\n");
    std::fs::write(out.join("embedded_site.rs"), code).expect("OUT_DIR is writable");
}
