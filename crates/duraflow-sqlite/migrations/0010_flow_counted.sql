-- duraflow SQLite schema, version 10: the flow-control indexes hold only the instances flow
-- control counts. Before, every admitted instance entered `instances_running` and
-- `instances_started` and left the first at its end: two or three B-tree changes per instance
-- even where no queue has a limit, about a tenth of the writer's time in the throughput
-- workload.
--
-- `flow_counted` is 1 for an instance admitted under a limit: it has a concurrency key, or its
-- queue had a concurrency or rate limit when it was admitted. Configuring a limit on a queue
-- marks the instances it already admitted that the limit must count (those still running, and
-- those admitted within the rate window), so a count read from these indexes is the count of
-- every admitted instance, as before.

ALTER TABLE instances ADD COLUMN flow_counted INTEGER NOT NULL DEFAULT 0;

-- Every instance a limit may count today: admitted, with a key or in a configured queue.
UPDATE instances SET flow_counted = 1
 WHERE started_at IS NOT NULL
   AND (concurrency_key IS NOT NULL OR queue IN (SELECT name FROM queue_configs));

DROP INDEX instances_running;
DROP INDEX instances_started;
CREATE INDEX instances_running ON instances (queue, concurrency_key)
    WHERE flow_counted = 1 AND started_at IS NOT NULL AND status IN ('pending', 'running');
CREATE INDEX instances_started ON instances (queue, started_at)
    WHERE flow_counted = 1 AND started_at IS NOT NULL;
