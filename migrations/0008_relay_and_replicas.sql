-- Poison events parked instead of stopping their projection (PROJECTOR_DEAD_LETTER=true, or per
-- projection). A parked event is never skipped silently: it has a row here, an error log line
-- and a metric, and the projection's checkpoint moves past it in the same transaction as this
-- row. Replaying one is an operator's decision (fix the code, rebuild the projection).
CREATE TABLE projection_dead_letters
(
    projection text        NOT NULL,
    event_id   uuid        NOT NULL,
    position   bigint      NOT NULL,
    tx_id      bigint      NOT NULL,
    error      text        NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);

CREATE INDEX projection_dead_letters_parked_at_idx ON projection_dead_letters (parked_at);
