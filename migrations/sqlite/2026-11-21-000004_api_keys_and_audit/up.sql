-- SQLite mirror of the PostgreSQL migration 000005_api_keys_and_audit.
CREATE TABLE api_keys (
    id           TEXT      NOT NULL PRIMARY KEY,
    owner_id     TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT      NOT NULL,
    prefix       TEXT      NOT NULL,
    digest       BLOB      NOT NULL,
    scopes       TEXT      NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    CONSTRAINT api_keys_prefix_unique UNIQUE (prefix)
);
CREATE INDEX api_keys_owner_id_idx ON api_keys (owner_id, id);

CREATE TABLE audit_events (
    id         TEXT      NOT NULL PRIMARY KEY,
    type       TEXT      NOT NULL,
    actor_id   TEXT,
    target_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    created_at TIMESTAMP NOT NULL,
    details    TEXT      NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_target_idx ON audit_events (target_id, id) WHERE target_id IS NOT NULL;
CREATE INDEX audit_events_type_idx ON audit_events (type, id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
