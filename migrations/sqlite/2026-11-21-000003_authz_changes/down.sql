DROP INDEX users_authz_changed_at_idx;
ALTER TABLE users DROP COLUMN authz_changed_at;
