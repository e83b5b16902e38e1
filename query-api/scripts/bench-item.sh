#!/bin/sh
# Item-read benchmark: query-api (release) against a bare axum handler with the same SELECT.
# Needs: cargo build --release -p query-api --bin query-api --example bare_item; wrk; psql.
# Uses DATABASE_URL chronicle_query (created and migrated by query-api) and ports 58081-58082.
set -e
cd /work/wt/query
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/chronicle_query
export RUST_LOG=warn
QUERY_API_ADDR=127.0.0.1:58081 target/release/query-api > /tmp/qbench-api.log 2>&1 &
API=$!
sleep 3
BARE_ADDR=127.0.0.1:58082 target/release/examples/bare_item > /tmp/qbench-bare.log 2>&1 &
BARE=$!
sleep 2
ID=$(psql -qAt -h 127.0.0.1 -U postgres -d chronicle_query -c "DELETE FROM projects; INSERT INTO projects (id, name, description, owner_id, archived, created_at, updated_at, version) VALUES (gen_random_uuid(), 'Apollo', 'to the moon', NULL, false, now(), now(), 1) RETURNING id")
psql -qAt -h 127.0.0.1 -U postgres -d chronicle_query -c "INSERT INTO projection_checkpoints (name, tx_id, position, events_applied, updated_at) VALUES ('projects', 1, 1, 1, now()) ON CONFLICT (name) DO NOTHING"
echo "id $ID"
run() { echo "== $1"; shift; curl -s -o /dev/null -w "status %{http_code}\n" "$@"; }
run check-bare http://127.0.0.1:58082/projects/$ID
run check-200 http://127.0.0.1:58081/api/v1/projects/$ID
run check-304 -H 'If-None-Match: "1"' http://127.0.0.1:58081/api/v1/projects/$ID
for round in 1 2 3; do
echo "### round $round"
echo "--- bare axum, same SELECT"; wrk -t2 -c32 -d10s http://127.0.0.1:58082/projects/$ID | grep -E "Requests/sec|Latency|Non-2xx"
echo "--- query-api GET item 200"; wrk -t2 -c32 -d10s http://127.0.0.1:58081/api/v1/projects/$ID | grep -E "Requests/sec|Latency|Non-2xx"
echo "--- query-api GET item 304 from the table (no announcement: the path before item 7)"; wrk -t2 -c32 -d10s -H 'If-None-Match: "1"' http://127.0.0.1:58081/api/v1/projects/$ID | grep -E "Requests/sec|Latency|Non-2xx"
PAYLOAD="{\"p\":\"projects\",\"c\":{\"tx_id\":$round,\"position\":$round},\"g\":0,\"v\":[[\"$ID\",1]],\"k\":true}"
psql -qAt -h 127.0.0.1 -U postgres -d chronicle_query -c "SELECT pg_notify('chronicle_checkpoints', '$PAYLOAD')" >/dev/null
sleep 1
echo "--- query-api GET item 304 from the announced versions (item 7)"; wrk -t2 -c32 -d10s -H 'If-None-Match: "1"' http://127.0.0.1:58081/api/v1/projects/$ID | grep -E "Requests/sec|Latency|Non-2xx"
curl -s http://127.0.0.1:58081/metrics | grep query_item_revalidations_total || true
# forget the map again for the next round (a bare wake-up clears the projection's entries)
psql -qAt -h 127.0.0.1 -U postgres -d chronicle_query -c "SELECT pg_notify('chronicle_checkpoints', 'projects')" >/dev/null
sleep 1
done
kill $API $BARE
