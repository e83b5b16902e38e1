-- A stored answer names the stream revision its request appended last, instead of carrying
-- its consistency token: the events and the completed claim are then written by one
-- statement, before their log position exists, and a replay reads the token back from the
-- event by primary key (docs/decisions/0003).
ALTER TABLE idempotency_keys
    ADD COLUMN stream_type    text,
    ADD COLUMN stream_id      text,
    ADD COLUMN stream_version bigint;
