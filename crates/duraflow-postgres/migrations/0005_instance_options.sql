-- duraflow PostgreSQL schema, version 5: what a start sets besides the input, and flow
-- control. `options` is the JSON of every option (NULL when all are defaults); priority and
-- concurrency key are also kept as columns, for the fetch to order and limit by.

ALTER TABLE instances ADD COLUMN options TEXT;
ALTER TABLE instances ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN concurrency_key TEXT;

-- The attempt the current execution runs: 1, then one more each time a workflow with a retry
-- policy failed and was started again.
ALTER TABLE instances ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;

-- When the instance was admitted: its first turn leased. NULL while it is pending. Instances
-- past their first turn count as admitted when they were last updated.
ALTER TABLE instances ADD COLUMN started_at BIGINT;
UPDATE instances SET started_at = updated_at WHERE status <> 'pending';

-- The flow-control configuration of each queue that has one (`QueueConfig` as JSON), and
-- whether it limits the queue as a whole (a concurrency or a rate limit), for the statements
-- that decide whether an instance needs an admission.
CREATE TABLE queue_configs (
    name         TEXT PRIMARY KEY,
    config       TEXT NOT NULL,
    limits_queue BOOLEAN NOT NULL
);

-- Fetches read the due work of each served queue by priority, admitted and pending instances
-- apart (pending ones may be held back; admitted ones never are).
CREATE INDEX instances_admitted_due ON instances (queue, priority DESC, due_at, due_seq)
    WHERE due_at IS NOT NULL AND started_at IS NOT NULL;
CREATE INDEX instances_pending_due ON instances (queue, priority DESC, due_at, due_seq)
    WHERE due_at IS NOT NULL AND started_at IS NULL;
-- Pending instances with a key, which always need an admission.
CREATE INDEX instances_keyed_pending ON instances (queue, due_at)
    WHERE due_at IS NOT NULL AND started_at IS NULL AND concurrency_key IS NOT NULL;

-- What runs (admitted, not finished), per queue and key; and admissions by time, for rate
-- limits.
CREATE INDEX instances_running ON instances (queue, concurrency_key)
    WHERE started_at IS NOT NULL AND status IN ('pending', 'running');
CREATE INDEX instances_started ON instances (queue, started_at) WHERE started_at IS NOT NULL;
