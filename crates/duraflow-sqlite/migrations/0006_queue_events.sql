-- duraflow SQLite schema: queue-wide events. The first emit of a name in a queue is kept here,
-- and the awaits not yet answered wait in queue_event_waiters.

CREATE TABLE queue_events (
    queue      TEXT NOT NULL,
    name       TEXT NOT NULL,
    data       TEXT NOT NULL,
    emitted_at INTEGER NOT NULL,
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;

CREATE TABLE queue_event_waiters (
    queue       TEXT NOT NULL,
    name        TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    op          TEXT NOT NULL,
    PRIMARY KEY (queue, name, instance_id, execution, op)
) WITHOUT ROWID;

CREATE INDEX queue_event_waiters_by_instance ON queue_event_waiters (instance_id, execution);
