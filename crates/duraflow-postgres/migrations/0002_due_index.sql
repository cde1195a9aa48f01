-- duraflow PostgreSQL schema, version 2: instances and tasks ordered by when their work is due,
-- so that fetching work reads only what it leases; and the token of each instance's last
-- commit, so that a runtime holding a journal in memory is not sent it again.

-- When the instance's work is due: while a turn holds it, the lease's expiry; otherwise when
-- its earliest message becomes visible, not before `not_before`. NULL when it has no messages
-- or has finished. Ties go to the oldest message (`due_seq`, a message id).
ALTER TABLE instances ADD COLUMN due_at BIGINT;
ALTER TABLE instances ADD COLUMN due_seq BIGINT;
-- The lease token of the turn that last committed to the instance (0 before the first).
ALTER TABLE instances ADD COLUMN commit_token BIGINT NOT NULL DEFAULT 0;

UPDATE instances i
   SET due_seq = m.first,
       due_at = CASE WHEN i.lease_until IS NOT NULL THEN i.lease_until
                     ELSE greatest(m.visible, i.not_before) END
  FROM (SELECT instance_id, min(id) AS first, min(visible_at) AS visible
          FROM messages GROUP BY instance_id) m
 WHERE m.instance_id = i.id AND i.status IN ('pending', 'running');

CREATE INDEX instances_due ON instances (due_at, due_seq) WHERE due_at IS NOT NULL;

-- A leased task is not visible before its lease expires: `visible_at` is the expiry.
UPDATE tasks SET visible_at = lease_until
 WHERE lease_until IS NOT NULL AND lease_until > visible_at;

-- Fetches and next_due use the due index now.
DROP INDEX messages_by_visibility;
