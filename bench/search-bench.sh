#!/usr/bin/env bash
# Webmail search benchmark (not a test): 100,000 messages in one account,
# filled through the normal append path, then the search box's own call
# (`Core::search`) timed on SQLite and on a throwaway PostgreSQL.
# Usage: bench/search-bench.sh [messages]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=bench/results/search-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
say "building the search bench (release)"
cargo bench -p mailcore --bench search --no-run >/dev/null 2>&1
{
  echo "# webmail search at $N messages, $(date -u), $(nproc) cores"
  say "SQLite"
  TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  start_test_postgres >/dev/null
  DB=${TERN_TEST_PG_URL%/*}/tern_search_bench
  psql "$TERN_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS tern_search_bench" -c "CREATE DATABASE tern_search_bench"
  say "PostgreSQL"
  TERN_BENCH_DB_URL=$DB TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  stop_test_postgres >/dev/null 2>&1 || true
} | tee "$OUT"
