-- Sign-in through identity providers (OAuth 2.0 / OpenID Connect). SQLite mirror of
-- migrations/postgres.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

-- An account made through a provider may have no e-mail address: rebuild users with nullable
-- email and email_key (the twelve steps of SQLite's "other ALTER TABLE changes").
CREATE TABLE users_new (
    id               TEXT        NOT NULL PRIMARY KEY,
    username         TEXT        NOT NULL,
    email            TEXT,
    email_key        TEXT,
    display_name     TEXT,
    email_verified   BOOLEAN     NOT NULL DEFAULT false,
    disabled         BOOLEAN     NOT NULL DEFAULT false,
    created_at       TIMESTAMP   NOT NULL,
    updated_at       TIMESTAMP   NOT NULL,
    authz_changed_at TIMESTAMP,
    CONSTRAINT users_username_unique  UNIQUE (username),
    CONSTRAINT users_email_key_unique UNIQUE (email_key)
);
INSERT INTO users_new (id, username, email, email_key, display_name, email_verified, disabled,
                       created_at, updated_at, authz_changed_at)
    SELECT id, username, email, email_key, display_name, email_verified, disabled,
           created_at, updated_at, authz_changed_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_authz_changed_at_idx ON users (authz_changed_at) WHERE authz_changed_at IS NOT NULL;

CREATE TABLE oauth_identities (
    provider     TEXT        NOT NULL,
    subject      TEXT        NOT NULL,
    user_id      TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email        TEXT,
    created_at   TIMESTAMP   NOT NULL,
    last_used_at TIMESTAMP   NOT NULL,
    PRIMARY KEY (provider, subject),
    CONSTRAINT oauth_identities_user_provider_unique UNIQUE (user_id, provider)
);

-- Fails the migration (the transaction is rolled back by the harness' error) if the rebuild
-- broke a reference; returns no rows when all is well.
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
