#!/usr/bin/env bash
# SMTP acceptance and the IMAP mix on 1 node and on N nodes over one
# PostgreSQL (issue 18), side by side in one run, so the cost of sharing
# the database shows. The load is split evenly over the nodes: smtp-source
# sessions (port 25, 4 KiB) and imap_load.py clients (the read mix). Each
# node has its own data dir and spool. Not a test. Loopback only.
#   bench/cluster-bench.sh            # 1 node, then 2
#   NODES=3 MESSAGES=8000 bench/cluster-bench.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
NODES=${NODES:-2}
TOTAL=${MESSAGES:-4000}
SESSIONS=${SESSIONS:-20}
CLIENTS=${CLIENTS:-10}
SECS=${SECS:-20}
OUT=bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
command -v smtp-source >/dev/null || { echo "smtp-source not found (Debian's postfix package)" >&2; exit 1; }

bench_tern
bench_nodes_setup cluster

# One run on a fresh database with N nodes; prints
# "smtp_accepted_per_sec smtp_stored_per_sec imap_ops_per_sec imap_errors".
run() {
  local n=$1 db="tern_cluster_$1"
  bench_fresh_db "$db"
  TERN_DATA_DIR=$ROOT/setup-$n $TERN domain add bench.test >/dev/null
  for u in sink reader; do
    printf 'benchmark-password\n' | TERN_DATA_DIR=$ROOT/setup-$n $TERN user add $u@bench.test >/dev/null
  done
  local mx=() imaps=() dirs=()
  PIDS=()
  for i in $(seq "$n"); do
    local m s w d=$ROOT/node-$n-$i
    m=$(pick_port); s=$(pick_port); w=$(pick_port)
    mx+=("$m"); imaps+=("$s"); dirs+=("$d")
    TERN_DATA_DIR=$d TERN_CLUSTER__NODE_NAME=node-$i \
      TERN_LISTENERS__SMTP=127.0.0.1:$m TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= \
      TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS=127.0.0.1:$s TERN_LISTENERS__POP3= TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= \
      TERN_WEB__LISTEN=127.0.0.1:$w TERN_RELAY__ENABLED=false TERN_SMTP__SENDER_CHECKS=${SENDER_CHECKS:-false} TERN_LOG=warn \
      TERN_SMTP__MAX_CONNECTIONS_PER_IP=200 TERN_IMAP__MAX_CONNECTIONS_PER_IP=200 \
      TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT=200 \
      $TERN serve 2>>"${BENCH_TERN_LOGFILE:-/dev/null}" &
    PIDS+=($!)
    wait_port "$w"
  done
  # SMTP: the sessions and messages split over the nodes, all at once.
  local t0 t1 t2
  t0=$(date +%s.%N)
  local jobs=()
  for i in $(seq 0 $((n - 1))); do
    smtp-source -c -s $((SESSIONS / n)) -l 4096 -m $((TOTAL / n)) -f bench@load.example \
      -t sink@bench.test "127.0.0.1:${mx[$i]}" >/dev/null &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j"; done
  t1=$(date +%s.%N)
  for d in "${dirs[@]}"; do
    for _ in $(seq 3000); do
      TERN_DATA_DIR=$d $TERN spool stats 2>/dev/null | grep -qx 'records: 0' && break
      sleep 0.2
    done
  done
  t2=$(date +%s.%N)
  # IMAP: a filled INBOX, then the read mix with the clients split.
  python3 bench/imap_load.py fill --port "${imaps[0]}" --user reader@bench.test \
    --password benchmark-password --messages 1000 >/dev/null
  local outs=()
  jobs=()
  for i in $(seq 0 $((n - 1))); do
    outs+=("$ROOT/imap-$n-$i.txt")
    python3 bench/imap_load.py measure --port "${imaps[$i]}" --user reader@bench.test \
      --password benchmark-password --clients $((CLIENTS / n)) --seconds "$SECS" --mix read \
      >"$ROOT/imap-$n-$i.txt" &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j"; done
  local ops errs
  ops=$(cat "${outs[@]}" | sed -n 's/.* ops=\([0-9]*\).*/\1/p' | paste -sd+ | bc)
  errs=$(cat "${outs[@]}" | sed -n 's/.* errors=\([0-9]*\).*/\1/p' | paste -sd+ | bc)
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  python3 -c "print(f'{$TOTAL/($t1-$t0):.0f} {$TOTAL/($t2-$t0):.0f} {$ops/$SECS:.0f} $errs')"
}

say "1 node on PostgreSQL"
read -r A1 S1 I1 E1 <<<"$(run 1)"
say "$NODES nodes on one PostgreSQL"
read -r A2 S2 I2 E2 <<<"$(run "$NODES")"
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
{
  echo "# Cluster: 1 node vs $NODES nodes on one PostgreSQL, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); PostgreSQL, every node and the load generators share it"
  echo "load: smtp-source $SESSIONS sessions, $TOTAL messages of 4 KiB to one account on port 25; imap_load.py read mix, $CLIENTS clients, ${SECS}s, 1,000-message INBOX; both split evenly over the nodes"
  echo "1 node:  smtp accepted=$A1/s stored=$S1/s  imap ops=$I1/s errors=$E1"
  echo "$NODES nodes: smtp accepted=$A2/s stored=$S2/s  imap ops=$I2/s errors=$E2"
  echo "ratio $NODES nodes / 1 node: smtp accepted $(ratio "$A2" "$A1"), stored $(ratio "$S2" "$S1"), imap $(ratio "$I2" "$I1")"
} | tee "$OUT"
say "wrote $OUT"
