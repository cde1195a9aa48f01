-- duraflow SQLite schema, migration 0008: the feed. Records that turns publish are appended to
-- `feed` in the transaction of their turn's commit; AUTOINCREMENT never reuses a position, and
-- SQLite's single writer appends in commit order, so positions increase in commit order.
-- Each instance keeps the `(execution, seq)` of the last record appended for it, so a record
-- a replay derives again is not appended twice. Subscribers keep their cursors in
-- `feed_cursors`.

CREATE TABLE feed (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    at          INTEGER NOT NULL
);

CREATE TABLE feed_cursors (
    subscriber TEXT PRIMARY KEY,
    position   INTEGER NOT NULL
);

ALTER TABLE instances ADD COLUMN feed_execution INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN feed_seq INTEGER NOT NULL DEFAULT 0;
