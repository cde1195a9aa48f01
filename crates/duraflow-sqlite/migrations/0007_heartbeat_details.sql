-- duraflow SQLite schema, migration 0007: a task keeps the details of the latest heartbeat of
-- any of its attempts (a Payload as JSON text, NULL when none), so the next attempt can resume
-- from them.

ALTER TABLE tasks ADD COLUMN heartbeat_details TEXT;
