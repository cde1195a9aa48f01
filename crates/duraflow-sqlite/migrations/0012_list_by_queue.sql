-- duraflow SQLite schema, version 12: listing one queue's instances in id order reads an
-- index, as listing by status and by name already do.

CREATE INDEX instances_by_queue ON instances (queue, id);
