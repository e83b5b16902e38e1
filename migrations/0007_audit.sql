-- Indexes for the auditors' reads of the log (GET /audit/events, `chronicle export`), which
-- filter the commit-safe order by actor, aggregate type or aggregate id. Each index ends in the
-- reading order (tx_id, global_position) so a filtered page is an index range scan.
-- Not CONCURRENTLY: sqlx runs a migration in one transaction. On a large live log, create
-- these by hand with CREATE INDEX CONCURRENTLY first; IF NOT EXISTS then makes this a no-op.
CREATE INDEX IF NOT EXISTS events_actor_idx
    ON events ((metadata ->> 'actor'), tx_id, global_position);
CREATE INDEX IF NOT EXISTS events_aggregate_type_idx
    ON events (aggregate_type, tx_id, global_position);
CREATE INDEX IF NOT EXISTS events_aggregate_id_idx
    ON events (aggregate_id, tx_id, global_position);
