-- duraflow PostgreSQL schema, version 18: a journal row holds every event one commit appended
-- to an execution, as SQLite's does since its migration 15. `span` is how many: the row's
-- events are at `position` .. `position + span - 1`; several are one run of their binary
-- encodings in `encoded` (`Event::encode_binary_run`), each behind its length. A commit of a
-- step inserts one row instead of two (one heap tuple and one `events_pkey` entry fewer), and
-- a cold turn reads half the rows. Rows written before hold one event each, which the default
-- says; adding a column with a constant default rewrites nothing.

ALTER TABLE events ADD COLUMN span INTEGER NOT NULL DEFAULT 1;
