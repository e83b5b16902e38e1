-- Passkeys (WebAuthn) beside the log (ACCOUNTS.md, "WebAuthn (passkeys, first wave)"): every
-- statement on these tables lives in event-store/src/passkeys.rs, and rows that follow from
-- events are written in the transaction of those events (docs/decisions/0009, 0016).

-- Ceremonies begun and not yet finished. Kept in PostgreSQL, not in a replica's memory, so any
-- replica finishes what another started; a row is taken (deleted) by the finish that uses it,
-- so each works once, and is dead after expires_at.
CREATE TABLE auth_webauthn_ceremonies (
    challenge_id uuid PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('register', 'login')),
    -- NULL for the fake login ceremony of an unknown address (nothing can finish it).
    account_id   uuid REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    -- webauthn-rs's serialised state (challenge, allowed credentials, policy); NULL when fake.
    state        jsonb,
    -- The label asked for at register/options.
    label        text,
    -- The address a login ceremony was asked for: its failed finish counts against it.
    email        text,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_webauthn_ceremonies_expires_idx ON auth_webauthn_ceremonies (expires_at);

-- Registered passkeys: webauthn-rs's `Passkey` (public key, algorithm, signature counter) as
-- JSON. Credential ids (base64url) are unique across all accounts.
CREATE TABLE auth_passkeys (
    credential_id text PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    label         text NOT NULL,
    passkey       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX auth_passkeys_account_idx ON auth_passkeys (account_id, created_at);
