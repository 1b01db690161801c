#!/usr/bin/env bash
# Dovecot's imaptest against Tern: its scripted conformance tests, or its
# stateful stress load side by side with Dovecot (not a CI test: imaptest
# is not packaged for Debian, and CI cannot fetch it).
#
#   IMAPTEST_SRC=path/to/imaptest bench/imaptest.sh conformance
#   IMAPTEST_SRC=path/to/imaptest bench/imaptest.sh stress [seconds] [clients]
#
# IMAPTEST_SRC is a checkout of https://github.com/dovecot/imaptest. A git
# checkout is built at commit 924f619 (March 2022), the last one that
# builds against Debian 12's dovecot-dev 2.3.19; later ones follow the
# Dovecot 2.4 API. That commit needs one call adapted, which the build step
# does. The build is kept in /tmp/imaptest-build.
#
# conformance: every test group of src/tests against a fresh Tern over TLS;
#   the summary line says how many groups and commands failed.
# stress: imaptest's default random mix (LOGIN, LIST, STATUS, SELECT,
#   FETCH, FETCH bodies, STORE, STORE \Deleted, EXPUNGE, APPEND, LOGOUT),
#   the same for both servers, over TLS; operations per second and ratio.
#   Both servers verify the same argon2id hash at each login (imaptest's
#   clients log in and out all the time); PEER_PASSWORD=plain gives
#   Dovecot a {PLAIN} password instead.
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
MODE=${1:-conformance}
SECS=${2:-20}
CLIENTS=${3:-10}
: "${IMAPTEST_SRC:?set IMAPTEST_SRC to a checkout of github.com/dovecot/imaptest}"
BUILD=/tmp/imaptest-build
OUT=bench/results/imaptest-$MODE-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/results

build_imaptest() {
  [ -x "$BUILD/src/imaptest" ] && return 0
  apt_install dovecot-dev autoconf automake libtool pkg-config make gcc
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  if git -C "$IMAPTEST_SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$IMAPTEST_SRC" archive 924f619 | tar -x -C "$BUILD"
  else
    cp -r "$IMAPTEST_SRC"/. "$BUILD"
  fi
  (
    cd "$BUILD"
    # No .git here: the version scripts need a version.
    for f in build-aux/git-*gen; do printf '#!/bin/sh\necho 0.0.0\n' >"$f"; done
    # Debian's 2.3.19 takes imap_parser_create's params argument.
    sed -i 's/imap_parser_create(\(.*\), NULL, (size_t)-1)/imap_parser_create(\1, NULL, (size_t)-1, NULL)/' src/*.c
    ./autogen.sh >autogen.log 2>&1
    ./configure --with-dovecot=/usr/lib/dovecot >configure.log 2>&1
    make -j"$(nproc)" >make.log 2>&1
  )
}

say "building imaptest (once, in $BUILD)"
build_imaptest
IMAPTEST() { LD_LIBRARY_PATH=/usr/lib/dovecot "$BUILD/src/imaptest" "$@"; }

bench_tern
bench_accounts imaptest reader other
IMAPS=$(pick_port); WEB=$(pick_port)
serve_imaps_only "$IMAPS" "$WEB" TERN_IMAP__MAX_CONNECTIONS_PER_ACCOUNT=$((CLIENTS + 10)) \
  TERN_IMAP__MAX_CONNECTIONS_PER_IP=$((CLIENTS + 20)) TERN_LOG=warn,rustls=error
trap cleanup_imap_bench EXIT
wait_port "$WEB"
COMMON=(host=127.0.0.1 ssl=any-cert user=reader@bench.test pass=benchmark-password)

if [ "$MODE" = conformance ]; then
  say "imaptest conformance tests against tern"
  set +e
  IMAPTEST "${COMMON[@]}" port="$IMAPS" user2=other@bench.test test="$BUILD/src/tests" >"$DIR/run.log" 2>&1
  RC=$?
  set -e
  {
    echo "# imaptest conformance tests against Tern, $(date -u +%FT%TZ)"
    grep -v '^$' "$DIR/run.log"
  } | tee "$OUT"
  say "wrote $OUT"
  exit $RC
fi

# The messages APPEND takes: 300 plain-text mails of 0.5 to 5 KiB.
python3 - "$DIR/mbox" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    for i in range(300):
        body = "\n".join(f"line {j} of message {i} " + "x" * random.randint(10, 70)
                         for j in range(random.randint(5, 60)))
        f.write(f"From s{i}@example.com  Fri Feb 22 17:06:23 2008\nFrom: Sender {i} <s{i}@example.com>\n"
                f"To: reader@bench.test\nSubject: message {i}\nDate: Fri, 22 Feb 2008 17:06:23 +0000\n"
                f"Message-ID: <m{i}@example.com>\n\n{body}\n\n")
PY
# The "Totals:" counts line, summed.
total() { awk '/^Totals:/{t=1;next} t&&/^ *[0-9]+( +[0-9]+)+ *$/{s=0;for(i=1;i<=NF;i++)s+=$i;print s;exit}' "$1"; }
stress() { IMAPTEST "${COMMON[@]}" port="$1" mbox="$DIR/mbox" clients="$CLIENTS" secs="$SECS" >"$2" 2>&1 || true; }

say "tern: imaptest stress, $CLIENTS clients for ${SECS}s"
stress "$IMAPS" "$DIR/tern.log"
kill $TERN_PID 2>/dev/null; wait $TERN_PID 2>/dev/null || true
say "dovecot (peer): the same"
D=$DIR/dovecot
DPORT=$(pick_port)
same_password_hash "$DIR/tern/tern.db"
start_dovecot "$D" "$DIR/tern/tls/cert.pem" "$DIR/tern/tls/key.pem" "$DPORT"
stress "$DPORT" "$D.log"
T=$(total "$DIR/tern.log"); P=$(total "$D.log")
{
  echo "# imaptest stress (default random mix), $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "load: $CLIENTS clients over TLS, ${SECS}s; Tern release on SQLite, Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1) maildir (mail_fsync=always); Dovecot's password: ${DOVECOT_PASS%%\$*}"
  echo "## tern"; sed -n '/^Totals:/,$p' "$DIR/tern.log"; grep -i 'error' "$DIR/tern.log" | sort | uniq -c | head -5 || true
  echo "## dovecot"; sed -n '/^Totals:/,$p' "$D.log"; grep -i 'error' "$D.log" | sort | uniq -c | head -5 || true
  echo "operations: tern $T, dovecot $P, ratio tern/dovecot $(python3 -c "print(f'{$T/$P:.2f}')" 2>/dev/null || echo n/a)"
} | tee "$OUT"
say "wrote $OUT"
