-- Accounts, password credentials, roles and sessions.
-- SQLite mirror of migrations/postgres: ids are TEXT (hyphenated UUIDs), times are UTC TIMESTAMP.

CREATE TABLE users (
    id             TEXT        NOT NULL PRIMARY KEY,
    username       TEXT        NOT NULL,
    email          TEXT        NOT NULL,
    -- Case-folded e-mail, computed by the domain: uniqueness and look-ups use it.
    email_key      TEXT        NOT NULL,
    display_name   TEXT,
    email_verified BOOLEAN     NOT NULL DEFAULT false,
    disabled       BOOLEAN     NOT NULL DEFAULT false,
    created_at     TIMESTAMP   NOT NULL,
    updated_at     TIMESTAMP   NOT NULL,
    CONSTRAINT users_username_unique  UNIQUE (username),
    CONSTRAINT users_email_key_unique UNIQUE (email_key)
);

-- Kept apart from users so no query of profiles ever reads a hash by accident.
CREATE TABLE password_credentials (
    user_id    TEXT        NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash       TEXT        NOT NULL,
    updated_at TIMESTAMP   NOT NULL
);

CREATE TABLE roles (
    name        TEXT        NOT NULL PRIMARY KEY,
    description TEXT        NOT NULL,
    builtin     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE role_permissions (
    role_name  TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role_name, permission)
);

CREATE TABLE user_roles (
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_name  TEXT        NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    granted_at TIMESTAMP   NOT NULL,
    PRIMARY KEY (user_id, role_name)
);
CREATE INDEX user_roles_role_name_idx ON user_roles (role_name);

-- A session is one sign-in and the family of refresh tokens rotated from it.
CREATE TABLE sessions (
    id           TEXT        NOT NULL PRIMARY KEY,
    user_id      TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMP   NOT NULL,
    last_used_at TIMESTAMP   NOT NULL,
    expires_at   TIMESTAMP   NOT NULL,
    revoked_at   TIMESTAMP,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens are stored only as a digest of the token.
CREATE TABLE refresh_tokens (
    id         TEXT        NOT NULL PRIMARY KEY,
    session_id TEXT        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    digest     BLOB        NOT NULL,
    issued_at  TIMESTAMP   NOT NULL,
    expires_at TIMESTAMP   NOT NULL,
    rotated_at TIMESTAMP,
    CONSTRAINT refresh_tokens_digest_unique UNIQUE (digest)
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Built-in roles; their permissions mirror moments_domain::authz::builtin_roles (the contract
-- suite checks that they agree).
INSERT INTO roles (name, description, builtin) VALUES
    ('admin', 'Administrators: every permission', true),
    ('moderator', 'Moderators: write posts, moderate posts, read users', true),
    ('user', 'Every account: write posts', true);

INSERT INTO role_permissions (role_name, permission) VALUES
    ('admin', 'users:read'), ('admin', 'users:write'), ('admin', 'roles:read'),
    ('admin', 'roles:write'), ('admin', 'roles:assign'), ('admin', 'posts:write'),
    ('admin', 'posts:moderate'), ('admin', 'api_keys:manage'), ('admin', 'audit:read'),
    ('moderator', 'posts:write'), ('moderator', 'posts:moderate'), ('moderator', 'users:read'),
    ('user', 'posts:write');
