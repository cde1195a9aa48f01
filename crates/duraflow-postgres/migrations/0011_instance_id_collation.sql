-- duraflow PostgreSQL schema, version 11: every column that holds an instance id has the
-- collation "C", as `instances.id` has since version 9.
--
-- A comparison takes the collation of its operands, and an index serves it only in the
-- collation it was built in. With `instances.id` in "C" and `instance_id` elsewhere in the
-- database's collation, a join such as `messages.instance_id = instances.id` compared in "C"
-- and could not use the index on `messages (instance_id, ..)`: a fetch of 500 turns at
-- 1,000,000 instances read the messages index whole (16 s) instead of seeking it. Equality is
-- the same in every deterministic collation, so this changes plans only.

ALTER TABLE events ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
ALTER TABLE messages ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
ALTER TABLE tasks ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
ALTER TABLE callbacks ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
ALTER TABLE queue_event_waiters ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
ALTER TABLE feed ALTER COLUMN instance_id TYPE TEXT COLLATE "C";
