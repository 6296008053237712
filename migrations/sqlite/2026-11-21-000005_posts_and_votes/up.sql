-- Posts and votes; see migrations/postgres (…_posts_and_votes) for the design. Vote totals are
-- counters kept by triggers in the transaction of every vote change.

CREATE TABLE posts (
    id          TEXT      PRIMARY KEY NOT NULL,
    author_id   TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content     TEXT      NOT NULL CHECK (length(content) BETWEEN 1 AND 5000),
    -- A JSON array of up to nine URL strings.
    media_urls  TEXT      NOT NULL DEFAULT '[]'
                          CHECK (json_valid(media_urls) AND json_type(media_urls) = 'array'
                                 AND json_array_length(media_urls) <= 9),
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    upvotes     BIGINT    NOT NULL DEFAULT 0 CHECK (upvotes >= 0),
    downvotes   BIGINT    NOT NULL DEFAULT 0 CHECK (downvotes >= 0)
);

CREATE INDEX posts_feed_idx ON posts (created_at DESC, id DESC);
CREATE INDEX posts_author_feed_idx ON posts (author_id, created_at DESC, id DESC);

CREATE TABLE votes (
    post_id    TEXT      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    value      SMALLINT  NOT NULL CHECK (value IN (-1, 1)),
    voted_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (post_id, user_id)
) WITHOUT ROWID;
CREATE INDEX votes_user_id_idx ON votes (user_id);

CREATE TRIGGER votes_count_insert AFTER INSERT ON votes BEGIN
    UPDATE posts SET upvotes = upvotes + (NEW.value = 1), downvotes = downvotes + (NEW.value = -1)
    WHERE id = NEW.post_id;
END;

CREATE TRIGGER votes_count_update AFTER UPDATE OF value ON votes BEGIN
    UPDATE posts
    SET upvotes = upvotes + (NEW.value = 1) - (OLD.value = 1),
        downvotes = downvotes + (NEW.value = -1) - (OLD.value = -1)
    WHERE id = NEW.post_id;
END;

CREATE TRIGGER votes_count_delete AFTER DELETE ON votes BEGIN
    UPDATE posts SET upvotes = upvotes - (OLD.value = 1), downvotes = downvotes - (OLD.value = -1)
    WHERE id = OLD.post_id;
END;
