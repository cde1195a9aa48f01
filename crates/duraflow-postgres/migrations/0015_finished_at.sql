-- duraflow PostgreSQL schema, version 15: the commits of running instances are heap-only
-- updates. PostgreSQL updates a row in place of its old version on the same page, without a new
-- entry in each of the table's indexes (a "HOT" update), only when no column that an index
-- names, in its keys or in its condition, changes. The index of finished instances by the time
-- they last changed (migration 0014) named `updated_at`, which every commit changes: every
-- commit of an instance added an entry to each of the table's thirteen indexes (a benchmark run
-- counted 65,365 updates and no heap-only one). Its key is now `finished_at`, which PostgreSQL
-- computes from `status` and `updated_at` and which stays NULL while an instance runs; a
-- listing of finished instances reads it in the same order as before, since a finished
-- instance's `finished_at` is its `updated_at`.

ALTER TABLE instances ADD COLUMN finished_at BIGINT GENERATED ALWAYS AS (
    CASE WHEN status IN ('completed', 'failed', 'cancelled', 'terminated') THEN updated_at END
) STORED;
DROP INDEX instances_finished;
CREATE INDEX instances_finished ON instances (finished_at, id) WHERE finished_at IS NOT NULL;
