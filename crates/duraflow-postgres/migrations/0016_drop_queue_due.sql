-- duraflow PostgreSQL schema, version 16: the index of each queue's due instances in due order
-- (migration 0004) is dropped. The fetch reads a queue's due instances from the indexes of
-- migration 0005, admitted and pending apart, in priority order; no statement needs this one
-- (the plans test names the indexes each statement reads). But the planner could still choose
-- it: the store's sessions plan each statement once, generically, and a plan made while the
-- tables were nearly empty read a queue's due instances from it as a bitmap, every one of
-- them, sorted, for a fetch of a few (2.8 ms of a 2.9 ms fetch with 19,000 instances leased).
-- It was also one more index entry for every lease and commit to change.

DROP INDEX IF EXISTS instances_queue_due;
