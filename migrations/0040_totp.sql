-- TOTP and recovery codes beside the log (ACCOUNTS.md, "TOTP and recovery codes"): every
-- statement on these tables lives in event-store/src/mfa.rs, and rows that follow from events
-- are written in the transaction of those events (docs/decisions/0009, 0012).

-- One row per account that ever set TOTP up. Secrets are sealed with AES-256-GCM under a key
-- derived from AUTH_SECRET_KEY (nonce ‖ ciphertext ‖ tag, the account id as associated data).
CREATE TABLE auth_totp (
    account_id         uuid PRIMARY KEY REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    -- The secret in force; NULL while TOTP is off.
    secret             bytea,
    -- A secret set up but not yet confirmed by a code, and when it stops being confirmable.
    pending_secret     bytea,
    pending_expires_at timestamptz,
    -- The last step (Unix seconds / 30) a code was accepted for: a code is accepted only for a
    -- later step, so each works once and an older one never after a newer one. Kept when TOTP
    -- is switched off so it never goes back.
    last_step          bigint,
    enabled_at         timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Recovery codes, each its own Argon2id PHC string; a spent code's row is deleted.
CREATE TABLE auth_recovery_codes (
    account_id uuid NOT NULL REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    position   smallint NOT NULL,
    code_hash  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, position)
);

-- Half-finished logins: the right password was given and a second factor is due. Stored only
-- as SHA-256; dead after expires_at or max failures.
CREATE TABLE auth_mfa_tokens (
    token_hash bytea PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    failures   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_mfa_tokens_account_idx ON auth_mfa_tokens (account_id);
