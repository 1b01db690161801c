#!/usr/bin/env bash
# The operator's views of a large queue (issue 23): a backlog of N entries
# (default 340,000, across 50 destinations) written straight into a fresh
# SQLite database, then `tern queue stats`, `tern queue list` and the admin
# queue page are timed (p50/p99 of several runs; each must stay under
# 100 ms). Not a test: the rows take a while to write.
#   bench/queue-scale.sh            # 340,000 entries
#   ENTRIES=100000 bench/queue-scale.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N=${ENTRIES:-340000}
OUT=bench/results/queue-scale-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
apt_install sqlite3 time
say "building tern (release)"
cargo build --release -p tern >/dev/null
TERN=$PWD/target/release/tern
DIR=$(mktemp -d /tmp/tern-qscale.XXXXXX)
export TERN_DATA_DIR=$DIR
unset TERN_DATABASE__URL
$TERN domain add x.test >/dev/null
printf 'operator-password\n' | $TERN user add op@x.test --role admin >/dev/null
say "writing $N queue entries"
sqlite3 "$DIR/tern.db" "INSERT INTO blobs (sha256, size, bytes, refcount) VALUES ('bench', 1, x'41', $N);"
sqlite3 "$DIR/tern.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $N)
  INSERT INTO queue_entries (blob_id, mail_from, rcpt_to, domain, lane, status, attempts, next_attempt_at, created_at, message_id)
  SELECT (SELECT id FROM blobs WHERE sha256 = 'bench'), 'a@x.test', 'r' || i || '@d' || (i % 50) || '.test', 'd' || (i % 50) || '.test',
    CASE WHEN i % 10 = 0 THEN 'fresh' ELSE 'retry' END, 'queued', 1, 4000000000 + i, 1700000000 + i, 'm' || (i / 100) || '@x.test' FROM n;"

pct() { sort -n | awk '{a[NR]=$1} END {i50=int((NR-1)*0.5)+1; i99=int((NR-1)*0.99)+1; printf "p50 %.1f ms, p99 %.1f ms", a[i50]*1000, a[i99]*1000}'; }
time_cmd() {
  for _ in $(seq 20); do
    /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1
  done | pct
}
{
  echo "# Queue views at $N entries, $(date -u +%FT%TZ) (release, SQLite; whole process for the CLI)"
  echo "tern queue stats: $(time_cmd "$TERN" queue stats)"
  echo "tern queue list (first 100): $(time_cmd "$TERN" queue list)"
} | tee "$OUT"

WEB=$(pick_port)
TERN_LISTENERS__SMTP= TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= \
  TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS= TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= \
  TERN_WEB__LISTEN=127.0.0.1:$WEB TERN_LOG=warn TERN_RELAY__ENABLED=false $TERN serve 2>/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
wait_port "$WEB"
JAR=$DIR/cookies
curl -s -o /dev/null -c "$JAR" -H "Origin: http://127.0.0.1:$WEB" \
  --data-urlencode address=op@x.test --data-urlencode password=operator-password \
  "http://127.0.0.1:$WEB/api/login"
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" "http://127.0.0.1:$WEB/admin/queue")
[ "$code" = 200 ] || { echo "admin queue page: HTTP $code" >&2; exit 1; }
page=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' -b "$JAR" "http://127.0.0.1:$WEB/admin/queue"; done | pct)
echo "admin queue page (whole request): $page" | tee -a "$OUT"
echo "written to $OUT"
