-- duraflow SQLite schema, version 16: a new instance's start is a column of its row, not a row
-- of `messages`. The first execution's start says nothing the instance row does not (its
-- execution is 1, its input is the row's), and it was inserted at creation only for the first
-- turn to delete it: four pages of the write-ahead log per instance (the message and its index
-- entry, written twice), and a fifth for `sqlite_sequence`. `start_at` is when the pending start
-- is visible, from the creation until a commit consumes it (NULL after, and for instances
-- created before, which keep their start messages); while it is set, a lease hands the turn a
-- start message (`turns::IMPLICIT_START`) before the inbox's. A later execution's start carries
-- events over from the last one and stays a message.
--
-- `due_seq` orders instances due at the same time by when their oldest work was sent. A message
-- counts as `2 * id`; a pending start, which has no id, as `2 * s + 1`, where `s` is the
-- largest message id given when it was created (`sqlite_sequence`): after every message sent
-- before it and before every one sent after, as its message's id was.

ALTER TABLE instances ADD COLUMN start_at INTEGER;
UPDATE instances SET due_seq = due_seq * 2 WHERE due_seq IS NOT NULL;
