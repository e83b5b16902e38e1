-- When a session's current refresh token lapses unless spent (`refresh_expires_at` of its
-- LoginSucceeded or latest SessionRefreshed). A session past it can no longer be continued,
-- so the sessions list leaves it out. NULL where the events did not record it (sessions
-- opened before this column): those stay listed until `expires_at`, as before.
ALTER TABLE auth_sessions ADD COLUMN refresh_expires_at timestamptz;
