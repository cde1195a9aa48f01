-- duraflow SQLite schema, version 9: the global due indexes go. Every lease and every commit
-- moves an instance's due time, and each index on it is one more B-tree change in the writer's
-- transaction; `next_due` now reads the first due time of each queue and priority from the
-- admitted and pending due indexes (version 5), which fetches keep anyway.

DROP INDEX instances_due;

-- Likewise for tasks: `next_due` reads the first visible time after now of each queue from
-- `tasks_queue_due` (version 4).
DROP INDEX tasks_by_visibility;
