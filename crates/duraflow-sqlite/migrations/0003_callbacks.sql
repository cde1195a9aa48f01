-- duraflow SQLite schema, version 3: callbacks, operations that an external party resolves by
-- presenting an unguessable token.

CREATE TABLE callbacks (
    token       TEXT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    op          TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- open, completed, failed or timed_out
    status      TEXT NOT NULL,
    timeout_at  INTEGER,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX callbacks_by_instance ON callbacks (instance_id, execution, op);
