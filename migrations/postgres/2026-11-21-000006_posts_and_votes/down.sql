DROP TRIGGER votes_count ON votes;
DROP FUNCTION votes_count();
DROP TABLE votes;
DROP TABLE posts;
