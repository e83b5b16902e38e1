-- One checkpoint per projection, written in the same transaction as its read-model rows.
-- (tx_id, position) is the last applied event in commit-safe order.
CREATE TABLE projection_checkpoints
(
    name           text PRIMARY KEY,
    tx_id          bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    state          text        NOT NULL DEFAULT 'running',
    last_error     text
);

-- Read model: projects.
CREATE TABLE projects
(
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    owner_id    uuid,
    archived    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL
);

CREATE INDEX projects_created_at_idx ON projects (created_at, id);
CREATE INDEX projects_updated_at_idx ON projects (updated_at, id);
CREATE INDEX projects_name_idx ON projects (name, id);
CREATE INDEX projects_owner_idx ON projects (owner_id, created_at);
