-- When a user's roles (or the permissions of a role they hold) last changed: instances poll
-- for recent changes so access tokens issued earlier stop carrying stale permissions.
ALTER TABLE users ADD COLUMN authz_changed_at TIMESTAMP;
CREATE INDEX users_authz_changed_at_idx ON users (authz_changed_at) WHERE authz_changed_at IS NOT NULL;
