#!/usr/bin/env bash
# Builds Tern and runs it on its embedded default: SQLite in ./data, a
# self-signed certificate made on first start, web on 127.0.0.1:8080.
# On first run it creates a demo domain and account and prints the login.
#
#   ./scripts/run.sh            quick: a debug build, web files from target/site
#   ./scripts/run.sh --release  the production binary, target/release/tern, with
#                               its web files inside: copy it anywhere and run it
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

ensure_rust_tools
if [ "${1:-}" = "--release" ]; then
  build_release
  TERN=target/release/tern
else
  build_site
  TERN=target/debug/tern
fi

if [ -z "$("$TERN" user list 2>/dev/null)" ]; then
  pw=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
  "$TERN" domain list | grep -qx example.test || "$TERN" domain add example.test >/dev/null
  printf '%s\n' "$pw" | "$TERN" user add demo@example.test --role admin >/dev/null
  say "created a demo account: sign in at http://127.0.0.1:8080/login as demo@example.test with password $pw"
  echo "    (change it with: $TERN user passwd demo@example.test)"
fi

say "starting tern on http://127.0.0.1:8080 (Ctrl-C stops it)"
exec "$TERN" serve
