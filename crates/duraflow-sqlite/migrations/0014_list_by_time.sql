-- duraflow SQLite schema, version 14: listing by time reads an index. A listing with a
-- creation-time range comes in creation order from `(created_at, id)`, written once when an
-- instance is created. A listing of finished instances by the time they last changed ("finished
-- before T", what purging by age reads) comes from `(updated_at, id)` over finished instances
-- only, which an instance enters once, when it finishes: the commits of running instances,
-- which change `updated_at` at every turn, do not touch it.

CREATE INDEX instances_by_created ON instances (created_at, id);
--
-- The finished rows are named as "neither pending nor running": SQLite checks a partial index's
-- condition at every update that may change it (every commit), and a list of four values there
-- costs a temporary table per update, where two comparisons cost next to nothing.
CREATE INDEX instances_finished ON instances (updated_at, id)
    WHERE status <> 'pending' AND status <> 'running';
