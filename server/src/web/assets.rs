//! The browser's files: the hydration JS, the wasm and the CSS, served as
//! `/pkg/tern.<hash>.{js,wasm,css}` with a content hash in the name and a
//! year-long immutable cache, so a browser fetches them once per release
//! and never runs a stale copy against a new server.
//!
//! A release binary built with the `embed-site` feature carries them
//! (`build.rs`); otherwise they are read once at start from
//! `web.site_root/pkg` (the quick `./scripts/run.sh` path and the tests).
//! The hash is computed here either way and handed to Leptos as the output
//! name, so the page asks for exactly these names.

use std::collections::HashMap;
use std::path::Path;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_site.rs"));
}

/// Whether this binary carries its web files (`embed-site`).
pub const EMBEDDED: bool = !embedded::FILES.is_empty();

/// What a built site holds, by file name, and its content type.
const FILES: [(&str, &str); 3] = [
    ("tern.js", "text/javascript; charset=utf-8"),
    ("tern.wasm", "application/wasm"),
    ("tern.css", "text/css; charset=utf-8"),
];

pub struct Assets {
    /// `tern.<hash>`: what Leptos names the files after.
    output_name: String,
    /// Served name -> (bytes, content type).
    files: HashMap<String, (Bytes, &'static str)>,
    /// Compiled into the binary (not read from disk).
    pub embedded: bool,
}

impl Assets {
    /// The compiled-in files if there are any, else those under
    /// `site_root/pkg`; a file missing there is left out (pages then
    /// render without hydrating, as the start-up warning says).
    pub fn load(site_root: &Path) -> Assets {
        let embedded = EMBEDDED;
        let found: Vec<(&str, &'static str, Bytes)> = FILES
            .iter()
            .filter_map(|(name, mime)| {
                let bytes = if embedded {
                    embedded::FILES
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, b)| Bytes::from_static(b))
                } else {
                    std::fs::read(site_root.join("pkg").join(name))
                        .ok()
                        .map(Bytes::from)
                };
                bytes.map(|b| (*name, *mime, b))
            })
            .collect();
        Self::from_files(found, embedded)
    }

    fn from_files(found: Vec<(&str, &'static str, Bytes)>, embedded: bool) -> Assets {
        let mut h = Sha256::new();
        for (name, _, bytes) in &found {
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        let hash: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let output_name = format!("tern.{hash}");
        let files = found
            .into_iter()
            .map(|(name, mime, bytes)| {
                let ext = name.rsplit('.').next().unwrap_or_default();
                (format!("{output_name}.{ext}"), (bytes, mime))
            })
            .collect();
        Assets {
            output_name,
            files,
            embedded,
        }
    }

    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// Whether the wasm and its JS are there (the pages can hydrate).
    pub fn hydrates(&self) -> bool {
        ["js", "wasm"].iter().all(|ext| {
            self.files
                .contains_key(&format!("{}.{ext}", self.output_name))
        })
    }
}

/// `GET /pkg/{file}`: one of this build's files, cached for a year (its
/// name changes with its content); anything else is 404, also an older
/// build's names.
pub async fn serve(assets: web::Data<Assets>, file: web::Path<String>) -> HttpResponse {
    match assets.files.get(file.as_str()) {
        Some((bytes, mime)) => HttpResponse::Ok()
            .content_type(*mime)
            .insert_header(("Cache-Control", "public, max-age=31536000, immutable"))
            .body(bytes.clone()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body("404 Not Found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_hash_of_the_content() {
        let a = Assets::from_files(
            vec![
                ("tern.js", "text/javascript", Bytes::from_static(b"js")),
                ("tern.wasm", "application/wasm", Bytes::from_static(b"wasm")),
            ],
            false,
        );
        let b = Assets::from_files(
            vec![
                ("tern.js", "text/javascript", Bytes::from_static(b"js")),
                (
                    "tern.wasm",
                    "application/wasm",
                    Bytes::from_static(b"wasm2"),
                ),
            ],
            false,
        );
        assert_ne!(a.output_name(), b.output_name());
        assert!(a.output_name().starts_with("tern.") && a.output_name().len() == 5 + 16);
        assert!(a.hydrates());
        assert!(a.files.contains_key(&format!("{}.wasm", a.output_name())));
        let none = Assets::from_files(Vec::new(), false);
        assert!(!none.hydrates());
    }
}
