#!/usr/bin/env bash
# A PostgreSQL primary and a streaming standby on loopback, for the
# failover test (server/tests/failover.rs) and for trying the HA set-up by
# hand. Synchronous replication is on for the primary only (given on its
# command line, so the standby, once promoted, does not wait for a standby
# of its own). Runs the servers as postgres when started as root.
#   pg-pair.sh start DIR      -> prints "PRIMARY_PORT STANDBY_PORT"
#   pg-pair.sh fail DIR       -> kills the primary (immediate) and promotes the standby
#   pg-pair.sh stop DIR       -> stops both
set -euo pipefail
cmd=${1:?start|fail|stop}
dir=${2:?directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
run() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
free_port() {
  local p=$1
  while (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
case $cmd in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    p1=$(free_port 56432)
    run "$bindir/initdb -D $dir/primary -A trust -U postgres >$dir/initdb.log 2>&1"
    run "$bindir/pg_ctl -D $dir/primary -l $dir/primary.log -w -o \"-p $p1 -k $dir -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=4 -c synchronous_standby_names=* -c synchronous_commit=on\" start >/dev/null"
    p2=$(free_port $((p1 + 1)))
    run "$bindir/pg_basebackup -h 127.0.0.1 -p $p1 -U postgres -D $dir/standby -R -X stream >$dir/basebackup.log 2>&1"
    run "$bindir/pg_ctl -D $dir/standby -l $dir/standby.log -w -o \"-p $p2 -k $dir -c listen_addresses=127.0.0.1\" start >/dev/null"
    echo "$p1 $p2" >"$dir/ports"
    # The standby must be streaming (and synchronous) before anything is
    # acknowledged, or the first commits would wait for it.
    for _ in $(seq 100); do
      st=$(run "$bindir/psql -h 127.0.0.1 -p $p1 -U postgres -qAtc \"SELECT sync_state FROM pg_stat_replication\"" 2>/dev/null || true)
      [ "$st" = sync ] && break
      sleep 0.1
    done
    echo "$p1 $p2"
    ;;
  fail)
    run "$bindir/pg_ctl -D $dir/primary -m immediate stop >/dev/null"
    run "$bindir/pg_ctl -D $dir/standby -w promote >/dev/null"
    ;;
  stop)
    for d in primary standby; do
      [ -d "$dir/$d" ] && run "$bindir/pg_ctl -D $dir/$d -m immediate stop >/dev/null 2>&1" || true
    done
    ;;
esac
