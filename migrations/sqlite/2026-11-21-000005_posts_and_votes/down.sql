DROP TRIGGER votes_count_delete;
DROP TRIGGER votes_count_update;
DROP TRIGGER votes_count_insert;
DROP TABLE votes;
DROP TABLE posts;
