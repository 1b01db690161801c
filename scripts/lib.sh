# Shared set-up for scripts/run.sh and scripts/test.sh. Every step checks
# first and installs only what is missing, so running it twice is cheap.
# Versions are pinned where the toolchain (rustc 1.95) requires it.

set -euo pipefail

CARGO_DENY_VERSION=0.20.2
# Must equal the wasm-bindgen version locked in Cargo.lock.
WASM_BINDGEN_VERSION=0.2.130

say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust_tools() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    # Not --locked: its lockfile names a crate version this registry lacks.
    # A light profile: it runs once per build on one file, so it need not
    # be fast, and the default (full optimisation) cost minutes of a first run.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
      cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

# Builds what `cargo leptos build` (debug) builds, with the plain tools it
# would run, so neither script spends 15 minutes compiling cargo-leptos:
# the server binary, the app crate for the browser (hydrate), wasm-bindgen's
# JS glue, and the stylesheet, as pkg/tern.{js,wasm,css}. The server reads
# them at start and serves them as /pkg/tern.<hash>.* (server/src/web/assets.rs);
# LEPTOS_OUTPUT_NAME (.cargo/config.toml) tells Leptos at compile time that
# the wasm is named like the JS. The new pkg/ is built beside the old one and
# swapped in, so a server starting meanwhile never reads half a build.
build_site() {
  local site=target/site
  say "build: server (cargo build -p tern)"
  cargo build -p tern --bin tern
  say "build: browser wasm (cargo build -p app --target wasm32-unknown-unknown --features hydrate)"
  cargo build -p app --lib --target wasm32-unknown-unknown --no-default-features --features hydrate
  local next="$site/pkg.next"
  rm -rf "$next"
  mkdir -p "$next"
  wasm-bindgen --target web --no-typescript --out-dir "$next" --out-name tern \
    target/wasm32-unknown-unknown/debug/app.wasm
  mv "$next/tern_bg.wasm" "$next/tern.wasm"
  cp style/main.css "$next/tern.css"
  rm -rf "$site/pkg.old"
  if [ -d "$site/pkg" ]; then mv "$site/pkg" "$site/pkg.old"; fi
  mv "$next" "$site/pkg"
  rm -rf "$site/pkg.old"
}

