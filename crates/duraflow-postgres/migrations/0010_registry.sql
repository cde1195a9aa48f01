-- duraflow PostgreSQL schema, version 10: the registry. Engines announce the workflow and
-- activity names they serve on each queue; one row per kind, queue and name keeps the latest
-- time it was announced. (Version 9 belongs to another change.)

CREATE TABLE registrations (
    kind      TEXT NOT NULL,
    queue     TEXT NOT NULL,
    name      TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (kind, queue, name)
);
