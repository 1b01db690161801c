//! Webmail search at scale (not a test): fills one account with N messages
//! (default 100,000) through the normal append path, so the index is built
//! the way delivery builds it, then times `Core::search`, the exact call
//! the webmail's search box makes.
//!
//! `cargo bench -p mailcore --bench search` (SQLite in a temp dir), or with
//! `TERN_BENCH_DB_URL=postgres://...` for PostgreSQL; `TERN_BENCH_N` sets N.
//! bench/search-bench.sh runs both and writes bench/results/.

use std::time::Instant;

use mailcore::{Core, CoreOptions, Flags, Role};

/// A deterministic word stream: a vocabulary with a Zipf-like skew, so a
/// few words are in most messages and most words are rare, as in real mail.
struct Words {
    state: u64,
    vocab: Vec<String>,
}

impl Words {
    fn new() -> Self {
        let syll = [
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "go", "zu",
        ];
        let mut vocab = Vec::new();
        for a in syll {
            for b in syll {
                for c in syll {
                    vocab.push(format!("{a}{b}{c}"));
                }
            }
        }
        Words {
            state: 0x2545_f491_4f6c_dd1d,
            vocab,
        }
    }
    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
    fn word(&mut self) -> &str {
        // Squaring a uniform draw skews towards the front of the vocabulary.
        let u = (self.next_u64() % 10_000) as f64 / 10_000.0;
        let i = ((u * u) * self.vocab.len() as f64) as usize;
        &self.vocab[i.min(self.vocab.len() - 1)]
    }
    fn sentence(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| self.word().to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("TERN_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = std::env::var("TERN_BENCH_DB_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()));
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let core = Core::open(CoreOptions::new(url)).await.expect("open");
    core.add_domain("bench.test").await.expect("domain");
    let a = core
        .add_account("reader@bench.test", "benchmark-password", Role::User)
        .await
        .expect("account");
    let inbox = core.mail(a.id).open("INBOX").await.expect("inbox");
    let mut w = Words::new();
    let t = Instant::now();
    for i in 0..n {
        // Planted words: "zebra" in 10 messages, "harbour" in 1%.
        let mut body = w.sentence(120);
        if i % (n / 10).max(1) == 0 {
            body.push_str(" zebra");
        }
        if i % 100 == 7 {
            body.push_str(" harbour");
        }
        let raw = format!(
            "From: Sender {s} <sender{s}@remote{d}.example>\r\nTo: reader@bench.test\r\n\
Subject: {subj}\r\nMessage-ID: <{i}@bench.test>\r\n\r\n{body}\r\n",
            s = i % 500,
            d = i % 37,
            subj = w.sentence(6),
        );
        inbox
            .append(
                raw.as_bytes(),
                Flags::empty(),
                Some(1_700_000_000 + i as i64),
            )
            .await
            .expect("append");
        if (i + 1) % 10_000 == 0 {
            eprintln!(
                "  {} messages, {:.0}/s",
                i + 1,
                (i + 1) as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    let fill = t.elapsed().as_secs_f64();
    println!(
        "backend={backend} messages={n} fill_secs={fill:.1} ({:.0} msg/s)",
        n as f64 / fill
    );
    let common = w.vocab[0].clone();
    let queries: Vec<(&str, String)> = vec![
        ("rare word (10 hits)", "zebra".into()),
        ("1% word", "harbour".into()),
        ("most common word, first page", common.clone()),
        ("prefix", "zeb".into()),
        ("sender domain", "remote7".into()),
        ("two words", format!("harbour {common}")),
    ];
    for (label, q) in queries {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..21 {
            let t = Instant::now();
            let (page, total) = core
                .mail(a.id)
                .search(None, &q, 0, 50)
                .await
                .expect("search");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            hits = total;
            assert!(page.len() as u64 == total.min(50));
        }
        println!(
            "search {label:<30} q={q:<16} hits={hits:<7} p50={:.1} ms p95={:.1} ms",
            percentile(&mut times.clone(), 0.5),
            percentile(&mut times, 0.95)
        );
    }
    core.close().await;
}
