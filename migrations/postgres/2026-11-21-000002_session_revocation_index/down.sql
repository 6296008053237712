CREATE INDEX sessions_user_id_idx ON sessions (user_id);
DROP INDEX sessions_user_id_last_used_idx;
DROP INDEX sessions_revoked_at_idx;
