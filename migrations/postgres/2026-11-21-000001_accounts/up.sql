-- Accounts, password credentials, roles and sessions.

CREATE TABLE users (
    id             uuid        PRIMARY KEY,
    username       text        NOT NULL,
    email          text        NOT NULL,
    -- Case-folded e-mail, computed by the domain: uniqueness and look-ups use it.
    email_key      text        NOT NULL,
    display_name   text,
    email_verified boolean     NOT NULL DEFAULT false,
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT users_username_unique  UNIQUE (username),
    CONSTRAINT users_email_key_unique UNIQUE (email_key)
);

-- Kept apart from users so no query of profiles ever reads a hash by accident.
CREATE TABLE password_credentials (
    user_id    uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash       text        NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE roles (
    name        text        PRIMARY KEY,
    description text        NOT NULL,
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permissions (
    role_name  text NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    permission text NOT NULL,
    PRIMARY KEY (role_name, permission)
);

CREATE TABLE user_roles (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_name  text        NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, role_name)
);
CREATE INDEX user_roles_role_name_idx ON user_roles (role_name);

-- A session is one sign-in and the family of refresh tokens rotated from it.
CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    ip           text,
    user_agent   text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens are stored only as a digest of the token.
CREATE TABLE refresh_tokens (
    id         uuid        PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    digest     bytea       NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    rotated_at timestamptz,
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
