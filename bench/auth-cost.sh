#!/usr/bin/env bash
# What mail authentication costs (issue 19), side by side in one run, on
# SQLite: mail from another server on port 25 with the sender checks off
# and on (SPF, DKIM, DMARC against bench/fake_dns.py on 127.0.0.1, which
# publishes an SPF record for the sending domain), and mail a user submits
# on 587 (STARTTLS, AUTH) without and with DKIM signing (Ed25519 and
# RSA-2048). Reports messages/s, the ratio and the added time per message
# at that concurrency. Not a test. Loopback only.
#   bench/auth-cost.sh            # 10 clients x 100 messages of 4 KiB
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-10}
PER=${PER:-100}
OUT=bench/results/auth-cost-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

bench_tern
DNS_PORT=$(pick_port)
python3 bench/fake_dns.py "$DNS_PORT" "load.example=v=spf1 ip4:127.0.0.1 -all" &
DNS_PID=$!
PIDS=()
cleanup() {
  kill "$DNS_PID" "${PIDS[@]}" 2>/dev/null || true
  rm -rf "${DIRS[@]:-/nonexistent}"
}
DIRS=()
trap cleanup EXIT

# run CHECKS(true|false) SIGN(yes|no): prints "port25_rate port587_rate".
run() {
  local dir mx sub web pid r25 r587
  dir=$(mktemp -d /tmp/tern-authcost.XXXXXX)
  DIRS+=("$dir")
  export TERN_DATA_DIR=$dir
  unset TERN_DATABASE__URL
  $TERN domain add bench.test >/dev/null
  printf 'benchmark-password\n' | $TERN user add sink@bench.test >/dev/null
  if [ "$2" = no ]; then
    # No keys, and no secrets key to make new ones with: mail goes unsigned.
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM dkim_keys'); c.commit()" "$dir/tern.db"
    rm -f "$dir/outside.key" && mkdir "$dir/outside.key"
  fi
  mx=$(pick_port); sub=$(pick_port); web=$(pick_port)
  TERN_LISTENERS__SMTP=127.0.0.1:$mx TERN_LISTENERS__SUBMISSION=127.0.0.1:$sub TERN_LISTENERS__SMTPS= \
    TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS= TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= \
    TERN_WEB__LISTEN=127.0.0.1:$web TERN_RELAY__ENABLED=false TERN_LOG=warn \
    TERN_SMTP__SENDER_CHECKS="$1" TERN_SMTP__NAMESERVER=127.0.0.1:$DNS_PORT \
    TERN_SMTP__MAX_CONNECTIONS_PER_IP=100 TERN_SMTP__MAX_CONNECTIONS_PER_ACCOUNT=100 \
    $TERN serve 2>>"${BENCH_TERN_LOGFILE:-/dev/null}" &
  pid=$!
  PIDS+=("$pid")
  wait_port "$web"
  r25=$(python3 bench/smtp_load.py --port "$mx" --rcpt sink@bench.test --clients "$CLIENTS" --messages "$PER" \
    | sed -n 's/.*msgs_per_sec=\([0-9.]*\).*/\1/p')
  r587=$(python3 bench/smtp_load.py --port "$sub" --starttls --auth sink@bench.test:benchmark-password \
    --sender sink@bench.test --rcpt sink@bench.test --clients "$CLIENTS" --messages "$PER" \
    | sed -n 's/.*msgs_per_sec=\([0-9.]*\).*/\1/p')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$r25 $r587"
}

say "without: sender checks off, no DKIM keys"
read -r IN0 SUB0 <<<"$(run false no)"
say "with: sender checks on, DKIM signing"
read -r IN1 SUB1 <<<"$(run true yes)"
calc() { python3 -c "print($1)"; }
{
  echo "# Mail authentication's cost, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "load: $CLIENTS clients x $PER messages of 4 KiB each way (Python smtplib), Tern release on SQLite"
  echo "port 25 (from load.example): checks off $IN0/s, checks on $IN1/s, ratio $(calc "f'{$IN1/$IN0:.2f}'"), added $(calc "f'{($CLIENTS/$IN1-$CLIENTS/$IN0)*1000:.2f}'") ms per message per client"
  echo "port 587 (STARTTLS+AUTH): unsigned $SUB0/s, signed (Ed25519 + RSA-2048) $SUB1/s, ratio $(calc "f'{$SUB1/$SUB0:.2f}'"), added $(calc "f'{($CLIENTS/$SUB1-$CLIENTS/$SUB0)*1000:.2f}'") ms per message per client"
} | tee "$OUT"
say "wrote $OUT"
