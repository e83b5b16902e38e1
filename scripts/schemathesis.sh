#!/usr/bin/env bash
# Property-based conformance run of both APIs against their own OpenAPI documents
# (docs/RELIABILITY.md, scenario 6): starts the `chronicle` runner on free loopback ports with a
# database of its own, seeds real ids (a project, a ticket, a post, a status report), runs
# `schemathesis run --checks all` against the command API and the query API with a bounded time
# budget, stops the system and exits non-zero when either run found failures.
#
# Opaque values the server issues (ids, the consistency token, the audit cursor) are pinned to
# seeded ones, as no schema can say which strings a server issued. Every other value is
# generated, and every check runs; the one replaced is `positive_data_acceptance`, by
# `positive_data_acceptance_beyond_state` (chronicle_hooks.py, written below): the same check,
# except that it accepts the refusals of schema-valid data that depend on state no schema can
# state (each listed there, with its reason, and in docs/RELIABILITY.md, scenario 6).
#
# The venv lives in .venv-schemathesis (made, and git-ignored from inside, only when missing).
# SCHEMATHESIS_MAX_TIME (seconds per API, default 75) and SCHEMATHESIS_MAX_EXAMPLES (per
# operation, default 25) bound the run, SCHEMATHESIS_SEED (default 1) seeds it; reports go to
# target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MAX_TIME=${SCHEMATHESIS_MAX_TIME:-75}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
SEED=${SCHEMATHESIS_SEED:-1}
PG_SERVER=${SCHEMATHESIS_PG_SERVER:-postgres://postgres@127.0.0.1:5432}
VENV=$ROOT/.venv-schemathesis
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/schemathesis

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
    "$TARGET/debug/chronicle" >"$OUT/chronicle.log" 2>&1 &
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

echo "== signing in as the dev runner's bootstrap admin, and seeding"
json_field() { "$VENV/bin/python" -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
# One session per API run, both opened now: the command API's run may log its own out (it
# exercises POST /auth/logout with the token it is given), and its many anonymous auth requests
# may meet the per-IP limit before the query API's run would sign in.
sign_in() {
    curl -sf -X POST "$COMMAND/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"email":"admin@chronicle.test","password":"chronicle-dev-admin"}' | json_field access_token
}
COMMAND_ACCESS=$(sign_in)
# The query API's audit routes need `auditor`. No admin endpoint grants roles yet (issue 11
# leaves PUT /admin/accounts/{id}/roles to come), so this scratch database grants it directly;
# login reads roles from here.
psql "$PG_SERVER/$DATABASE" -qc \
    "UPDATE auth_credentials SET roles = '{admin,auditor}' WHERE email = 'admin@chronicle.test'" >/dev/null
QUERY_ACCESS=$(sign_in)
post() {
    curl -sf -X POST "$COMMAND$1" -H "authorization: Bearer $QUERY_ACCESS" \
        -H 'content-type: application/json' -d "$2"
}
PROJECT_ID=$(post /api/v1/projects '{"name":"Schemathesis seed","description":"a real project"}' | json_field id)
TICKET_ID=$(post /api/v1/support/tickets '{"email":"seed@example.com","subject":"Seed","message":"a real ticket"}' | json_field id)
POST_ID=$(post /api/v1/community/posts '{"title":"Seed","content":"a real post","author":"seed"}' | json_field id)
# A post of its own for the query API: the command API's run may delete the first one.
QUERY_POST_ID=$(post /api/v1/community/posts '{"title":"Read","content":"a post to read","author":"seed"}' | json_field id)
SERVICE_ID=schemathesis-seed
TOKEN=$(post "/api/v1/status/services/$SERVICE_ID/reports" '{"status":"operational","description":"seeded"}' | json_field consistency_token)
post /api/v1/analytics/events '{"events":[{"name":"seed.event","session_id":"s1"}]}' >/dev/null
# Wait until the read side has everything seeded (the last command's token covers the others).
curl -sf --max-time 10 "$QUERY/api/v1/status/services/$SERVICE_ID/history" -H "x-consistency-token: $TOKEN" >/dev/null
CURSOR=$(curl -sf "$QUERY/api/v1/audit/events?limit=1" -H "authorization: Bearer $QUERY_ACCESS" | json_field next)
echo "project $PROJECT_ID, ticket $TICKET_ID, posts $POST_ID $QUERY_POST_ID, service $SERVICE_ID, cursor $CURSOR"

# Path parameters of each operation pinned to the seeded ids, and the opaque token and cursor
# to seeded ones; everything else is generated. $1: the post id to pin.
config() {
    cat <<TOML
request-timeout = 10.0

[parameters]
"header.X-Consistency-Token" = "$TOKEN"
"query.after" = "$CURSOR"

[[operations]]
include-path-regex = '^/api/v1/projects/\{id\}'
parameters = { "path.id" = "$PROJECT_ID" }

[[operations]]
include-path-regex = '^/api/v1/support/tickets/\{id\}'
parameters = { "path.id" = "$TICKET_ID" }

[[operations]]
include-path-regex = '^/api/v1/community/posts/\{id\}'
parameters = { "path.id" = "$1" }

[[operations]]
include-path-regex = "^/api/v1/status/services/"
parameters = { "path.service_id" = "$SERVICE_ID" }
TOML
}
config "$POST_ID" >"$OUT/command.toml"
config "$QUERY_POST_ID" >"$OUT/query.toml"
cat >>"$OUT/query.toml" <<TOML

[[operations]]
include-path-regex = "^/api/v1/audit/streams/"
parameters = { "path.aggregate_type" = "Project", "path.aggregate_id" = "$PROJECT_ID" }
TOML

# Refusals of schema-valid requests that depend on state the document cannot state: the
# built-in positive_data_acceptance, less exactly these (each a documented answer).
cat >"$OUT/chronicle_hooks.py" <<'PY'
"""positive_data_acceptance, less the refusals that depend on state no schema can state."""

import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import positive_data_acceptance

# Field errors that depend on the server's clock: an analytics event's `occurred_at` may be at
# most 5 minutes ahead of it (docs/api.md); a schema cannot say "not in the future".
CLOCK_ERRORS = {"must not be more than 5 minutes in the future"}
# A Reporting API batch must hold at least one `csp-violation` report among reports of any
# type (ACCOUNTS.md, "CSP reports"); OpenAPI 3.1's `contains` would say so, but utoipa cannot
# emit it, and `prefixItems` would wrongly require it first. The document states it in prose.
# login/mfa and the factor routes take a code or a recovery code, never both or neither; the
# schema marks both optional (a `oneOf` of two bodies would state it; not written yet).
CONTENT_ERRORS = {
    "holds no report of type csp-violation",
    "give exactly one of code and recovery_code",
}
# 400 details of rules between two parameters (a range's ends), which OpenAPI cannot state:
# each parameter is described alone.
CROSS_PARAMETER_DETAILS = (
    "must not be after `to`",
    "days from `from` (both included)",
)


def _sent(case, name):
    return any(key.lower() == name.lower() for key in (case.headers or {}))


def _depends_on_state(case, response):
    try:
        problem = response.json()
    except Exception:
        return False
    if not isinstance(problem, dict):
        return False
    kind, status = problem.get("type"), response.status_code
    # 412: `If-Match` named a version the aggregate is not at (it moves with every change).
    if status == 412 and kind == "/problems/precondition-failed":
        return _sent(case, "If-Match")
    # 422: this `Idempotency-Key` was used before for another request (keys outlive requests).
    if status == 422 and kind == "/problems/idempotency-key-reused":
        return _sent(case, "Idempotency-Key")
    # 400: a mail token works only when the server issued it, unused and unexpired (ACCOUNTS.md);
    # a schema can state its shape, not that it was issued.
    if status == 400 and kind == "/problems/invalid-token":
        return True
    if status == 422 and kind == "/problems/validation":
        errors = problem.get("errors") or []
        return bool(errors) and all(
            error.get("message") in CLOCK_ERRORS | CONTENT_ERRORS for error in errors
        )
    if status == 400 and kind == "/problems/bad-request":
        detail = problem.get("detail") or ""
        return any(detail.endswith(rule) for rule in CROSS_PARAMETER_DETAILS)
    return False


@schemathesis.check
def positive_data_acceptance_beyond_state(ctx, response, case):
    """Schema-valid data is accepted, unless refused for the state it met (see above)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except Failure:
        if _depends_on_state(case, response):
            return None
        raise
PY

status=0
for api in command query; do
    # Both APIs serve the one document of both (FRONTEND.md); each is run on its own methods,
    # as the gateway routes them: GET to the query API, everything else to the command API. For
    # the same reason `allow_header_conformance` is off: each API's `Allow` names its own methods of a
    # path, never the other API's, which the one document lists beside them.
    if [ "$api" = command ]; then
        base=$COMMAND access=$COMMAND_ACCESS methods=(--exclude-method GET)
    else
        base=$QUERY access=$QUERY_ACCESS methods=(--include-method GET)
    fi
    echo "== schemathesis: the $api API ($base/api/v1/openapi.json), at most ${MAX_TIME}s"
    # From $OUT, so that schemathesis' own .schemathesis/ cache stays out of the work tree. One
    # worker: with two, CPython 3.11's ast module (which hypothesis uses to describe its
    # strategies) races between the threads and the run ends in "AST constructor recursion
    # depth mismatch" errors (python/cpython#106905). The cassette ($api.vcr.yaml) holds every
    # request and answer, with the generation mode and phase of each.
    if (cd "$OUT" && SCHEMATHESIS_HOOKS=chronicle_hooks "$VENV/bin/schemathesis" \
        --config-file "$OUT/$api.toml" run "$base/api/v1/openapi.json" --url "$base" \
        --header "Authorization: Bearer $access" "${methods[@]}" \
        --checks all --exclude-checks positive_data_acceptance,allow_header_conformance \
        --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --workers 1 --seed "$SEED" --no-color \
        --output-sanitize false --report junit,vcr --report-junit-path "$OUT/$api.junit.xml" \
        --report-vcr-path "$OUT/$api.vcr.yaml") 2>&1 | tee "$OUT/$api.txt"; then
        echo "== the $api API: no failures"
    else
        echo "== the $api API: failures (see $OUT/$api.txt)"
        status=1
    fi
done
exit $status
