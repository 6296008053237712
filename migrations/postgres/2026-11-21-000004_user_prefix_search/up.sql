-- Prefix search of users (GET /users?q=) filters with LIKE 'prefix%', which a btree index under
-- the database's default collation cannot serve; pattern-ops indexes can. (SQLite's LIKE is
-- served well enough on one node and keeps its schema.)
CREATE INDEX users_username_pattern_idx ON users (username text_pattern_ops);
CREATE INDEX users_email_key_pattern_idx ON users (email_key text_pattern_ops);
