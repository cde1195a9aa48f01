-- duraflow PostgreSQL schema, version 8: the feed. Records that turns publish are appended to
-- `feed` in the transaction of their turn's commit. Positions are not taken from a sequence:
-- concurrent transactions can commit sequence values out of order, so a reader past position
-- n could miss a record n - 1 committed after it read. Instead every commit batch that appends
-- records takes the next positions from the single row of `feed_head`, updating it in the
-- same transaction: the row lock serialises appends in commit order (the next appender waits
-- until this one has committed and then numbers after it), so positions become visible in
-- order, with no gaps. Commits that carry no records do not touch it.
-- Each instance keeps the `(execution, seq)` of the last record appended for it, so a record
-- a replay derives again is not appended twice. Subscribers keep their cursors in
-- `feed_cursors`.

CREATE TABLE feed (
    position    BIGINT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    at          BIGINT NOT NULL
);

CREATE TABLE feed_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL
);

INSERT INTO feed_head (id, position) VALUES (1, 0);

CREATE TABLE feed_cursors (
    subscriber TEXT PRIMARY KEY,
    position   BIGINT NOT NULL
);

ALTER TABLE instances
    ADD COLUMN feed_execution INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN feed_seq BIGINT NOT NULL DEFAULT 0;
