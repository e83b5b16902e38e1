-- Read models of the status page. Written only by the projector, in the same transaction as
-- the `service_status` checkpoint.

-- The latest report per service: the row reflects the newest event of the service's stream
-- (`version` is that event's stream revision).
CREATE TABLE service_status_latest
(
    service_id  text PRIMARY KEY,
    status      text        NOT NULL,
    description text,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL
);

-- Every report, one row per event of a service's stream.
CREATE TABLE service_status_history
(
    service_id  text        NOT NULL,
    version     bigint      NOT NULL,
    status      text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (service_id, version)
);

CREATE INDEX service_status_history_service_created_idx
    ON service_status_history (service_id, created_at);
