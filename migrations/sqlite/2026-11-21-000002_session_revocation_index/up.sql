-- Instances poll for sessions revoked since their last look, to refuse those sessions' access
-- tokens; only revoked sessions are indexed.
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
-- The sessions list of a user, most recently used first.
CREATE INDEX sessions_user_id_last_used_idx ON sessions (user_id, last_used_at);
DROP INDEX sessions_user_id_idx;
