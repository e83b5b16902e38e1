-- Accounts own resources (ACCOUNTS.md, "What changes in existing resources"): a ticket
-- remembers the account that opened it (null when opened anonymously) and a post the account
-- that published it. Lists filtered to the caller read these indexes, in the lists' default
-- order, so they stay index-backed however many rows other accounts own. Projects already
-- have `owner_id` and `projects_owner_idx` (0003).
ALTER TABLE support_tickets ADD COLUMN submitter_id uuid;
ALTER TABLE community_posts ADD COLUMN author_id uuid;

CREATE INDEX support_tickets_submitter_idx ON support_tickets (submitter_id, created_at, id)
    WHERE submitter_id IS NOT NULL;
CREATE INDEX community_posts_author_id_idx ON community_posts (author_id, created_at)
    WHERE deleted_at IS NULL AND author_id IS NOT NULL;
