-- The event store: postgres-es's `events` table as it is, plus defaulted columns that give
-- every event a global position, an id, a record time and the transaction that wrote it.
-- postgres-es inserts only its seven columns, so the extra columns never need its help.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction's id: readers of the global log only read below the oldest
    -- transaction still running, so a slow commit can never be skipped (docs/decisions/0001).
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position_key ON events (global_position);
CREATE UNIQUE INDEX events_event_id_key ON events (event_id);
-- The commit-safe reading order of `$all`.
CREATE INDEX events_commit_order_idx ON events (tx_id, global_position);
CREATE INDEX events_event_type_idx ON events (event_type, tx_id, global_position);
CREATE INDEX events_recorded_at_idx ON events (recorded_at);

-- postgres-es's snapshot table, for aggregates that opt into snapshots.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The event store is append-only: nothing updates or deletes an event.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
