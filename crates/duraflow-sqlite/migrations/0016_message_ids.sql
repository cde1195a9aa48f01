-- duraflow SQLite schema, version 16: message ids are plain row ids, without AUTOINCREMENT.
-- AUTOINCREMENT keeps the largest id ever given in `sqlite_sequence`, a row that every
-- transaction inserting a message rewrote: one page more in the write-ahead log for each start
-- and each sent event (about a twentieth of an empty workflow's pages, from start to result).
-- A plain row id is one more than the largest id present, so ids still grow in send order
-- among the messages that exist, which is all that orders an inbox (by `visible_at`, then id).
-- An id freed by a deletion may be given again; nothing tells it from a new one: only the
-- instance's lease holder deletes its consumed messages, by id and instance, while they exist.
-- (Tasks keep AUTOINCREMENT: a completion of a task that is gone must find no task, not a new
-- one under the same id.) The table is rebuilt with the same columns, rows and index.

CREATE TABLE messages_new (
    id          INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    visible_at  INTEGER NOT NULL,
    kind        TEXT NOT NULL
);
INSERT INTO messages_new (id, instance_id, visible_at, kind)
    SELECT id, instance_id, visible_at, kind FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_by_instance ON messages (instance_id, id);
