#!/usr/bin/env bash
# Webmail search benchmark (not a test): 100,000 messages in one account,
# filled through the normal append path, then the search box's own call
# (`Core::search`) timed on SQLite and on a throwaway PostgreSQL.
# Usage: bench/search-bench.sh [messages]   (SKIP_TERN=1 or SKIP_DOVECOT=1 for one side)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=bench/results/search-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results
{
  echo "# webmail search at $N messages, $(date -u), $(nproc) cores"
  if [ "${SKIP_TERN:-0}" != 1 ]; then
  say "building the search bench (release)"
  cargo bench -p mailcore --bench search --no-run >/dev/null 2>&1
  say "SQLite"
  TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  start_test_postgres >/dev/null
  DB=${TERN_TEST_PG_URL%/*}/tern_search_bench
  psql "$TERN_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS tern_search_bench" -c "CREATE DATABASE tern_search_bench"
  say "PostgreSQL"
  TERN_BENCH_DB_URL=$DB TERN_BENCH_N=$N cargo bench -p mailcore --bench search 2>/dev/null
  stop_test_postgres >/dev/null 2>&1 || true
  fi
  if [ "${SKIP_DOVECOT:-0}" != 1 ]; then
    say "Dovecot (peer, no FTS plugin: SEARCH TEXT reads the messages)"
    apt_install dovecot-imapd
    DIR=$(mktemp -d /tmp/tern-sbench.XXXXXX); chmod 755 "$DIR"
    D=$DIR/dovecot; mkdir -p "$D/run" "$D/mail/reader@bench.test" "$D/home"
    python3 bench/search_dovecot.py fill "$D/mail/reader@bench.test" "$N"
    id benchimap >/dev/null 2>&1 || as_root useradd -M -s /usr/sbin/nologin benchimap
    as_root chown -R benchimap "$D/mail" "$D/home"
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
      -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1
    DPORT=$(pick_port)
    printf 'reader@bench.test:{PLAIN}benchmark-password\n' > "$D/passwd"
    cat > "$D/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
log_path = $D/dovecot.log
ssl = required
ssl_cert = <$DIR/cert.pem
ssl_key = <$DIR/key.pem
auth_mechanisms = plain
mail_location = maildir:$D/mail/%u
passdb {
  driver = passwd-file
  args = $D/passwd
}
userdb {
  driver = static
  args = uid=benchimap gid=benchimap home=$D/home/%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = $DPORT
    ssl = yes
  }
}
CONF
    as_root dovecot -c "$D/dovecot.conf" </dev/null >/dev/null 2>&1
    wait_port "$DPORT"
    echo "dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1), maildir, IMAP UID SEARCH TEXT over TLS:"
    python3 bench/search_dovecot.py measure "$DPORT" reader@bench.test benchmark-password
    as_root doveadm -c "$D/dovecot.conf" stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
  fi
} | tee "$OUT"
