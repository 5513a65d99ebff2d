-- version 7: entries in sync (most of a sync) leave the status index. The
-- queries that use it say `status <> 'in_sync'`, and the count in sync is
-- the count of all less the others.
DROP INDEX IF EXISTS entries_revisit;
CREATE INDEX entries_revisit ON entries (sync, status, reason_code, id) WHERE status <> 'in_sync'
