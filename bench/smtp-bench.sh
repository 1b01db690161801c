#!/usr/bin/env bash
# SMTP durable-acceptance benchmark: 20 concurrent clients, 4 KiB messages,
# against Tern and, side by side on the same machine, Postfix (the peer).
# Not a test: it reports numbers and a ratio, and writes them to
# bench/results/. Loopback only. Usage: bench/smtp-bench.sh [messages-per-client]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
PER_CLIENT=${1:-50}
OUT=bench/results/smtp-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

say "building tern (release)"
cargo build --release -p tern >/dev/null
TERN=target/release/tern
DIR=$(mktemp -d /tmp/tern-bench.XXXXXX)
export TERN_DATA_DIR=$DIR
unset TERN_DATABASE__URL
$TERN domain add bench.test >/dev/null
printf 'benchmark-password\n' | $TERN user add sink@bench.test >/dev/null
PORT=$((20000 + RANDOM % 10000))
TERN_LISTENERS__SMTP=127.0.0.1:$PORT TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= \
  TERN_WEB__LISTEN=127.0.0.1:$((PORT + 1)) TERN_LOG=warn $TERN serve &
TERN_PID=$!
trap 'kill $TERN_PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

say "tern: 20 clients x $PER_CLIENT messages of 4 KiB"
TERN_RES=$(python3 bench/smtp_load.py --port "$PORT" --rcpt sink@bench.test --messages "$PER_CLIENT")
echo "$TERN_RES"

PEER_RES="not run"
if [ "${SKIP_POSTFIX:-0}" != 1 ]; then
  say "postfix (peer): same load"
  echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
  apt_install postfix
  PPORT=$((PORT + 2))
  id benchsink >/dev/null 2>&1 || as_root useradd -m benchsink
  as_root postconf -e "inet_interfaces = loopback-only" "mydestination = bench.test, localhost" \
    "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
    "default_process_limit = 100" "message_size_limit = 26214400"
  as_root postconf -M "$PPORT/inet=$PPORT inet n - n - - smtpd"
  as_root postfix stop >/dev/null 2>&1 || true
  as_root postfix start >/dev/null 2>&1
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PPORT) 2>/dev/null && break; sleep 0.1; done
  PEER_RES=$(python3 bench/smtp_load.py --port "$PPORT" --rcpt benchsink@bench.test --messages "$PER_CLIENT")
  echo "$PEER_RES"
  as_root postfix stop >/dev/null 2>&1 || true
fi

rate() { sed -n 's/.*msgs_per_sec=\([0-9.]*\).*/\1/p' <<<"$1"; }
RATIO=$(python3 -c "import sys; t,p=sys.argv[1:]; print(f'{float(t)/float(p):.2f}' if p else 'n/a')" "$(rate "$TERN_RES")" "$(rate "$PEER_RES")" 2>/dev/null || echo n/a)
{
  echo "# SMTP durable acceptance, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load: 20 concurrent clients, $PER_CLIENT messages each, 4 KiB, one recipient, loopback"
  echo "tern (release, SQLite WAL synchronous=FULL): $TERN_RES"
  echo "postfix $(postconf -h mail_version 2>/dev/null) (queue fsync, local delivery): $PEER_RES"
  echo "ratio tern/postfix (msgs/s): $RATIO"
} | tee "$OUT"
say "wrote $OUT"
