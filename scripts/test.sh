#!/usr/bin/env bash
# Runs every test Tern has. On a fresh Debian machine with rustup and cargo
# it first installs what the tests need (idempotent): the wasm32 target,
# wasm-bindgen-cli, PostgreSQL (a throwaway cluster is started
# for the run), Chromium and playwright-core, and the test clients
# (python3, curl, mbsync) if missing.
#
#   ./scripts/test.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

ensure_rust_tools
apt_install postgresql chromium python3-dkim python3-nacl
# Independent clients the protocol tests drive: Python's smtplib/poplib/imaplib,
# curl and mbsync.
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
command -v mbsync >/dev/null || apt_install isync
command -v npm >/dev/null || apt_install nodejs npm
# Pebble, Let's Encrypt's ACME test server, for the ACME test; and
# systemd-analyze, which checks the unit `tern setup` writes.
command -v pebble >/dev/null || apt_install pebble
command -v systemd-analyze >/dev/null || apt_install systemd
# promtool checks the alert rules and dashboard queries in docs/ops (the
# package without its recommends, which would add exporters and services).
if ! command -v promtool >/dev/null; then
  say "installing Debian packages: prometheus (for promtool)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

start_test_postgres
trap stop_test_postgres EXIT
# Storage and health tests fail, rather than skip, without PostgreSQL.
export TERN_REQUIRE_PG=1

say "format check"
cargo fmt --all --check

say "dependency policy: duplicates, licences, sources (cargo deny, offline)"
ensure_cargo_deny
# Every platform's crates must be on disk for an offline check.
cargo fetch --locked >/dev/null
cargo deny --offline check bans licenses sources

build_site

say "the browser wasm links no database or socket crates"
if cargo tree -p app --target wasm32-unknown-unknown --no-default-features --features hydrate -e normal \
    | grep -E '^[^a-z]*(sea-orm|sqlx|mio|mailcore) '; then
  echo "!!! the hydrate build of app depends on server-only crates (above) !!!" >&2
  exit 1
fi

say "Rust unit tests"
cargo test --workspace --lib --bins

say "storage and queue suites on SQLite and PostgreSQL; the outbound queue on SQLite"
# Built with tern in the package set: with mailcore alone cargo resolves
# other features and rebuilds serde, syn and most of the tree (5 minutes
# of a cold run). tern's queue suite (runner + lettre relay against fake
# MX servers) comes along here on SQLite; it runs on PostgreSQL below.
cargo test -p mailcore -p tern --test storage --test queue -- --nocapture 2>&1 | tee /tmp/tern-storage-$$.log
# Counted anywhere on a line: the markers go to stderr while the harness
# writes "test x ... ok" to stdout, so with --nocapture a marker can land
# after another test's "ok" on the same line (CI saw exactly that).
pg_ran=$(grep -oE '\[postgres\] [A-Za-z0-9_]+: ok' /tmp/tern-storage-$$.log | wc -l || true)
sqlite_ran=$(grep -oE '\[sqlite\] +[A-Za-z0-9_]+: ok' /tmp/tern-storage-$$.log | wc -l || true)
rm -f /tmp/tern-storage-$$.log
if [ "$pg_ran" -eq 0 ] || [ "$sqlite_ran" -ne "$pg_ran" ]; then
  echo "!!! storage suite: sqlite ran $sqlite_ran, postgres ran $pg_ran: both must run !!!" >&2
  exit 1
fi

say "binary tests: CLI, serve, /healthz, login over HTTP"
cargo test -p tern --test cli

say "SMTP over real sockets: MX, submission, SMTPS (raw, rustls, Python smtplib)"
cargo test -p tern --test smtp

say "POP3 over real sockets: 110 with STLS, 995 (raw, Python poplib, curl)"
cargo test -p tern --test pop3

say "ACME against Pebble on loopback: HTTP-01 answered by Tern, renewal without a restart"
cargo test -p tern --test acme

say "ManageSieve over a real socket: STARTTLS, scripts, the active one filing mail"
cargo test -p tern --test managesieve

say "status page: a destination answering 421 and a stopped PostgreSQL on /status and its feed; login lines"
cargo test -p tern --test status

say "IMAP over real sockets: 143 with STARTTLS, 993 (transcripts, Python imaplib)"
cargo test -p tern --test imap

say "storage faults: a full tmpfs data disk and immutable database files (needs root)"
cargo test -p tern --test faults

say "spool: kill -9 under SMTP load (bounded; bench/spool-crash.sh runs 1,000), torn tails"
cargo test -p tern --test crash

say "50 IMAP clients and SMTP on SQLite: no false 'unavailable', final state as written"
cargo test -p tern --test imap_load

say "outside accounts: a second tern as the provider, a fake DNS server, hostile servers"
cargo test -p tern --test outside

say "outbound queue: runner + lettre relay against fake MX servers on PostgreSQL"
TERN_QUEUE_TEST_BACKEND=postgres cargo test -p tern --test queue

say "cluster: two tern serve nodes on one PostgreSQL (POP3 lock, login throttle, heartbeats)"
cargo test -p tern --test cluster

say "PostgreSQL failover: a primary and a synchronous standby (scripts/pg-pair.sh), promoted under SMTP load"
cargo test -p tern --test failover

say "clippy"
cargo clippy --workspace --all-targets -- -D warnings

say "browser tests: Chromium via playwright-core"
(cd end2end && npm install --no-audit --no-fund --silent && npm test)

# What ./scripts/run.sh --release makes (target/release/tern, built with the
# same feature), checked here on a debug build: a release build of the whole
# graph would take most of this run. The binary is copied out and started
# from an empty directory with no site root; Chromium loads the wasm from it
# and signs in.
say "one binary: web files compiled in (embed-site), run with no target/site, signed in from Chromium"
TERN_EMBED_SITE_DIR="$PWD/target/site/pkg" cargo build -p tern --bin tern --features embed-site
one=$(mktemp -d)
cp target/debug/tern "$one/tern"
(cd end2end && TERN_BIN="$one/tern" TERN_SITE_ROOT="$one/no-site-here" node --test tests/login.test.mjs)
rm -rf "$one"

say "all tests passed (storage backends: sqlite x$sqlite_ran, postgres x$pg_ran)"
