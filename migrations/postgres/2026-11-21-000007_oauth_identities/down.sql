DROP TABLE oauth_identities;
-- Accounts made through a provider without an address get an unroutable placeholder so the
-- constraint can return.
UPDATE users SET email = id::text || '@oauth.invalid', email_key = id::text || '@oauth.invalid'
    WHERE email IS NULL;
ALTER TABLE users ALTER COLUMN email SET NOT NULL, ALTER COLUMN email_key SET NOT NULL;
