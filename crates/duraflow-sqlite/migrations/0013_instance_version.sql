-- duraflow SQLite schema, version 13: workflow versions. The version of the workflow's code
-- that started an instance's current execution, as its `workflow_started` event records it, and
-- the version of a registered workflow's latest announcement (NULL when the engine registered
-- none, and for rows written before versions).

ALTER TABLE instances ADD COLUMN version TEXT;
ALTER TABLE registrations ADD COLUMN version TEXT;
