-- duraflow SQLite schema, version 15: a journal row holds every event one commit appended to
-- an execution. `span` is how many: the row's events are at `position`, `position + 1`, ...
-- `position + span - 1`. A row of one event keeps it as before (JSON text, or one event in the
-- binary encoding); a row of several is a blob of their binary encodings, each behind its
-- length (`Event::encode_binary_run`). A cold turn steps half the rows for a workflow of steps
-- (two events a commit), and a commit inserts one row instead of one per event. Rows written
-- before hold one event each, which the default says.

ALTER TABLE events ADD COLUMN span INTEGER NOT NULL DEFAULT 1;
