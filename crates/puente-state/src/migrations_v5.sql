-- version 5: a smaller store. entries_revisit (sync, status, reason_code, id)
-- serves every lookup by (sync, status) that entries_status did.
DROP INDEX IF EXISTS entries_status;
