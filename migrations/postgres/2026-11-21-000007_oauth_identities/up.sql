-- Sign-in through identity providers (OAuth 2.0 / OpenID Connect).

-- An account made through a provider may have no e-mail address (X gives none). NULLs never
-- collide under the unique constraint on email_key.
ALTER TABLE users ALTER COLUMN email DROP NOT NULL, ALTER COLUMN email_key DROP NOT NULL;

-- One row per provider identity; (provider, subject) is the identity, whatever its e-mail says.
CREATE TABLE oauth_identities (
    provider     text        NOT NULL,
    subject      text        NOT NULL,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What the provider said last time, for support and display; never used to find accounts.
    email        text,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (provider, subject),
    -- One identity per provider and account: unlinking names the provider.
    CONSTRAINT oauth_identities_user_provider_unique UNIQUE (user_id, provider)
);
