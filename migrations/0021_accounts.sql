-- Accounts' secrets and working state, kept beside the log because none of it may enter it
-- (ACCOUNTS.md): every statement on these tables lives in event-store/src/{accounts,sessions,
-- rate_limits,mail_outbox}.rs, and rows that follow from events are written in the same
-- transaction as those events (docs/decisions/0009-transactional-side-rows.md).

-- What a login needs to know, per account: the address, the Argon2id PHC string and whether
-- the account may log in. The Account stream is the record of how it came to be.
CREATE TABLE auth_credentials (
    account_id    uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    verified      boolean NOT NULL DEFAULT false,
    disabled      boolean NOT NULL DEFAULT false,
    -- Granted roles besides `user`, which every verified account has.
    roles         text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_credentials_email_key UNIQUE (email)
);

-- Mailed single-use tokens, stored only as SHA-256.
CREATE TABLE auth_mail_tokens (
    token_hash bytea PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('verify_email', 'password_reset')),
    account_id uuid NOT NULL REFERENCES auth_credentials (account_id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX auth_mail_tokens_account_idx ON auth_mail_tokens (account_id, kind);

-- Refresh tokens, stored only as SHA-256: one row per generation of a session (a rotation
-- family). Spent rows stay until the session's end so a replay is recognised as reuse; a
-- revoked session has no rows left.
CREATE TABLE auth_refresh_tokens (
    token_hash         bytea PRIMARY KEY,
    session_id         uuid NOT NULL,
    account_id         uuid NOT NULL,
    generation         bigint NOT NULL,
    issued_at          timestamptz NOT NULL DEFAULT now(),
    spent_at           timestamptz,
    expires_at         timestamptz NOT NULL,
    session_expires_at timestamptz NOT NULL,
    -- The login behind the session: the access tokens' `auth_time` and `amr`.
    authenticated_at   timestamptz NOT NULL,
    amr                text[] NOT NULL,
    CONSTRAINT auth_refresh_tokens_generation_key UNIQUE (session_id, generation)
);
CREATE INDEX auth_refresh_tokens_account_idx ON auth_refresh_tokens (account_id)
    WHERE spent_at IS NULL;

-- Registrations, resends and forgots waiting for the background worker, which does what the
-- address calls for; the answer was sent before anyone looked the address up.
CREATE TABLE auth_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('register', 'resend', 'forgot')),
    email         text NOT NULL,
    password_hash text,
    metadata      jsonb NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT now()
);

-- Fixed-window rate-limit counters: one upsert per hit, shared by every replica.
CREATE TABLE auth_rate_limits (
    limit_name   text NOT NULL,
    subject      text NOT NULL,
    window_start timestamptz NOT NULL,
    -- The address the subject counts, so a password reset can clear its counters.
    email        text,
    hits         integer NOT NULL,
    PRIMARY KEY (limit_name, subject, window_start)
);
CREATE INDEX auth_rate_limits_email_idx ON auth_rate_limits (email) WHERE email IS NOT NULL;
CREATE INDEX auth_rate_limits_window_idx ON auth_rate_limits (window_start);

-- Mail waiting to be published to RabbitMQ; written with the events that cause it, deleted
-- once the broker confirmed it.
CREATE TABLE auth_mail_outbox (
    message_id uuid PRIMARY KEY,
    template   text NOT NULL,
    recipient  text NOT NULL,
    account_id uuid,
    token      text,
    link       text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_mail_outbox_created_idx ON auth_mail_outbox (created_at);
