#!/usr/bin/env bash
# IMAP benchmark (not a test): 10 clients over TLS run a mix of SELECT,
# FETCH (flags, bodies), STORE and SEARCH against a 1,000-message INBOX, on
# Tern and, side by side with the same script, on Dovecot. Reports
# operations per second and the ratio. Loopback only.
# MIX=write adds APPEND and STORE \Deleted + UID EXPUNGE (a fifth of the
# operations), the write mix issue 14 measures. Error answers are counted.
# Usage: [MIX=read|write] [SKIP_DOVECOT=1] [TERN_BIN=path] bench/imap-bench.sh [seconds] [clients]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
SECS=${1:-20}
CLIENTS=${2:-10}
MIX=${MIX:-read}
MSGS=${BENCH_MESSAGES:-1000}
OUT=bench/results/imap-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

bench_tern
bench_accounts ibench reader
IMAPS=$(pick_port); WEB=$(pick_port)
serve_imaps_only "$IMAPS" "$WEB" TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT=$((CLIENTS + 10)) \
  TERN_IMAP__MAX_CONNECTIONS_PER_IP=$((CLIENTS + 10))
trap cleanup_imap_bench EXIT
wait_port "$WEB"

say "tern: $MSGS messages, $CLIENTS clients for ${SECS}s"
python3 bench/imap_load.py fill --port "$IMAPS" --user reader@bench.test --password benchmark-password --messages "$MSGS"
TERN_RES=$(python3 bench/imap_load.py measure --port "$IMAPS" --user reader@bench.test --password benchmark-password --clients "$CLIENTS" --seconds "$SECS" --mix "$MIX")
echo "$TERN_RES"
kill $TERN_PID 2>/dev/null; wait $TERN_PID 2>/dev/null || true

PEER_RES="not run"
if [ "${SKIP_DOVECOT:-0}" != 1 ]; then
  say "dovecot (peer): same load"
  D=$DIR/dovecot
  DPORT=$(pick_port)
  same_password_hash "$DIR/tern/tern.db"
  start_dovecot "$D" "$DIR/tern/tls/cert.pem" "$DIR/tern/tls/key.pem" "$DPORT"
  python3 bench/imap_load.py fill --port "$DPORT" --user reader@bench.test --password benchmark-password --messages "$MSGS"
  PEER_RES=$(python3 bench/imap_load.py measure --port "$DPORT" --user reader@bench.test --password benchmark-password --clients "$CLIENTS" --seconds "$SECS" --mix "$MIX")
  echo "$PEER_RES"
fi

if [ "$MIX" = write ]; then
  MIX_TEXT="10% APPEND, 10% UID STORE \\Deleted + UID EXPUNGE (of the client's own appends), 30% FETCH flags of 21 messages, 20% FETCH one body, 15% STORE, 15% SEARCH SUBJECT"
else
  MIX_TEXT="10% SELECT, 40% FETCH flags of 21 messages, 20% FETCH one body, 15% STORE, 15% SEARCH SUBJECT"
fi
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
RATIO=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}')" "$(field ops_per_sec "$TERN_RES")" "$(field ops_per_sec "$PEER_RES")" 2>/dev/null || echo n/a)
{
  echo "# IMAP operations per second, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load: $CLIENTS clients over TLS (Python imaplib), ${SECS}s, INBOX of $MSGS messages of 3 KiB; mix $MIX: $MIX_TEXT"
  echo "tern (release, SQLite): $TERN_RES"
  echo "dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1) (maildir, mail_fsync=always, password ${DOVECOT_PASS%%\$*}): $PEER_RES"
  echo "ratio tern/dovecot (ops/s): $RATIO"
} | tee "$OUT"
say "wrote $OUT"
