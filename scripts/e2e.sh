#!/usr/bin/env bash
# The reference PWA's end-to-end test (issue 14; docs/offline-replay.md): starts the
# `chronicle` runner on its own database and free loopback ports, builds the PWA and serves it
# with its same-origin proxy (vite preview), runs web/e2e/run.mjs in headless Chromium, and
# stops everything it started. Installs Debian's chromium when missing, and runs `npm ci` in
# clients/typescript and web when their node_modules are missing.
#
# Settings: CHRONICLE_BIN (a built runner; default: `cargo build --bin chronicle`),
# E2E_PG_SERVER (default postgres://postgres@127.0.0.1:5432), CHROMIUM (default
# /usr/bin/chromium). Logs and screenshots go to target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_SERVER=${E2E_PG_SERVER:-postgres://postgres@127.0.0.1:5432}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/e2e
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
    echo "== installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
for package in clients/typescript web; do
    if [ ! -d "$package/node_modules" ]; then
        echo "== npm ci in $package"
        (cd "$package" && npm ci --no-audit --no-fund)
    fi
done
if [ -z "${CHRONICLE_BIN:-}" ]; then
    echo "== building the runner"
    cargo build --bin chronicle
    CHRONICLE_BIN=$TARGET/debug/chronicle
fi

free_port() {
    node -e '
const net = require("node:net");
const server = net.createServer().listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
  server.close();
});'
}
COMMAND_PORT=$(free_port)
QUERY_PORT=$(free_port)
PROJECTOR_PORT=$(free_port)
APP_PORT=$(free_port)
DATABASE=chronicle_e2e_$(date +%s)_$$
rm -rf "$OUT"
mkdir -p "$OUT/screenshots"

RUNNER_PID=
APP_PID=
cleanup() {
    for pid in $APP_PID $RUNNER_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_for() { # url pid log
    for _ in $(seq 1 300); do
        if curl -sf "$1" >/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "$3 exited; its log:" >&2; cat "$3" >&2; exit 1; }
        sleep 0.1
    done
    echo "$1 did not answer within 30 s; log $3:" >&2
    tail -50 "$3" >&2
    exit 1
}

echo "== starting chronicle: commands :$COMMAND_PORT, queries :$QUERY_PORT, database $DATABASE"
DATABASE_URL=$PG_SERVER/$DATABASE COMMAND_API_ADDR=127.0.0.1:$COMMAND_PORT \
    QUERY_API_ADDR=127.0.0.1:$QUERY_PORT PROJECTOR_ADDR=127.0.0.1:$PROJECTOR_PORT \
    RELAY_ENABLED=false RUST_LOG=${RUST_LOG:-warn} \
    "$CHRONICLE_BIN" >"$OUT/chronicle.log" 2>&1 &
RUNNER_PID=$!
wait_for "http://127.0.0.1:$COMMAND_PORT/readyz" "$RUNNER_PID" "$OUT/chronicle.log"
wait_for "http://127.0.0.1:$QUERY_PORT/readyz" "$RUNNER_PID" "$OUT/chronicle.log"

echo "== building the PWA"
(cd web && npm run build --silent) >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }

echo "== serving it on :$APP_PORT"
(
    cd web
    CHRONICLE_COMMAND_URL=http://127.0.0.1:$COMMAND_PORT CHRONICLE_QUERY_URL=http://127.0.0.1:$QUERY_PORT \
        CHRONICLE_PROXY_LOG=$OUT/proxy.log \
        exec ./node_modules/.bin/vite preview --host 127.0.0.1 --port "$APP_PORT" --strictPort
) >"$OUT/vite.log" 2>&1 &
APP_PID=$!
wait_for "http://127.0.0.1:$APP_PORT/" "$APP_PID" "$OUT/vite.log"

echo "== running web/e2e/run.mjs"
cd web
E2E_APP_URL=http://localhost:$APP_PORT CHRONICLE_PROXY_LOG=$OUT/proxy.log \
    DATABASE_URL=$PG_SERVER/$DATABASE E2E_SCREENSHOTS=$OUT/screenshots \
    node e2e/run.mjs
