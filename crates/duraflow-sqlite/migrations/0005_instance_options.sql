-- duraflow SQLite schema, version 5: what a start sets besides the input. `options` is the
-- JSON of every option (NULL when all are defaults); priority and concurrency key are also
-- kept as columns, for the fetch to order and limit by.

ALTER TABLE instances ADD COLUMN options TEXT;
ALTER TABLE instances ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN concurrency_key TEXT;

-- The attempt the current execution runs: 1, then one more each time a workflow with a retry
-- policy failed and was started again.
ALTER TABLE instances ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
