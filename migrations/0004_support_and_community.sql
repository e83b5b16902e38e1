-- Read models: support tickets and community posts. Written only by the projector, in the
-- same transaction as the projection's checkpoint; `version` is the stream revision a row
-- reflects (the item ETag).
CREATE TABLE support_tickets
(
    id         uuid PRIMARY KEY,
    email      text        NOT NULL,
    subject    text        NOT NULL,
    message    text        NOT NULL,
    status     text        NOT NULL
        CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version    bigint      NOT NULL
);

CREATE INDEX support_tickets_created_at_idx ON support_tickets (created_at, id);
CREATE INDEX support_tickets_updated_at_idx ON support_tickets (updated_at, id);
CREATE INDEX support_tickets_status_idx ON support_tickets (status, created_at);
-- The `email` filter matches case-insensitively.
CREATE INDEX support_tickets_email_idx ON support_tickets (lower(email), created_at);

-- A deleted post keeps its row (so a replayed or out-of-place event is recognised rather than
-- re-creating it) but is never served: reads filter on `deleted_at IS NULL`.
CREATE TABLE community_posts
(
    id         uuid PRIMARY KEY,
    title      text        NOT NULL,
    content    text        NOT NULL,
    author     text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz,
    version    bigint      NOT NULL
);

CREATE INDEX community_posts_created_at_idx ON community_posts (created_at, id)
    WHERE deleted_at IS NULL;
CREATE INDEX community_posts_updated_at_idx ON community_posts (updated_at, id)
    WHERE deleted_at IS NULL;
CREATE INDEX community_posts_author_idx ON community_posts (author, created_at)
    WHERE deleted_at IS NULL;
