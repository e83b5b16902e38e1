#!/usr/bin/env bash
# Instructions per request of `GET /api/v1/projects/{id}` (200) in the query API and in the
# bench's bare axum handler (the same SELECT, the same JSON), counted by valgrind's callgrind:
# user-space instructions of the serving process only, which unlike a rate do not move with
# what else the machine is doing (PERFORMANCE.md, "Item 4 counted in instructions").
#
#   scripts/item-instructions.sh [BIN_DIR]     (default target/release; needs chronicle,
#                                               query-api and bench built there)
#
# With ITEM_PROFILES=DIR, the callgrind profiles are kept there (query-api.cg.*, bare.cg.*)
# for callgrind_annotate --inclusive=yes.
#
# Makes database `item_instructions` with 200 projects through the dev runner, then serves it
# under callgrind, once per process, with wrk (8 connections, one thread) for 15 s after a
# warm-up. Instrumentation is on only while wrk measures. Needs valgrind and wrk.
set -euo pipefail
# shellcheck source=scripts/item-setup.sh
ITEM_TOOLS="valgrind callgrind_control callgrind_annotate wrk" source "$(dirname "$0")/item-setup.sh"

# measure NAME PREFIX BASE COMMAND...: serves under callgrind, prints instructions per
# request. BASE is the server's URL, or - for the one it prints.
measure() {
    local name=$1 prefix=$2 base=$3
    shift 3
    sed "1i prefix = \"$prefix\"" ids.lua > "$name.lua"
    setsid valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name.cg" \
        "$@" > "$name.log" 2>&1 &
    local pid=$! printed=$base
    for _ in $(seq 240); do
        [ "$printed" = - ] && base=$(grep -o 'http://127.0.0.1:[0-9]*' "$name.log" | head -1 || true)
        [ -n "$base" ] && [ "$base" != - ] && curl -s -o /dev/null "$base/healthz" && break
        sleep 0.5
    done
    wrk -t1 -c8 -d8s -H "authorization: Bearer $TOKEN" -s "$name.lua" "$base" > /dev/null
    callgrind_control -i on $pid > /dev/null
    wrk -t1 -c8 -d15s -H "authorization: Bearer $TOKEN" -s "$name.lua" "$base" > "$name.wrk"
    callgrind_control -i off $pid > /dev/null
    callgrind_control -d $pid > /dev/null
    sleep 3
    kill -INT -- -$pid 2> /dev/null || true
    sleep 2
    kill -9 -- -$pid 2> /dev/null || true
    if grep -q 'Non-2xx' "$name.wrk"; then
        echo "$name: answers other than 200: $(grep 'Non-2xx' "$name.wrk")" >&2
        exit 1
    fi
    local requests instructions
    requests=$(grep -o '[0-9]* requests in' "$name.wrk" | cut -d' ' -f1)
    instructions=$(cat "$work/$name".cg.* | awk '/^totals:/ {s += $2} END {print s}')
    echo "$name: $requests requests, $((instructions / requests)) instructions each"
    if [ -n "${ITEM_PROFILES:-}" ]; then
        mkdir -p "$ITEM_PROFILES"
        cp "$work/$name".cg.* "$ITEM_PROFILES/"
    fi
}

# A fresh token for the serving runs: the login's lasts 15 minutes.
dev
TOKEN=$(token)
pkill -INT -f "$bin/chronicle"
sleep 2
DATABASE_URL=$url RUST_LOG=warn QUERY_API_ADDR=127.0.0.1:18191 \
    AUTH_SIGNING_KEYS="$(cat .chronicle/dev-secrets/signing.pem)" \
    measure query-api /api/v1/projects/ http://127.0.0.1:18191 "$bin/query-api"
measure bare /item/ - "$bin/bench" --serve-bare $db
