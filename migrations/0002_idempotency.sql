-- Idempotency records, scoped by principal and key (docs/decisions/0003).
-- A row with a NULL status is a claim of a request still running; the append transaction
-- completes it with the answer, so an answer is stored exactly when the events are.
CREATE TABLE idempotency_keys
(
    principal       text        NOT NULL,
    key             text        NOT NULL,
    fingerprint     bytea       NOT NULL,
    owner           uuid,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    status          smallint,
    response_body   jsonb,
    location        text,
    etag            text,
    completed_at    timestamptz,
    PRIMARY KEY (principal, key)
);

CREATE INDEX idempotency_keys_completed_at_idx ON idempotency_keys (completed_at);
