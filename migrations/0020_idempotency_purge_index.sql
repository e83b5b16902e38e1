-- The purge deletes records completed before the cutoff, and claims never completed that were
-- made before it. `coalesce(completed_at, claimed_at) < cutoff` could use no index; written as
-- `completed_at < cutoff OR (completed_at IS NULL AND claimed_at < cutoff)` each arm has one:
-- idempotency_keys_completed_at_idx (0002) and this partial index over open claims only, which
-- stays as small as the number of requests in flight (docs/decisions/0003).
CREATE INDEX idempotency_keys_open_claims_idx ON idempotency_keys (claimed_at)
    WHERE completed_at IS NULL;
