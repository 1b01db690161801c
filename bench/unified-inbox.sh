#!/usr/bin/env bash
# The unified inbox with two outside accounts of 10,000 messages each
# (issue 16): server time p50/p99 for the first page, a deep page and a
# search. Each outside account is an IMAP INBOX on a second `tern serve`.
#
#   bench/unified-inbox.sh            # 10,000 per account
#   TERN_UNIFIED_MESSAGES=2000 bench/unified-inbox.sh
#   PROFILE=release bench/unified-inbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out="bench/results/unified-$(date -u +%Y%m%dT%H%M%S).txt"
flag=""
if [ "${PROFILE:-debug}" = release ]; then flag="--release"; fi
cargo test $flag -p tern --test outside unified_inbox_render_time -- --ignored --nocapture 2>&1 \
  | grep -E 'filled|page|search|test result' | tee "$out"
echo "written to $out"
