#!/usr/bin/env bash
# Spool drain after a database outage (issue 14): tern runs on SQLite with
# its database files made immutable (every write refused, as when the store
# is down); smtp-source sends BACKLOG messages, which tern accepts into its
# spool. Then the database comes back, and while the backlog drains into the
# store a probe sends new mail at a steady rate and watches it arrive over
# IMAP IDLE. Reports the acceptance rate during the outage, the time to first
# ingest progress, the time to drain, the drain rate, and the probe's
# 250-to-visible-in-IMAP p50/p99/max (target: p99 under 2 s) and losses.
# Writes bench/results/drain-*.txt. Not a test. Needs root (chattr).
# Loopback only.
# Usage: [TERN_BIN=path] [SIZE=4096] [PROBE_RATE=10] bench/spool-drain.sh [backlog]   (default 340000)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
BACKLOG=${1:-340000}
SIZE=${SIZE:-4096}
PROBE_RATE=${PROBE_RATE:-10}
SESSIONS=20
OUT=bench/results/drain-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
apt_install postfix
command -v smtp-source >/dev/null || { echo "smtp-source not found (postfix package)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (chattr +i on the database files)" >&2; exit 1; }

bench_tern

DIR=$(mktemp -d /tmp/tern-drain.XXXXXX)
export TERN_DATA_DIR=$DIR
unset TERN_DATABASE__URL
PW=benchmark-password
$TERN domain add bench.test >/dev/null
printf '%s\n' "$PW" | $TERN user add sink@bench.test >/dev/null
printf '%s\n' "$PW" | $TERN user add probe@bench.test >/dev/null
SMTP=$(pick_port); IMAPS=$(pick_port); WEB=$(pick_port)
PID=
cleanup() {
  chattr -i "$DIR/tern.db" "$DIR/tern.db-wal" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

serve() {
  TERN_LISTENERS__SMTP=127.0.0.1:$SMTP TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= \
    TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= TERN_LISTENERS__IMAP= \
    TERN_LISTENERS__IMAPS=127.0.0.1:$IMAPS TERN_WEB__LISTEN=127.0.0.1:$WEB \
    TERN_RELAY__ENABLED=false TERN_SMTP__SENDER_CHECKS=${SENDER_CHECKS:-false} TERN_SMTP__MAX_CONNECTIONS_PER_IP=100 TERN_WEB__METRICS_TOKEN=bench \
    TERN_SPOOL__MAX_BYTES=$((8 * 1024 * 1024 * 1024)) TERN_LOG=warn $TERN serve 2>>"$DIR/serve.log" &
  PID=$!
  wait_port "$SMTP"; wait_port "$IMAPS"; wait_port "$WEB"
}
# The spool's own gauge: cheap to poll (`tern spool stats` reads every
# segment, 1.5 GB here, which would weigh on what is measured).
records() {
  curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$WEB/metrics" |
    awk '/^tern_spool_records /{printf "%d\n", $2}'
}
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2])):.0f}')" "$@"; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$@"; }

# A first start writes the routing copy the spool answers RCPT from while
# the database is down; a WAL must exist for chattr to freeze it too.
serve
kill "$PID"; wait "$PID" 2>/dev/null || true
touch "$DIR/tern.db-wal"
say "database files immutable; tern restarted on them"
chattr +i "$DIR/tern.db" "$DIR/tern.db-wal"
serve

say "outage: $BACKLOG messages of $SIZE bytes from $SESSIONS sessions into the spool"
T0=$(now)
smtp-source -c -s "$SESSIONS" -l "$SIZE" -m "$BACKLOG" -f bench@load.example \
  -t sink@bench.test "127.0.0.1:$SMTP" >/dev/null
T1=$(now)
ACCEPT=$(rate "$BACKLOG" "$T0" "$T1")
STATS=$($TERN spool stats 2>/dev/null)
SPOOLED=$(awk '/^records:/{print $2}' <<<"$STATS")
SPOOL_BYTES=$(awk '/^bytes:/{print $2}' <<<"$STATS")
echo "accepted $BACKLOG in $(secs "$T0" "$T1") s ($ACCEPT msg/s); spool records $SPOOLED, bytes $SPOOL_BYTES"
[ "$SPOOLED" -ge "$BACKLOG" ] || { echo "the spool holds fewer records than were accepted" >&2; exit 1; }

say "database back; probe sends $PROBE_RATE msg/s and watches IMAP IDLE while the backlog drains"
STOP=$DIR/probe.stop
chattr -i "$DIR/tern.db" "$DIR/tern.db-wal"
B0=$(now)
# Started once the store is back: what it measures is new mail behind a
# backlog, not mail that waited out the outage itself.
python3 bench/drain_probe.py --smtp-port "$SMTP" --imaps-port "$IMAPS" --user probe@bench.test \
  --password "$PW" --rate "$PROBE_RATE" --stop "$STOP" --grace 60 >"$DIR/probe.out" 2>&1 &
PROBE=$!
FIRST=
while :; do
  r=$(records)
  if [ -z "$FIRST" ] && [ -n "$r" ] && [ "$r" -lt "$SPOOLED" ]; then FIRST=$(secs "$B0" "$(now)"); fi
  [ "$r" = 0 ] && break
  kill -0 "$PID" 2>/dev/null || { echo "tern died" >&2; exit 1; }
  sleep 0.5
done
B1=$(now)
DRAIN=$(secs "$B0" "$B1")
DRATE=$(rate "$SPOOLED" "$B0" "$B1")
echo "drained $SPOOLED records in $DRAIN s ($DRATE msg/s), first progress after ${FIRST:-?} s"
touch "$STOP"
PROBE_RC=0; wait "$PROBE" || PROBE_RC=$?
PROBE_LINE=$(tail -1 "$DIR/probe.out")
[ "$PROBE_RC" = 0 ] || { echo "--- probe output:"; tail -30 "$DIR/probe.out"; }
echo "probe: $PROBE_LINE"

# Every accepted message is in the sink's INBOX, exactly once.
IN_BOX=$(python3 - "$IMAPS" "$PW" <<'EOF'
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
m.login("sink@bench.test", sys.argv[2])
typ, data = m.select("INBOX", readonly=True)
print(int(data[0]))
m.logout()
EOF
)
echo "sink INBOX: $IN_BOX messages (accepted $BACKLOG)"

{
  echo "# Spool drain after a database outage, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "tern binary: $TERN ($(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo " with uncommitted changes") checkout), SQLite, spool in the data dir, spool.max_bytes 8 GiB"
  echo "outage: database files chattr +i, tern restarted on them; smtp-source -c -s $SESSIONS -l $SIZE -m $BACKLOG, one recipient"
  echo "accepted into the spool during the outage: $BACKLOG in $(secs "$T0" "$T1") s, $ACCEPT msg/s; $SPOOL_BYTES spool bytes"
  echo "database back: first ingest progress after ${FIRST:-?} s; drained $SPOOLED records in $DRAIN s, $DRATE msg/s"
  echo "new mail while draining ($PROBE_RATE msg/s over SMTP, watched with IMAP IDLE over TLS), 250 to visible, seconds: $PROBE_LINE"
  echo "sink INBOX after the drain: $IN_BOX messages (accepted $BACKLOG)"
} | tee "$OUT"
say "wrote $OUT"
[ "$IN_BOX" = "$BACKLOG" ] && [ "$PROBE_RC" = 0 ]
