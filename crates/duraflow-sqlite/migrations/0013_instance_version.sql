-- duraflow SQLite schema, version 13: the version of the workflow's code that started an
-- instance's current execution, as its `workflow_started` event records it (NULL when the
-- engine registered none, and for rows written before versions).

ALTER TABLE instances ADD COLUMN version TEXT;
