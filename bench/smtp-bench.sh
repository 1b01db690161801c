#!/usr/bin/env bash
# SMTP durable-acceptance benchmark: 20 concurrent sessions (smtp-source,
# from Debian's postfix package) at 4 KiB and at 50 KiB, against Tern on
# SQLite, Tern on PostgreSQL, and, side by side in the same run, Postfix
# (the peer). Every 250 is a message the server claims is durable. Reports
# messages/s, the ratio to Postfix and the spool's group-commit batch sizes;
# writes bench/results/smtp-*.txt. Not a test. Loopback only.
# Usage: [TERN_BIN=path] [SKIP_PG=1] bench/smtp-bench.sh [messages]   (default 4000 per size;
# far more measures Postfix's in_flow_delay throttling, not its acceptance)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
TOTAL=${1:-4000}
SESSIONS=20
OUT=bench/results/smtp-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
apt_install postfix
command -v smtp-source >/dev/null || { echo "smtp-source not found (postfix package)" >&2; exit 1; }

# TERN_BIN=path measures another build (say, the commit before a change)
# against the same peer in the same run.
bench_tern

# msgs/s for one smtp-source run: SIZE PORT RCPT
blast() {
  local t0 t1
  t0=$(date +%s.%N)
  smtp-source -c -s "$SESSIONS" -l "$1" -m "$TOTAL" -f bench@load.example -t "$3" "127.0.0.1:$2" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'{$TOTAL/($t1-$t0):.0f}')"
}

# Waits until every accepted message is in the store (spool drained).
drain() {
  for _ in $(seq 3000); do
    $TERN spool stats 2>/dev/null | grep -qx 'records: 0' && return 0; sleep 0.2
  done
  echo "spool did not drain" >&2; return 1
}

# Starts tern on DB_URL (empty: SQLite), runs both sizes, prints "r4 r50 batch".
run_tern() {
  local url=$1 dir port web pid r4 r50 m
  dir=$(mktemp -d /tmp/tern-bench.XXXXXX)
  export TERN_DATA_DIR=$dir
  if [ -n "$url" ]; then export TERN_DATABASE__URL=$url; else unset TERN_DATABASE__URL; fi
  $TERN domain add bench.test >/dev/null
  printf 'benchmark-password\n' | $TERN user add sink@bench.test >/dev/null
  port=$(pick_port); web=$(pick_port)
  TERN_LISTENERS__SMTP=127.0.0.1:$port TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= \
    TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS= \
    TERN_WEB__LISTEN=127.0.0.1:$web TERN_WEB__METRICS_TOKEN=bench TERN_RELAY__ENABLED=false TERN_SMTP__SENDER_CHECKS=${SENDER_CHECKS:-false} \
    TERN_SMTP__MAX_CONNECTIONS_PER_IP=100 TERN_LOG=warn $TERN serve &
  pid=$!
  wait_port "$port"; wait_port "$web"
  local s0 s1 e4 e50
  s0=$(date +%s.%N); r4=$(blast 4096 "$port" sink@bench.test); drain; s1=$(date +%s.%N)
  e4=$(python3 -c "print(f'{$TOTAL/($s1-$s0):.0f}')")
  s0=$(date +%s.%N); r50=$(blast 51200 "$port" sink@bench.test); drain; s1=$(date +%s.%N)
  e50=$(python3 -c "print(f'{$TOTAL/($s1-$s0):.0f}')")
  m=$(curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$web/metrics")
  local appended syncs largest
  appended=$(awk '/^tern_spool_appended_total/{print $2}' <<<"$m")
  syncs=$(awk '/^tern_spool_syncs_total/{print $2}' <<<"$m")
  largest=$(awk '/^tern_spool_batch_records\{quantile="1"\}/{print $2}' <<<"$m")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  echo "$r4 $r50 $e4 $e50 $(python3 -c "print(f'{$appended/max($syncs,1):.1f}')" 2>/dev/null || echo ?) ${largest:-?}"
}

say "tern on SQLite: $SESSIONS sessions, $TOTAL messages of 4 KiB, then of 50 KiB"
read -r T4 T50 TE4 TE50 TB TL <<<"$(run_tern "")"
echo "tern sqlite: 4k=$T4/s 50k=$T50/s stored 4k=$TE4/s 50k=$TE50/s batch avg=$TB max=$TL"

PG4=n/a PG50=n/a PGE4=n/a PGE50=n/a PGB=n/a PGL=n/a
if [ "${SKIP_PG:-0}" != 1 ]; then
  start_test_postgres
  trap stop_test_postgres EXIT
  psql "$TERN_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS tern_bench" -c "CREATE DATABASE tern_bench" >/dev/null
  say "tern on PostgreSQL: same load"
  read -r PG4 PG50 PGE4 PGE50 PGB PGL <<<"$(run_tern "${TERN_TEST_PG_URL%/*}/tern_bench")"
  echo "tern postgres: 4k=$PG4/s 50k=$PG50/s stored 4k=$PGE4/s 50k=$PGE50/s batch avg=$PGB max=$PGL"
fi

say "postfix (peer): same load"
PPORT=$(pick_port)
id benchsink >/dev/null 2>&1 || as_root useradd -m benchsink
as_root postconf -e "inet_interfaces = loopback-only" "mydestination = bench.test, localhost" \
  "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
  "default_process_limit = 100" "message_size_limit = 26214400" "smtpd_client_connection_count_limit = 0"
as_root postconf -M "$PPORT/inet=$PPORT inet n - n - - smtpd"
as_root postfix stop >/dev/null 2>&1 || true
# A queue left by an earlier run would slow this one (Postfix throttles
# smtpd while its queue manager is behind: in_flow_delay).
as_root postsuper -d ALL >/dev/null 2>&1 || true
as_root truncate -s 0 /var/mail/benchsink 2>/dev/null || true
as_root postfix start >/dev/null 2>&1
wait_port "$PPORT"
P4=$(blast 4096 "$PPORT" benchsink@bench.test)
P50=$(blast 51200 "$PPORT" benchsink@bench.test)
as_root postfix stop >/dev/null 2>&1 || true
echo "postfix: 4k=$P4/s 50k=$P50/s"

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2" 2>/dev/null || echo n/a; }
{
  echo "# SMTP durable acceptance, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "tern binary: $TERN ($(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null) checkout)"
  echo "load: smtp-source -c -s $SESSIONS -m $TOTAL, one recipient, loopback; each 250 is durable"
  echo "tern sqlite   (spool group commit): 4 KiB $T4 msg/s, 50 KiB $T50 msg/s; records per fdatasync avg $TB, max $TL"
  echo "  ... until the last one is in its mailbox (spool drained): 4 KiB $TE4 msg/s, 50 KiB $TE50 msg/s"
  echo "tern postgres (spool group commit): 4 KiB $PG4 msg/s, 50 KiB $PG50 msg/s; records per fdatasync avg $PGB, max $PGL"
  echo "  ... until the last one is in its mailbox (spool drained): 4 KiB $PGE4 msg/s, 50 KiB $PGE50 msg/s"
  echo "postfix $(postconf -h mail_version 2>/dev/null): 4 KiB $P4 msg/s, 50 KiB $P50 msg/s"
  echo "ratio tern sqlite / postfix: 4 KiB $(ratio "$T4" "$P4"), 50 KiB $(ratio "$T50" "$P50")"
  echo "ratio tern postgres / postfix: 4 KiB $(ratio "$PG4" "$P4"), 50 KiB $(ratio "$PG50" "$P50")"
} | tee "$OUT"
say "wrote $OUT"
