#!/usr/bin/env bash
# kill -9 endurance: the suite's crash test (server/tests/crash.rs) with
# many more kills. Every message that got 250 must be in its mailbox after
# the restarts, exactly once; the counts go to bench/results/.
# Usage: bench/spool-crash.sh [cycles]   (default 1000; about 1 s a cycle)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
CYCLES=${1:-1000}
mkdir -p bench/results
OUT=$PWD/bench/results/spool-crash-$(date -u +%Y%m%dT%H%M%SZ).txt
say "kill -9 x $CYCLES under SMTP load (release build)"
TERN_CRASH_CYCLES=$CYCLES TERN_CRASH_REPORT=$OUT \
  cargo test --release -p tern --test crash kill_9 -- --nocapture
say "wrote $OUT"
cat "$OUT"
