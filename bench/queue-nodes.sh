#!/usr/bin/env bash
# Queue drain with several Tern nodes on one PostgreSQL (issue 23): the
# same load as bench/queue-bench.sh (a deferred backlog to one destination,
# released, while fresh mail goes to another), run once with one node and
# once with NODES nodes sharing one database, side by side in one run.
# Each node has its own data dir (its spool is its own) and its own queue
# runner; leases decide who delivers what. Not a test. Loopback only.
#   bench/queue-nodes.sh                 # 1 node, then 2
#   NODES=3 BACKLOG_MESSAGES=3400 bench/queue-nodes.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
NODES=${NODES:-2}
RATE=${RATE:-20}
SECS=${SECS:-30}
MSGS=${BACKLOG_MESSAGES:-1000}
RCPTS=${BACKLOG_RCPTS:-100}
TOTAL=$((MSGS * RCPTS))
OUT=bench/results/queue-nodes-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

bench_tern
bench_nodes_setup qnodes

# One run: a fresh database, N nodes, the backlog, the measure. Prints
# queue_load.py's result line.
run() {
  local n=$1 db="tern_nodes_$1"
  bench_fresh_db "$db"
  export TERN_DATA_DIR=$ROOT/setup-$n
  $TERN domain add bench.test >/dev/null
  printf 'benchmark-password\n' | $TERN user add sink@bench.test >/dev/null
  local bport fport sub=()
  bport=$(pick_port); fport=$(pick_port)
  PIDS=()
  for i in $(seq "$n"); do
    local s w
    s=$(pick_port); w=$(pick_port)
    sub+=("$s")
    TERN_DATA_DIR=$ROOT/node-$n-$i \
    TERN_LISTENERS__SMTP= TERN_LISTENERS__SUBMISSION=127.0.0.1:$s TERN_LISTENERS__SMTPS= \
      TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS= TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= \
      TERN_WEB__LISTEN=127.0.0.1:$w TERN_LOG=${BENCH_TERN_LOG:-warn} \
      TERN_RELAY__ROUTES="backlog.test=127.0.0.1:$bport, fresh.test=127.0.0.1:$fport" \
      TERN_SMTP__MAX_CONNECTIONS_PER_IP=100 TERN_SMTP__MAX_CONNECTIONS_PER_ACCOUNT=100 \
      $TERN serve 2>>"${BENCH_TERN_LOGFILE:-/dev/null}" &
    PIDS+=($!)
    wait_port "$w"
  done
  python3 bench/queue_load.py fill --port "${sub[0]}" --starttls --auth sink@bench.test:benchmark-password \
    --sender sink@bench.test --messages "$MSGS" --rcpts "$RCPTS" >&2
  for _ in $(seq 1200); do
    $TERN queue stats | grep -q "^lane retry	$TOTAL\$" && break
    sleep 0.5
  done
  # Fresh mail goes in through the last node; every node's runner drains.
  python3 bench/queue_load.py measure --port "${sub[-1]}" --starttls --auth sink@bench.test:benchmark-password \
    --sender sink@bench.test --backlog-port "$bport" --fresh-port "$fport" --backlog-total "$TOTAL" \
    --rate "$RATE" --seconds "$SECS" --release-cmd "$TERN queue retry --domain backlog.test"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}


say "1 node on PostgreSQL: backlog of $TOTAL entries"
ONE=$(run 1)
echo "$ONE"
say "$NODES nodes on one PostgreSQL: the same"
MANY=$(run "$NODES")
echo "$MANY"

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}')" "$1" "$2" 2>/dev/null || echo n/a; }
{
  echo "# Queue drain, 1 and $NODES nodes on one PostgreSQL, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; every node, PostgreSQL and the fake MX servers share it"
  echo "load: backlog $TOTAL entries ($MSGS messages x $RCPTS recipients, one destination, released at once); fresh mail $RATE/s for ${SECS}s to another destination"
  echo "1 node: $ONE"
  echo "$NODES nodes: $MANY"
  echo "ratio $NODES nodes / 1 node drain rate: $(ratio "$(field drain_per_sec "$MANY")" "$(field drain_per_sec "$ONE")")"
} | tee "$OUT"
say "wrote $OUT"
