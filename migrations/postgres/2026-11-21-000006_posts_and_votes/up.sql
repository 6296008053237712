-- Posts and votes. Vote totals are counters on the post, kept by triggers on votes in the
-- transaction of every vote change (including the cascade when a post or an account is
-- deleted), so they are exact whatever path changes a vote (docs/decisions.md, 22).

CREATE TABLE posts (
    id          uuid        PRIMARY KEY,
    author_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Plain text, markup removed and trimmed by the domain.
    content     text        NOT NULL CHECK (char_length(content) BETWEEN 1 AND 5000),
    -- Up to nine absolute http(s) URLs, as a JSON array of strings.
    media_urls  jsonb       NOT NULL DEFAULT '[]'
                            CHECK (jsonb_typeof(media_urls) = 'array'
                                   AND jsonb_array_length(media_urls) <= 9),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    upvotes     bigint      NOT NULL DEFAULT 0 CHECK (upvotes >= 0),
    downvotes   bigint      NOT NULL DEFAULT 0 CHECK (downvotes >= 0)
);

-- The feed and an author's posts: keyset pages newest first on (created_at, id).
CREATE INDEX posts_feed_idx ON posts (created_at DESC, id DESC);
CREATE INDEX posts_author_feed_idx ON posts (author_id, created_at DESC, id DESC);

-- One vote per user per post; the primary key also serves "the viewer's vote on this post".
CREATE TABLE votes (
    post_id    uuid        NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    value      smallint    NOT NULL CHECK (value IN (-1, 1)),
    voted_at   timestamptz NOT NULL,
    PRIMARY KEY (post_id, user_id)
);
-- Deleting an account finds its votes by this.
CREATE INDEX votes_user_id_idx ON votes (user_id);

CREATE FUNCTION votes_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    up   bigint := 0;
    down bigint := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        up := up + (NEW.value = 1)::int;
        down := down + (NEW.value = -1)::int;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        up := up - (OLD.value = 1)::int;
        down := down - (OLD.value = -1)::int;
    END IF;
    IF up <> 0 OR down <> 0 THEN
        UPDATE posts SET upvotes = upvotes + up, downvotes = downvotes + down
        WHERE id = COALESCE(NEW.post_id, OLD.post_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER votes_count AFTER INSERT OR UPDATE OF value OR DELETE ON votes
    FOR EACH ROW EXECUTE FUNCTION votes_count();
