#!/usr/bin/env bash
# Memory per idle IMAP connection (issue 15: below 64 KiB at 10,000): Tern
# (release, SQLite) holds N TLS connections, each logged in, INBOX
# selected and in IDLE; the growth of its resident memory over N is the
# cost of one. Not a test; loopback only. Logins are argon2id, so filling
# 10,000 takes a couple of minutes.
# Usage: [TERN_BIN=path] bench/imap-idle-memory.sh [connections]
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-10000}
OUT=bench/results/imap-idle-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
# Each side needs a descriptor per connection: take what the hard limit allows.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((N + 200)) ] || {
  echo "open files limit $(ulimit -n) is too low for $N connections" >&2; exit 1; }
bench_tern
bench_accounts idle idler
IMAPS=$(pick_port); WEB=$(pick_port)
serve_imaps_only "$IMAPS" "$WEB" TERN_IMAP__MAX_CONNECTIONS=$((N + 100)) \
  TERN_IMAP__MAX_CONNECTIONS_PER_IP=$((N + 100)) TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT=$((N + 100))
cleanup() { kill $TERN_PID 2>/dev/null || true; exec 3>&- 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
wait_port "$WEB"
rss() { awk '/^VmRSS/{print $2}' /proc/$TERN_PID/status; }
# One connection first, so what every session shares (TLS config, the
# mailbox index, pools) is counted before the baseline.
exec 3> >(python3 bench/imap_idle.py --port "$IMAPS" --user idler@bench.test \
  --password benchmark-password --connections 1 > "$DIR/warm.out")
for _ in $(seq 600); do grep -q idling "$DIR/warm.out" 2>/dev/null && break; sleep 0.2; done
BASE=$(rss)
say "tern: $N connections in IDLE (baseline ${BASE} KiB)"
T0=$(date +%s)
exec 4> >(python3 bench/imap_idle.py --port "$IMAPS" --user idler@bench.test \
  --password benchmark-password --connections "$N" > "$DIR/idle.out")
for _ in $(seq 3000); do grep -q idling "$DIR/idle.out" 2>/dev/null && break; sleep 0.5; done
grep -q idling "$DIR/idle.out" || { echo "the connections did not all reach IDLE" >&2; exit 1; }
sleep 5
HELD=$(rss)
PER=$(python3 -c "print(f'{($HELD-$BASE)/$N:.1f}')")
{
  echo "# Memory per idle IMAP connection, $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "tern binary: $TERN ($(git rev-parse --short HEAD 2>/dev/null) checkout), SQLite"
  echo "load: $N TLS connections (Python asyncio), each LOGIN + SELECT INBOX + IDLE, filled in $(( $(date +%s) - T0 )) s"
  echo "tern resident memory: ${BASE} KiB with one connection, ${HELD} KiB with $N more"
  echo "per idle connection: ${PER} KiB (target below 64)"
} | tee "$OUT"
exec 4>&- 3>&-
