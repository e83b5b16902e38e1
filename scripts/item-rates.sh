#!/usr/bin/env bash
# Rates of `GET /api/v1/projects/{id}` (200) served by the query API with learning on (the
# default), the query API with learning off (QUERY_LEARN_VERSIONS=false), and the bench's bare
# axum handler (the same SELECT, the same JSON), all three up at once on one database and
# loaded by wrk in turn, so that each round compares them within seconds of each other; the
# order rotates every round, so none always runs first. Beside each rate, the server's own
# CPU per request (utime + stime from /proc), which moves less with the machine's load.
#
#   scripts/item-rates.sh [BIN_DIR]     (default target/release; needs chronicle, query-api
#                                        and bench built there)
#
# ITEM_ROUNDS (default 6) rounds of ITEM_SECONDS (default 10) per server, wrk with one thread
# and 32 connections (the bench's concurrency), after a 3-second warm-up of each. About
# 4 minutes with the defaults. Needs wrk. (TERM, not INT, stops the servers: a background
# job of a script starts with SIGINT ignored.)
set -euo pipefail
# shellcheck source=scripts/item-setup.sh
ITEM_TOOLS="wrk" ITEM_DB=item_rates source "$(dirname "$0")/item-setup.sh"
rounds=${ITEM_ROUNDS:-6}
seconds=${ITEM_SECONDS:-10}

dev
TOKEN=$(token)
pkill -INT -f "$bin/chronicle"
sleep 2

pids=()
trap 'for pid in "${pids[@]}"; do kill -TERM -- -"$pid" 2>/dev/null || true; done;
      pkill -INT -f "$bin/chronicle" 2>/dev/null || true; rm -rf "$work"' EXIT
serve_query_api() {
    local port=$1 learn=$2
    DATABASE_URL=$url RUST_LOG=warn QUERY_API_ADDR=127.0.0.1:$port QUERY_LEARN_VERSIONS=$learn \
        AUTH_SIGNING_KEYS="$(cat .chronicle/dev-secrets/signing.pem)" \
        setsid "$bin/query-api" > "query-api-$port.log" 2>&1 &
    pids+=($!)
}
serve_query_api 18191 true
serve_query_api 18192 false
setsid "$bin/bench" --serve-bare $db > bare.log 2>&1 &
pids+=($!)
bare=
for _ in $(seq 120); do
    bare=$(grep -o 'http://127.0.0.1:[0-9]*' bare.log | head -1 || true)
    [ -n "$bare" ] && curl -sf -o /dev/null "$bare/item/$(head -1 ids)" &&
        curl -sf -o /dev/null http://127.0.0.1:18191/healthz &&
        curl -sf -o /dev/null http://127.0.0.1:18192/healthz && break
    sleep 0.5
done

names=(learning no-learning bare)
bases=(http://127.0.0.1:18191 http://127.0.0.1:18192 "$bare")
prefixes=(/api/v1/projects/ /api/v1/projects/ /item/)
for i in 0 1 2; do
    sed "1i prefix = \"${prefixes[$i]}\"" ids.lua > "${names[$i]}.lua"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run I SECONDS: loads server I, prints "requests/s cpu-µs-per-request".
run() {
    local i=$1 secs=$2 before after
    before=$(cpu "${pids[$i]}")
    wrk -t1 -c32 -d"${secs}s" -H "authorization: Bearer $TOKEN" -s "${names[$i]}.lua" \
        "${bases[$i]}" > "${names[$i]}.wrk"
    after=$(cpu "${pids[$i]}")
    if grep -q 'Non-2xx\|Socket errors' "${names[$i]}.wrk"; then
        echo "${names[$i]}: $(grep 'Non-2xx\|Socket errors' "${names[$i]}.wrk")" >&2
        exit 1
    fi
    local requests
    requests=$(grep -o '[0-9]* requests in' "${names[$i]}.wrk" | cut -d' ' -f1)
    awk -v r="$requests" -v s="$secs" -v c=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.0f %.1f\n", r / s, c / hz * 1e6 / r}'
}

for i in 0 1 2; do run $i 3 > /dev/null; done
printf '| round | order | %s req/s (CPU µs/req) | %s | %s | learning / bare | no learning / bare |\n' "${names[@]}"
echo '|---|---|---|---|---|---|---|'
for round in $(seq "$rounds"); do
    declare -A rate=() us=()
    order=()
    for k in 0 1 2; do order+=($(((k + round) % 3))); done
    for i in "${order[@]}"; do
        run "$i" "$seconds" > figures
        read -r "rate[$i]" "us[$i]" < figures
    done
    awk -v n="$round" -v o="${names[${order[0]}]}, ${names[${order[1]}]}, ${names[${order[2]}]}" \
        -v a="${rate[0]}" -v b="${rate[1]}" -v c="${rate[2]}" \
        -v ua="${us[0]}" -v ub="${us[1]}" -v uc="${us[2]}" \
        'BEGIN {printf "| %d | %s | %d (%s) | %d (%s) | %d (%s) | %.2fx | %.2fx |\n", n, o, a, ua, b, ub, c, uc, a / c, b / c}'
done
