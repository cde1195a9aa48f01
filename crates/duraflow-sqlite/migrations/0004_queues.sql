-- duraflow SQLite schema, version 4: every instance and task belongs to a queue, and fetches
-- read only the queues they serve, in the order their work is due.

ALTER TABLE instances ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';

CREATE INDEX instances_queue_due ON instances (queue, due_at, due_seq) WHERE due_at IS NOT NULL;
CREATE INDEX tasks_queue_due ON tasks (queue, visible_at, id);
