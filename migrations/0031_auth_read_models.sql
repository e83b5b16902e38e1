-- The accounts' read models (ACCOUNTS.md, "Endpoints"), filled by the projector from the
-- `Account` and `Session` streams like every other read model: what `GET /auth/me`,
-- `GET /auth/sessions` and `GET /admin/accounts` serve. No secret is in them; the secrets stay
-- in the tables of 0021, which only the command side reads.

-- One row per account. `roles` is the roles an access token would carry now: `user` once the
-- address is verified, plus those an admin granted.
CREATE TABLE auth_accounts (
    account_id               uuid PRIMARY KEY,
    email                    text NOT NULL,
    roles                    text[] NOT NULL DEFAULT '{}',
    disabled                 boolean NOT NULL DEFAULT false,
    verified                 boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    version                  bigint NOT NULL,
    -- Filled by the TOTP projection's events (the next issue); defaults until then.
    totp_enabled             boolean NOT NULL DEFAULT false,
    recovery_codes_remaining integer NOT NULL DEFAULT 0
);
-- The admin list's default order, and its address filter.
CREATE INDEX auth_accounts_created_idx ON auth_accounts (created_at DESC, account_id DESC);
CREATE INDEX auth_accounts_email_idx ON auth_accounts (lower(email));

-- One row per session (a login and its refresh family). Live sessions are those not revoked
-- and not past `expires_at`.
CREATE TABLE auth_sessions (
    id                uuid PRIMARY KEY,
    account_id        uuid NOT NULL,
    created_at        timestamptz NOT NULL,
    last_used_at      timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    ip                text,
    user_agent        text,
    method            text NOT NULL,
    amr               text[] NOT NULL,
    -- The refresh family: the current generation, and when a spent token came back.
    generation        bigint NOT NULL DEFAULT 1,
    reuse_detected_at timestamptz,
    revoked_at        timestamptz,
    revoke_reason     text,
    version           bigint NOT NULL
);
-- The caller's live sessions, newest first.
CREATE INDEX auth_sessions_live_idx ON auth_sessions (account_id, created_at DESC, id DESC)
    WHERE revoked_at IS NULL;
