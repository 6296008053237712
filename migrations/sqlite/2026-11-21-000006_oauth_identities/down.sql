PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE oauth_identities;
CREATE TABLE users_old (
    id               TEXT        NOT NULL PRIMARY KEY,
    username         TEXT        NOT NULL,
    email            TEXT        NOT NULL,
    email_key        TEXT        NOT NULL,
    display_name     TEXT,
    email_verified   BOOLEAN     NOT NULL DEFAULT false,
    disabled         BOOLEAN     NOT NULL DEFAULT false,
    created_at       TIMESTAMP   NOT NULL,
    updated_at       TIMESTAMP   NOT NULL,
    authz_changed_at TIMESTAMP,
    CONSTRAINT users_username_unique  UNIQUE (username),
    CONSTRAINT users_email_key_unique UNIQUE (email_key)
);
INSERT INTO users_old (id, username, email, email_key, display_name, email_verified, disabled,
                       created_at, updated_at, authz_changed_at)
    SELECT id, username, COALESCE(email, id || '@oauth.invalid'),
           COALESCE(email_key, id || '@oauth.invalid'), display_name, email_verified, disabled,
           created_at, updated_at, authz_changed_at FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
CREATE INDEX users_authz_changed_at_idx ON users (authz_changed_at) WHERE authz_changed_at IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
