-- version 8: field names kept once per layout (a's and b's names), not in
-- every entry. An entry with a layout stores its seen values by position;
-- the entries written before keep theirs, with names, until next written.
CREATE TABLE layouts (id {PK}, names TEXT NOT NULL);
CREATE UNIQUE INDEX layouts_names ON layouts (names);
ALTER TABLE entries ADD COLUMN layout {INT}
;
-- Most links have one key on both sides, stored once in key_a (key_b holds
-- a mark): the index on key_b leaves those out, and its lookups say so.
DROP INDEX IF EXISTS entries_key_b;
CREATE INDEX entries_key_b ON entries (sync, key_b) WHERE key_b <> {SAME_KEY}
