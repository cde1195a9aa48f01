-- duraflow PostgreSQL schema: queue-wide events. The first emit of a name in a queue is kept
-- here, and the awaits not yet answered wait in queue_event_waiters. Emits and awaits of a
-- queue and name serialize on a transaction-scoped advisory lock of that pair (see
-- ops/queue_events.rs).

CREATE TABLE queue_events (
    queue      TEXT NOT NULL,
    name       TEXT NOT NULL,
    data       TEXT NOT NULL,
    emitted_at BIGINT NOT NULL,
    PRIMARY KEY (queue, name)
);

CREATE TABLE queue_event_waiters (
    queue       TEXT NOT NULL,
    name        TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    execution   INTEGER NOT NULL,
    op          TEXT NOT NULL,
    PRIMARY KEY (queue, name, instance_id, execution, op)
);

CREATE INDEX queue_event_waiters_by_instance ON queue_event_waiters (instance_id, execution);
