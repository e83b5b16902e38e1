-- Read model: daily analytics summary (count and distinct sessions per event name per UTC day
-- of occurred_at), written by the projector's `analytics_daily` projection, one batch event at
-- a time, in the same transaction as its checkpoint.
CREATE TABLE analytics_daily
(
    day             date        NOT NULL,
    name            text        NOT NULL,
    count           bigint      NOT NULL,
    unique_sessions bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, name)
);

-- The set behind `unique_sessions`: a session counts once per (day, name); inserting with
-- ON CONFLICT DO NOTHING ... RETURNING tells which sessions are new.
CREATE TABLE analytics_daily_sessions
(
    day        date NOT NULL,
    name       text NOT NULL,
    session_id text NOT NULL,
    PRIMARY KEY (day, name, session_id)
);
