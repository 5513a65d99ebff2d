-- version 6: a create is kept in its entry (the run and the side it was
-- created on) instead of one change-log row per record.
ALTER TABLE entries ADD COLUMN created_run {INT};
ALTER TABLE entries ADD COLUMN created_side TEXT
