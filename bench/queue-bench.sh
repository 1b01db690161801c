#!/usr/bin/env bash
# Queue benchmark (not a test): a backlog of 100,000 deferred entries for one
# destination, then fresh mail at a steady rate for another, while the
# backlog is released and drains. Reports the fresh mail's time from
# acceptance to the remote 250 (p50, p99) and the backlog's drain rate, for
# Tern and, side by side with the same load and fake MX servers, Postfix.
# Loopback only. Usage: bench/queue-bench.sh [rate-per-sec] [seconds]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
RATE=${1:-20}
SECS=${2:-30}
MSGS=${BACKLOG_MESSAGES:-1000}
RCPTS=${BACKLOG_RCPTS:-100}
TOTAL=$((MSGS * RCPTS))
OUT=bench/results/queue-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

say "building tern (release)"
cargo build --release -p tern >/dev/null
TERN=$PWD/target/release/tern
DIR=$(mktemp -d /tmp/tern-qbench.XXXXXX)
export TERN_DATA_DIR=$DIR
unset TERN_DATABASE__URL
$TERN domain add bench.test >/dev/null
printf 'benchmark-password\n' | $TERN user add sink@bench.test >/dev/null
SUB=$(pick_port); WEB=$(pick_port); BPORT=$(pick_port); FPORT=$(pick_port)
# The backlog's fake MX is not listening yet: the first attempt is refused,
# and the whole backlog is deferred.
TERN_LISTENERS__SMTP= TERN_LISTENERS__SUBMISSION=127.0.0.1:$SUB TERN_LISTENERS__SMTPS= \
  TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS= TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= \
  TERN_WEB__LISTEN=127.0.0.1:$WEB TERN_LOG=${BENCH_TERN_LOG:-warn} \
  TERN_RELAY__ROUTES="backlog.test=127.0.0.1:$BPORT, fresh.test=127.0.0.1:$FPORT" \
  TERN_SMTP__MAX_CONNECTIONS_PER_IP=100 TERN_SMTP__MAX_CONNECTIONS_PER_ACCOUNT=100 \
  env ${BENCH_TERN_ENV:-} $TERN serve 2>>"${BENCH_TERN_LOGFILE:-/dev/stderr}" &
TERN_PID=$!
trap 'kill $TERN_PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
wait_port "$WEB"

say "tern: backlog of $TOTAL entries ($MSGS messages x $RCPTS recipients)"
python3 bench/queue_load.py fill --port "$SUB" --starttls --auth sink@bench.test:benchmark-password \
  --sender sink@bench.test --messages "$MSGS" --rcpts "$RCPTS"
for _ in $(seq 600); do
  $TERN queue stats | grep -q "^lane retry	$TOTAL\$" && break
  sleep 0.5
done
$TERN queue stats | sed -n 1,6p

say "tern: release the backlog; fresh mail at $RATE/s for ${SECS}s"
TERN_RES=$(python3 bench/queue_load.py measure --port "$SUB" --starttls --auth sink@bench.test:benchmark-password \
  --sender sink@bench.test --backlog-port "$BPORT" --fresh-port "$FPORT" --backlog-total "$TOTAL" \
  --rate "$RATE" --seconds "$SECS" --release-cmd "$TERN queue retry --domain backlog.test")
echo "$TERN_RES"
kill $TERN_PID 2>/dev/null; wait $TERN_PID 2>/dev/null || true

PEER_RES="not run"
if [ "${SKIP_POSTFIX:-0}" != 1 ]; then
  say "postfix (peer): same backlog, same fresh load"
  echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
  apt_install postfix
  PPORT=$(pick_port); BPORT=$(pick_port); FPORT=$(pick_port)
  printf 'backlog.test smtp:[127.0.0.1]:%s\nfresh.test smtp:[127.0.0.1]:%s\n' "$BPORT" "$FPORT" \
    | as_root tee /etc/postfix/tern-bench-transport >/dev/null
  as_root postmap /etc/postfix/tern-bench-transport
  as_root postconf -e "inet_interfaces = loopback-only" "mydestination = localhost" \
    "mynetworks = 127.0.0.0/8" "transport_maps = hash:/etc/postfix/tern-bench-transport" \
    "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
    "default_destination_recipient_limit = $RCPTS" "smtp_tls_security_level = none" \
    "default_process_limit = 100" "smtpd_recipient_limit = 1000"
  as_root postconf -M "$PPORT/inet=$PPORT inet n - n - - smtpd"
  as_root postfix stop >/dev/null 2>&1 || true
  as_root postsuper -d ALL >/dev/null 2>&1 || true
  as_root postfix start >/dev/null 2>&1
  wait_port "$PPORT"
  python3 bench/queue_load.py fill --port "$PPORT" --sender sink@bench.test --messages "$MSGS" --rcpts "$RCPTS"
  for _ in $(seq 600); do
    n=$(as_root postqueue -j | grep -c '"queue_name": *"deferred"' || true)
    [ "$n" -ge "$MSGS" ] && break
    sleep 0.5
  done
  echo "postfix deferred messages: $n"
  PEER_RES=$(python3 bench/queue_load.py measure --port "$PPORT" --sender sink@bench.test \
    --backlog-port "$BPORT" --fresh-port "$FPORT" --backlog-total "$TOTAL" \
    --rate "$RATE" --seconds "$SECS" --release-cmd "postqueue -f" || true)
  echo "$PEER_RES"
  as_root postsuper -d ALL >/dev/null 2>&1 || true
  as_root postconf -X transport_maps
  as_root postfix stop >/dev/null 2>&1 || true
fi

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}')" "$1" "$2" 2>/dev/null || echo n/a; }
{
  echo "# Queue: fresh mail while a backlog drains, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load: backlog $TOTAL entries ($MSGS messages x $RCPTS recipients, one destination, deferred after a refused connection, then released); fresh mail $RATE/s for ${SECS}s to another destination; fake MX servers in Python on loopback"
  echo "tern (release, SQLite, submission with STARTTLS+AUTH): $TERN_RES"
  echo "postfix $(postconf -h mail_version 2>/dev/null) (plain SMTP from mynetworks, postqueue -f): $PEER_RES"
  echo "ratio tern/postfix fresh p50 latency: $(ratio "$(field fresh_p50_ms "$TERN_RES")" "$(field fresh_p50_ms "$PEER_RES")") (lower is better for tern)"
  echo "ratio tern/postfix fresh p99 latency: $(ratio "$(field fresh_p99_ms "$TERN_RES")" "$(field fresh_p99_ms "$PEER_RES")") (lower is better for tern)"
  echo "ratio tern/postfix drain rate: $(ratio "$(field drain_per_sec "$TERN_RES")" "$(field drain_per_sec "$PEER_RES")") (higher is better for tern)"
} | tee "$OUT"
say "wrote $OUT"
