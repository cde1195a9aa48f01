-- duraflow SQLite schema, migration 0011: the registry. Engines announce the workflow and
-- activity names they serve on each queue; one row per kind, queue and name keeps the latest
-- time it was announced. (Number 0010 belongs to another change; the list in open.rs orders
-- them.)

CREATE TABLE registrations (
    kind      TEXT NOT NULL,
    queue     TEXT NOT NULL,
    name      TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (kind, queue, name)
) WITHOUT ROWID;
