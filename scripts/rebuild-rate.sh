#!/usr/bin/env bash
# Measures `projector rebuild projects` on a large log: seeds EVENTS project events (half
# creates, half renames) with SQL into a scratch database, catches the live model up with a
# first rebuild, then times a second rebuild (shadow build + swap) and prints its rate.
#
#   scripts/rebuild-rate.sh [EVENTS]      (default 200000; PROJECTOR=path/to/binary to skip
#                                          the release build)
set -euo pipefail
EVENTS=${1:-200000}
DB=chronicle_rebuild_rate
SERVER=${SERVER:-postgres://postgres@127.0.0.1:5432}
cd "$(dirname "$0")/.."
if [[ -z "${PROJECTOR:-}" ]]; then
    cargo build --release -p projector
    PROJECTOR=target/release/projector
fi
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export DATABASE_URL="$SERVER/$DB" RUST_LOG=warn RELAY_ENABLED=false
# Applies the migrations (verify on an empty log is a no-op).
"$PROJECTOR" verify projects >/dev/null
HALF=$((EVENTS / 2))
psql "$DATABASE_URL" -q <<SQL
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Project', id::text, 1, 'ProjectCreated', '1',
       json_build_object('ProjectCreated', json_build_object('name', 'project ' || n, 'description', '', 'owner_id', NULL)),
       '{"actor":"seed"}'::json
  FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, $HALF) AS n) AS seeds;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Project', aggregate_id, 2, 'ProjectUpdated', '1',
       json_build_object('ProjectUpdated', json_build_object('name', 'renamed ' || global_position, 'description', NULL)),
       '{"actor":"seed"}'::json
  FROM events WHERE sequence = 1;
SQL
"$PROJECTOR" rebuild projects >/dev/null
echo "log: $(psql "$DATABASE_URL" -Atc 'SELECT count(*) FROM events') events"
"$PROJECTOR" rebuild projects
"$PROJECTOR" verify projects
psql "$SERVER/postgres" -qc "DROP DATABASE $DB"
