-- API keys: stored as a keyed hash (HMAC-SHA-256 with a server secret) of the whole key, found
-- by their public prefix (one indexed look-up), and never stored in clear.
CREATE TABLE api_keys (
    id           uuid        NOT NULL PRIMARY KEY,
    owner_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    -- The first characters of the key (`mk_` and 12 more): shown in lists, used for look-up.
    prefix       text        NOT NULL,
    digest       bytea       NOT NULL,
    -- Space-separated `resource:action` permissions.
    scopes       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_keys_prefix_unique UNIQUE (prefix)
);
CREATE INDEX api_keys_owner_id_idx ON api_keys (owner_id, id);

-- The audit log: append-only; rows are written in the transaction of the change they record.
-- No foreign keys: the record of what happened outlives the accounts it names.
CREATE TABLE audit_events (
    id         uuid        NOT NULL PRIMARY KEY,
    type       text        NOT NULL,
    actor_id   uuid,
    target_id  uuid,
    ip         text,
    user_agent text,
    created_at timestamptz NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}'
);
-- Newest first by id (UUIDv7), filtered by user (as actor or target) or by type.
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_target_idx ON audit_events (target_id, id) WHERE target_id IS NOT NULL;
CREATE INDEX audit_events_type_idx ON audit_events (type, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
