-- duraflow PostgreSQL schema, version 1. Applied inside the store's schema (search_path).

CREATE SEQUENCE lease_tokens;

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    failure     TEXT,
    parent      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    lease_token BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    not_before  BIGINT NOT NULL DEFAULT 0
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
);

-- Inbox messages; ids grow in send order, which is the delivery order per instance.
CREATE TABLE messages (
    id          BIGSERIAL PRIMARY KEY,
    instance_id TEXT NOT NULL,
    visible_at  BIGINT NOT NULL,
    kind        TEXT NOT NULL
);

CREATE INDEX messages_by_instance ON messages (instance_id, id);
CREATE INDEX messages_by_visibility ON messages (visible_at);

CREATE TABLE tasks (
    id           BIGSERIAL PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    execution    INTEGER NOT NULL,
    op           TEXT NOT NULL,
    name         TEXT NOT NULL,
    input        TEXT NOT NULL,
    options      TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    visible_at   BIGINT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    lease_token  BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    last_failure TEXT
);

CREATE INDEX tasks_by_visibility ON tasks (visible_at, id);
CREATE INDEX tasks_by_instance ON tasks (instance_id);
