-- version 4: why a record is excluded or waits, as a code beside the
-- message (held creates and the rest were told apart by their text).
ALTER TABLE entries ADD COLUMN reason_code TEXT;
UPDATE entries SET reason_code = 'merged', reason = message, message = NULL
    WHERE status = 'excluded' AND reason = 'merged';
UPDATE entries SET reason_code = CASE
        WHEN reason LIKE 'filter:%' THEN 'filter'
        WHEN reason LIKE 'no match key%' THEN 'no_match_key'
        WHEN reason LIKE 'ambiguous match key%' THEN 'ambiguous'
        WHEN reason LIKE 'matches % that the filter excludes' THEN 'matches_excluded'
        WHEN reason LIKE 'exists only on %' THEN 'one_way'
        ELSE 'filter' END
    WHERE status = 'excluded' AND reason_code IS NULL;
UPDATE entries SET reason_code = CASE
        WHEN reason = 'backfill: created once both sides are read in full' THEN 'backfill'
        WHEN reason LIKE 'matching: compared with every a record%' THEN 'matching'
        WHEN reason LIKE 'conflict decision on field%' THEN 'conflict'
        WHEN reason LIKE 'matches % which could not be read%' THEN 'unread'
        ELSE 'parent' END
    WHERE status = 'waiting';
CREATE INDEX entries_revisit ON entries (sync, status, reason_code, id);
