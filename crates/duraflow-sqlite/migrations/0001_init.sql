-- duraflow SQLite schema, version 1.

CREATE TABLE instances (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    failure     TEXT,
    parent      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    not_before  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX instances_by_name ON instances (name, id);
CREATE INDEX instances_by_status ON instances (status, id);

-- One row per journal event; `format` is the event format version it was written in.
CREATE TABLE events (
    instance_id TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    format      INTEGER NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (instance_id, execution, position)
) WITHOUT ROWID;

-- Inbox messages; ids grow in send order, which is the delivery order per instance.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    visible_at  INTEGER NOT NULL,
    kind        TEXT NOT NULL
);

CREATE INDEX messages_by_instance ON messages (instance_id, id);
CREATE INDEX messages_by_visibility ON messages (visible_at);

-- Activity tasks.
CREATE TABLE tasks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id  TEXT NOT NULL,
    execution    INTEGER NOT NULL,
    op           TEXT NOT NULL,
    name         TEXT NOT NULL,
    input        TEXT NOT NULL,
    options      TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    visible_at   INTEGER NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    lease_token  INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    last_failure TEXT
);

CREATE INDEX tasks_by_visibility ON tasks (visible_at, id);
CREATE INDEX tasks_by_instance ON tasks (instance_id);

-- Lease tokens come from one sequence, so no two leases ever share a token.
CREATE TABLE lease_tokens (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO lease_tokens (id, value) VALUES (1, 0);
