-- A rebuild can change a read model's rows without moving its checkpoint (the shadow lands on
-- the same position), so a tag derived from the checkpoint alone would vouch for the old rows.
-- The swap bumps `generation`; every checkpoint-derived ETag includes it.
ALTER TABLE projection_checkpoints
    ADD COLUMN generation bigint NOT NULL DEFAULT 0;
