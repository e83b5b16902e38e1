-- The passkeys `GET /auth/me` and `GET /auth/webauthn/credentials` list: part of the
-- auth_accounts read model (the projector writes it from PasskeyRegistered / PasskeyRemoved in
-- the transaction of the account row and its checkpoint). No key material: that stays in
-- auth_passkeys (0060), which only the command side reads.
CREATE TABLE auth_account_passkeys (
    credential_id text PRIMARY KEY,
    account_id    uuid NOT NULL,
    label         text NOT NULL,
    created_at    timestamptz NOT NULL,
    -- No event says when a passkey last signed in yet: NULL until one does.
    last_used_at  timestamptz
);
CREATE INDEX auth_account_passkeys_account_idx ON auth_account_passkeys (account_id, created_at);
