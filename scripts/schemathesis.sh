#!/usr/bin/env bash
# Property-based conformance run of both APIs against their own OpenAPI documents
# (docs/RELIABILITY.md, scenario 6): starts the `chronicle` runner on free loopback ports with a
# database of its own, seeds real ids (a project, a ticket, a post, a status report), runs
# `schemathesis run --checks all` against the command API and the query API with a bounded time
# budget, stops the system and exits non-zero when either run found failures.
#
# The venv lives in .venv-schemathesis (made, and git-ignored from inside, only when missing).
# SCHEMATHESIS_MAX_TIME (seconds per API, default 75) and SCHEMATHESIS_MAX_EXAMPLES (per
# operation, default 25) bound the run; reports go to target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MAX_TIME=${SCHEMATHESIS_MAX_TIME:-75}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
PG_SERVER=${SCHEMATHESIS_PG_SERVER:-postgres://postgres@127.0.0.1:5432}
VENV=$ROOT/.venv-schemathesis
OUT=$ROOT/target/schemathesis

if [ ! -x "$VENV/bin/schemathesis" ]; then
    echo "== creating $VENV with schemathesis 4.x"
    python3 -m venv "$VENV"
    echo '*' >"$VENV/.gitignore"
    "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
fi
"$VENV/bin/schemathesis" --version

echo "== building the runner"
cargo build --bin chronicle

# A free loopback port in 60000-64999.
free_port() {
    "$VENV/bin/python" - <<'PY'
import random, socket
for _ in range(1000):
    port = random.randint(60000, 64999)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
PY
}
COMMAND_PORT=$(free_port)
QUERY_PORT=$(free_port)
PROJECTOR_PORT=$(free_port)
DATABASE=chronicle_schemathesis_$(date +%s)_$$
COMMAND=http://127.0.0.1:$COMMAND_PORT
QUERY=http://127.0.0.1:$QUERY_PORT
mkdir -p "$OUT"
RUNNER_PID=
cleanup() {
    if [ -n "$RUNNER_PID" ]; then
        kill "$RUNNER_PID" 2>/dev/null || true
        wait "$RUNNER_PID" 2>/dev/null || true
    fi
    psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== starting chronicle: commands $COMMAND, queries $QUERY, database $DATABASE"
DATABASE_URL=$PG_SERVER/$DATABASE COMMAND_API_ADDR=127.0.0.1:$COMMAND_PORT \
    QUERY_API_ADDR=127.0.0.1:$QUERY_PORT PROJECTOR_ADDR=127.0.0.1:$PROJECTOR_PORT \
    RELAY_ENABLED=false RUST_LOG=${RUST_LOG:-warn} \
    "$ROOT/target/debug/chronicle" >"$OUT/chronicle.log" 2>&1 &
RUNNER_PID=$!
for service in "$COMMAND" "$QUERY"; do
    ready=
    for _ in $(seq 1 300); do
        if curl -sf "$service/readyz" >/dev/null; then ready=1; break; fi
        kill -0 "$RUNNER_PID" 2>/dev/null || { echo "chronicle exited; log:" >&2; cat "$OUT/chronicle.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "$service/readyz did not answer 200 within 30 s" >&2; exit 1; }
done

echo "== seeding"
json_field() { "$VENV/bin/python" -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
post() { curl -sf -X POST "$COMMAND$1" -H 'content-type: application/json' -d "$2"; }
PROJECT_ID=$(post /api/v1/projects '{"name":"Schemathesis seed","description":"a real project"}' | json_field id)
TICKET_ID=$(post /api/v1/support/tickets '{"email":"seed@example.com","subject":"Seed","message":"a real ticket"}' | json_field id)
POST_ID=$(post /api/v1/community/posts '{"title":"Seed","content":"a real post","author":"seed"}' | json_field id)
SERVICE_ID=schemathesis-seed
TOKEN=$(post "/api/v1/status/services/$SERVICE_ID/reports" '{"status":"operational","description":"seeded"}' | json_field consistency_token)
post /api/v1/analytics/events '{"events":[{"name":"seed.event","session_id":"s1"}]}' >/dev/null
# Wait until the read side has everything seeded (the last command's token covers the others).
curl -sf --max-time 10 "$QUERY/api/v1/status/services/$SERVICE_ID/history" -H "x-consistency-token: $TOKEN" >/dev/null
echo "project $PROJECT_ID, ticket $TICKET_ID, post $POST_ID, service $SERVICE_ID"

# Path parameters of each operation pinned to the seeded ids; everything else is generated.
cat >"$OUT/command.toml" <<TOML
request-timeout = 10.0

[[operations]]
include-path-regex = '^/api/v1/projects/\{id\}'
parameters = { "path.id" = "$PROJECT_ID" }

[[operations]]
include-path-regex = '^/api/v1/support/tickets/\{id\}'
parameters = { "path.id" = "$TICKET_ID" }

[[operations]]
include-path-regex = '^/api/v1/community/posts/\{id\}'
parameters = { "path.id" = "$POST_ID" }

[[operations]]
include-path-regex = "^/api/v1/status/services/"
parameters = { "path.service_id" = "$SERVICE_ID" }
TOML
cp "$OUT/command.toml" "$OUT/query.toml"
cat >>"$OUT/query.toml" <<TOML

[[operations]]
include-path-regex = "^/api/v1/audit/streams/"
parameters = { "path.aggregate_type" = "Project", "path.aggregate_id" = "$PROJECT_ID" }
TOML

status=0
for api in command query; do
    if [ "$api" = command ]; then base=$COMMAND; else base=$QUERY; fi
    echo "== schemathesis: the $api API ($base/api/v1/openapi.json), at most ${MAX_TIME}s"
    # From $OUT, so that schemathesis' own .schemathesis/ cache stays out of the work tree.
    if (cd "$OUT" && "$VENV/bin/schemathesis" --config-file "$OUT/$api.toml" run \
        "$base/api/v1/openapi.json" --url "$base" --checks all \
        --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --workers 2 --seed 1 --no-color \
        --output-sanitize false \
        --report junit --report-junit-path "$OUT/$api.junit.xml") 2>&1 | tee "$OUT/$api.txt"; then
        echo "== the $api API: no failures"
    else
        echo "== the $api API: failures (see $OUT/$api.txt)"
        status=1
    fi
done
exit $status
