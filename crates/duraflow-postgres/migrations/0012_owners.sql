-- duraflow PostgreSQL schema, version 12: lease owners, so that the leases of a store whose
-- process died are released at once instead of when they expire (see src/owners.rs).
--
-- Every store takes an id from `owner_ids` and holds the session-level advisory lock
-- (oid of this schema's `owners` table, id) on a connection of its own for as long as it
-- lives; then it records itself in `owners`. A lease carries the id of the store that took it
-- (or last renewed or kept it) in `lease_owner`. A store that can take another id's lock knows
-- that store's session is gone (PostgreSQL drops a session's locks when it ends, however its
-- process ended): it releases the leases carrying the id, their tokens unchanged so that late
-- writes are still refused, and deletes the row.
CREATE SEQUENCE owner_ids AS integer;

CREATE TABLE owners (
    id          INTEGER PRIMARY KEY,
    -- When the store took the id (ms since the epoch), and the server process of its lock
    -- session: for operators.
    started_at  BIGINT NOT NULL,
    backend_pid INTEGER NOT NULL
);

-- NULL for leases taken before this migration, or while their store held no owner lock: those
-- are only ever taken over when they expire.
ALTER TABLE instances ADD COLUMN lease_owner INTEGER;
ALTER TABLE tasks ADD COLUMN lease_owner INTEGER;
