#!/usr/bin/env bash
# Webmail search benchmark (not a test): 100,000 messages in one account,
# filled through the normal append path, then the search box's own call
# (`Core::search`) timed on SQLite and on a throwaway PostgreSQL.
# Usage: bench/search-bench.sh [messages]   (SKIP_TERN=1 or SKIP_DOVECOT=1 for one side)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=bench/results/search-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
{
  echo "# webmail search at $N messages, $(date -u), $(nproc) cores"
  if [ "${SKIP_TERN:-0}" != 1 ]; then
  say "building the search bench (release)"
  cargo bench -p mailcore --bench search --no-run >/dev/null 2>&1
  say "SQLite"
  TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  start_test_postgres >/dev/null
  DB=${TERN_TEST_PG_URL%/*}/tern_search_bench
  psql "$TERN_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS tern_search_bench" -c "CREATE DATABASE tern_search_bench"
  say "PostgreSQL"
  TERN_BENCH_DB_URL=$DB TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  stop_test_postgres >/dev/null 2>&1 || true
  fi
  if [ "${SKIP_DOVECOT:-0}" != 1 ]; then
    say "Dovecot (peer, no FTS plugin: SEARCH TEXT reads the messages)"
    DIR=$(mktemp -d /tmp/tern-sbench.XXXXXX); chmod 755 "$DIR"
    D=$DIR/dovecot
    python3 bench/search_dovecot.py fill "$D/mail/reader@bench.test" "$N"
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
      -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1
    DPORT=$(pick_port)
    start_dovecot "$D" "$DIR/cert.pem" "$DIR/key.pem" "$DPORT"
    echo "dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1), maildir, IMAP UID SEARCH TEXT over TLS:"
    python3 bench/search_dovecot.py measure "$DPORT" reader@bench.test benchmark-password
    stop_dovecot "$D"
    rm -rf "$DIR"
  fi
} | tee "$OUT"
