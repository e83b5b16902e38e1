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
bin=$(realpath "${1:-target/release}")
db=item_instructions
url=postgres://postgres@127.0.0.1/$db
work=$(mktemp -d)
trap 'pkill -INT -f "$bin/chronicle" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
for tool in valgrind callgrind_control callgrind_annotate wrk; do
    command -v $tool > /dev/null || { echo "needs $tool" >&2; exit 2; }
done
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"

dev() {
    DATABASE_URL=$url RUST_LOG=warn COMMAND_API_ADDR=127.0.0.1:18180 \
        QUERY_API_ADDR=127.0.0.1:18181 PROJECTOR_ADDR=127.0.0.1:18182 \
        setsid "$bin/chronicle" > dev.log 2>&1 &
    for _ in $(seq 100); do
        curl -sf http://127.0.0.1:18180/readyz > /dev/null && return
        sleep 0.3
    done
    echo "the dev runner did not start: $(tail -3 dev.log)" >&2
    exit 1
}
token() {
    curl -sf -H 'content-type: application/json' \
        -d '{"email":"admin@chronicle.test","password":"chronicle-dev-admin"}' \
        http://127.0.0.1:18180/api/v1/auth/login |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

dev
TOKEN=$(token)
for i in $(seq 200); do
    id=$(cat /proc/sys/kernel/random/uuid)
    curl -sf -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"id\":\"$id\",\"name\":\"project $i\",\"description\":\"measured by callgrind\"}" \
        http://127.0.0.1:18180/api/v1/projects
    echo "$id" >> ids
done
for _ in $(seq 100); do
    [ "$(psql -h 127.0.0.1 -U postgres -d $db -Atc 'SELECT count(*) FROM projects')" = 200 ] && break
    sleep 0.2
done
pkill -INT -f "$bin/chronicle"
sleep 2

cat > ids.lua <<'EOF'
local ids = {}
for line in io.lines("ids") do ids[#ids + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", prefix .. ids[(i % #ids) + 1])
end
EOF

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
