#!/usr/bin/env bash
# Runs every fuzz target for a while (default 600 s each). Not part of the
# test suite: the suite runs the bounded session corpus
# (tern::smtp::harness) and the parsers' unit tests instead.
#
#   ./fuzz/run.sh [seconds-per-target] [target ...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(smtp_command smtp_session pop3_command imap_command imap_fetch)
for t in "${targets[@]}"; do
  echo "==> $t for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048
done
