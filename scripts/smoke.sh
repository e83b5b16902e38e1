#!/usr/bin/env bash
# Starts the whole system with the README's run command on a scratch database, signs in as the
# dev runner's bootstrap admin, sends one command through the command API and reads it back,
# consistently, from the query API; then scrapes it with a real Prometheus and the alerting rules
# (scripts/prometheus-smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${SMOKE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chronicle_smoke}"
export COMMAND_API_ADDR=127.0.0.1:18080 QUERY_API_ADDR=127.0.0.1:18081 PROJECTOR_ADDR=127.0.0.1:18082
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${DATABASE_URL##*/}" >/dev/null

# Build first, so that the wait for readiness below measures start-up, not compilation (a cold
# release build on a busy 2-core machine takes longer than that wait).
cargo build --release -p chronicle

log=$(mktemp)
cargo run --release -p chronicle >"$log" 2>&1 &
runner=$!
stop() { kill "$runner" 2>/dev/null || true; wait "$runner" 2>/dev/null || true; }
trap stop EXIT

for port in 18080 18081 18082; do
    for _ in $(seq 1 900); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
        kill -0 "$runner" 2>/dev/null || { cat "$log"; echo "the system exited" >&2; exit 1; }
        sleep 1
    done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; exit 1; }
done

anonymous=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:18080/api/v1/projects \
    -H 'content-type: application/json' -d '{"name":"Smoke test"}')
[ "$anonymous" = 401 ] || { echo "a command without a token got $anonymous, not 401" >&2; exit 1; }

login=$(curl -fsS -X POST http://127.0.0.1:18080/api/v1/auth/login -H 'content-type: application/json' \
    -d '{"email":"admin@chronicle.test","password":"chronicle-dev-admin"}')
access=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$login")
bearer="authorization: Bearer $access"

created=$(curl -fsS -X POST http://127.0.0.1:18080/api/v1/projects -H "$bearer" \
    -H 'content-type: application/json' -H 'idempotency-key: smoke-1' \
    -d '{"name":"Smoke test","description":"created by scripts/smoke.sh"}')
echo "created: $created"
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["consistency_token"])' <<<"$created")

read=$(curl -fsS "http://127.0.0.1:18081/api/v1/projects/$id" -H "$bearer" \
    -H "x-consistency-token: $token")
echo "read:    $read"
python3 - "$read" <<'PY'
import json, sys
project = json.loads(sys.argv[1])
assert project["name"] == "Smoke test", project
assert project["version"] == 1, project
PY

replay=$(curl -fsS -D - -o /dev/null -X POST http://127.0.0.1:18080/api/v1/projects -H "$bearer" \
    -H 'content-type: application/json' -H 'idempotency-key: smoke-1' \
    -d '{"name":"Smoke test","description":"created by scripts/smoke.sh"}')
grep -qi '^idempotent-replayed: true' <<<"$replay" || { echo "no replay: $replay" >&2; exit 1; }

# A real Prometheus (Debian's package, installed when missing) scrapes the running system with
# the alerting rules: every target up, every rule healthy.
command -v prometheus >/dev/null || apt-get install -y -qq prometheus >/dev/null
scripts/prometheus-smoke.sh http://127.0.0.1:18080 http://127.0.0.1:18081 http://127.0.0.1:18082

kill -TERM "$runner"
wait "$runner" && echo "smoke test passed: 401 without a token, sign-in, command -> consistent read, replay, Prometheus targets up and rules healthy, graceful shutdown"
trap - EXIT