# The production binary, target/release/tern: the browser's files built for
# size (profile wasm-release, and wasm-opt -Oz when version 116 or later is on
# PATH; Debian's binaryen 108 breaks hydration, so it is never used), then
# `tern` in release with those files compiled in (feature embed-site), so it
# runs from any directory with no target/site.
build_release() {
  local pkg=target/site-release/pkg
  say "build: browser wasm, release (cargo build -p app --profile wasm-release)"
  cargo build -p app --lib --target wasm32-unknown-unknown --profile wasm-release \
    --no-default-features --features hydrate
  rm -rf "$pkg"
  mkdir -p "$pkg"
  wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name tern \
    target/wasm32-unknown-unknown/wasm-release/app.wasm
  mv "$pkg/tern_bg.wasm" "$pkg/tern.wasm"
  local v
  v=$( (wasm-opt --version 2>/dev/null || true) | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')
  if [ -n "$v" ] && [ "$v" -ge 116 ]; then
    say "wasm-opt $v: optimising the wasm for size"
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      -o "$pkg/tern.opt.wasm" "$pkg/tern.wasm"
    mv "$pkg/tern.opt.wasm" "$pkg/tern.wasm"
  else
    say "no wasm-opt 116+ on PATH: the wasm is left as built (cargo install wasm-opt --version 0.116.1 adds it)"
  fi
  cp style/main.css "$pkg/tern.css"
  say "build: tern, release, with the web files inside (cargo build --release --features embed-site)"
  TERN_EMBED_SITE_DIR="$PWD/$pkg" cargo build --release -p tern --bin tern --features embed-site
}

# cargo-deny for the dependency policy (deny.toml). Built without its
# advisory-fetching TLS stack and with a light profile: it is a checker,
# not something that needs to be fast.
ensure_cargo_deny() {
  if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
    say "installing cargo-deny $CARGO_DENY_VERSION (a few minutes, once)"
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
      cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --no-default-features
  fi
}

# Starts a throwaway PostgreSQL cluster owned by this run and exports
# TERN_TEST_PG_URL. initdb refuses to run as root, so as root the cluster
# belongs to the postgres user.
start_test_postgres() {
  apt_install postgresql
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_DIR=$(mktemp -d /tmp/tern-pg.XXXXXX)
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$PG_DIR"
    run=(su postgres -s /bin/sh -c)
  else
    run=(sh -c)
  fi
  PG_PORT=${TERN_TEST_PG_PORT:-55432}
  while (echo >"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; do PG_PORT=$((PG_PORT + 1)); done
  "${run[@]}" "$bindir/initdb -D $PG_DIR/data -A trust -U postgres >$PG_DIR/initdb.log 2>&1"
  "${run[@]}" "$bindir/pg_ctl -D $PG_DIR/data -l $PG_DIR/server.log -w -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c synchronous_commit=on' start >/dev/null"
  PG_STOP=("${run[@]}" "$bindir/pg_ctl -D $PG_DIR/data -m fast stop")
  export TERN_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  say "PostgreSQL test server up at 127.0.0.1:$PG_PORT ($("$bindir/postgres" --version))"
}

stop_test_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

# Several nodes on one test PostgreSQL (bench/queue-nodes.sh,
# bench/cluster-bench.sh): starts the database and sets ROOT (named after
# $1) for the nodes' data dirs; node pids go in PIDS, and everything is
# stopped and removed on exit.
bench_nodes_setup() {
  start_test_postgres
  PIDS=()
  trap bench_nodes_cleanup EXIT
  ROOT=$(mktemp -d "/tmp/tern-$1.XXXXXX")
}

bench_nodes_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_test_postgres
  rm -rf "${ROOT:-/nonexistent}"
}

# A fresh, empty database named $1 on the test PostgreSQL; sets
# TERN_DATABASE__URL to it.
bench_fresh_db() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  "$bindir/psql" -q -d "$TERN_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  export TERN_DATABASE__URL="${TERN_TEST_PG_URL%/*}/$1"
}

# The benchmarks' tern: TERN_BIN when given (another build, say the commit
# before a change), else a release build of this tree. Sets TERN.
bench_tern() {
  if [ -n "${TERN_BIN:-}" ]; then
    TERN=$TERN_BIN
  else
    say "building tern (release)"
    cargo build --release -p tern >/dev/null
    TERN=$PWD/target/release/tern
  fi
}

# A benchmark's fresh data dir (after bench_tern): sets DIR (named after
# $1) and TERN_DATA_DIR, and adds bench.test with USER@bench.test for each
# further argument, all with the password benchmark-password. DIR is
# world-readable: Dovecot, the peer, reads Tern's certificate in it.
bench_accounts() {
  DIR=$(mktemp -d "/tmp/tern-$1.XXXXXX")
  shift
  chmod 755 "$DIR"
  export TERN_DATA_DIR=$DIR/tern
  unset TERN_DATABASE__URL
  $TERN domain add bench.test >/dev/null
  for u in "$@"; do
    printf 'benchmark-password\n' | $TERN user add "$u@bench.test" >/dev/null
  done
}

# Starts "$TERN serve" in the background with IMAPS alone on 127.0.0.1:$1
# and the web on 127.0.0.1:$2, plus any NAME=value given after them; sets
# TERN_PID (the IMAP benchmarks).
serve_imaps_only() {
  local imaps=$1 web=$2
  shift 2
  env TERN_LISTENERS__SMTP= TERN_LISTENERS__SUBMISSION= TERN_LISTENERS__SMTPS= \
    TERN_LISTENERS__IMAP= TERN_LISTENERS__IMAPS=127.0.0.1:$imaps TERN_LISTENERS__POP3= \
    TERN_LISTENERS__POP3S= TERN_LISTENERS__MANAGESIEVE= TERN_WEB__LISTEN=127.0.0.1:$web TERN_LOG=warn \
    TERN_RELAY__ENABLED=false "$@" "$TERN" serve &
  TERN_PID=$!
}

# A free TCP port on 127.0.0.1, and waiting for one to listen (benchmarks).
pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# A throwaway Dovecot, the IMAP peer of the benchmarks: one user
# reader@bench.test (password benchmark-password), Maildir under $1/mail,
# implicit TLS on 127.0.0.1:$4 with the PEM cert $2 and key $3.
start_dovecot() {
  local D=$1 cert=$2 key=$3 port=$4
  apt_install dovecot-imapd
  mkdir -p "$D/run" "$D/mail" "$D/home"
  id benchimap >/dev/null 2>&1 || as_root useradd -M -s /usr/sbin/nologin benchimap
  as_root chown -R benchimap "$D/mail" "$D/home"
  printf 'reader@bench.test:%s\n' "${DOVECOT_PASS:-{PLAIN\}benchmark-password}" > "$D/passwd"
  cat > "$D/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
log_path = $D/dovecot.log
ssl = required
ssl_cert = <$cert
ssl_key = <$key
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:$D/mail/%u
mail_fsync = always
# The benchmarks log one user in many times from one address.
mail_max_userip_connections = 1000
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
    port = $port
    ssl = yes
  }
}
CONF
  # Its own output must not hold the caller's pipe open.
  as_root dovecot -c "$D/dovecot.conf" </dev/null >/dev/null 2>&1
  wait_port "$port"
}

# Dovecot's password field for reader@bench.test: the very argon2id hash
# Tern stored in the database $1, so that both servers pay the same
# argon2id cost at each login (Dovecot verifies {ARGON2ID} with libsodium).
# PEER_PASSWORD=plain keeps Dovecot's {PLAIN} instead, as the benchmarks
# did before 2026-12-06.
same_password_hash() {
  if [ "${PEER_PASSWORD:-same}" = plain ]; then
    DOVECOT_PASS='{PLAIN}benchmark-password'
  else
    DOVECOT_PASS="{ARGON2ID}$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select password_hash from accounts where address = ?", ("reader@bench.test",)).fetchone()[0])' "$1")"
  fi
  export DOVECOT_PASS
}

# The IMAP benchmarks' clean-up (trap ... EXIT): the Tern they started
# (TERN_PID), a Dovecot under $DIR/dovecot whether or not its pid file was
# found (it often is not, in base_dir), and $DIR.
cleanup_imap_bench() {
  kill "${TERN_PID:-}" 2>/dev/null || true
  [ -f "$DIR/dovecot/dovecot.conf" ] && stop_dovecot "$DIR/dovecot"
  rm -rf "$DIR"
}

stop_dovecot() {
  as_root doveadm -c "$1/dovecot.conf" stop >/dev/null 2>&1 || true
  as_root pkill -f "dovecot -c $1/dovecot.conf" 2>/dev/null || true
}
