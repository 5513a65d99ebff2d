-- version 1. {PK} is the auto-increment primary key, {INT} a 64-bit integer.
CREATE TABLE IF NOT EXISTS puente_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id {PK}, sync TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, dry_run {INT} NOT NULL, counts TEXT, error TEXT
);
CREATE INDEX runs_sync ON runs (sync, id);
CREATE TABLE entries (
    id {PK}, sync TEXT NOT NULL, a_id TEXT, b_id TEXT, key_a TEXT, key_b TEXT,
    seen_a TEXT, seen_b TEXT,
    deleted_a {INT} NOT NULL DEFAULT 0, deleted_b {INT} NOT NULL DEFAULT 0,
    echo_a {INT} NOT NULL DEFAULT 0, echo_b {INT} NOT NULL DEFAULT 0,
    status TEXT NOT NULL, reason TEXT, category TEXT, message TEXT, hint TEXT,
    attempts {INT} NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, deleted_at TEXT
);
CREATE UNIQUE INDEX entries_a ON entries (sync, a_id) WHERE a_id IS NOT NULL;
CREATE UNIQUE INDEX entries_b ON entries (sync, b_id) WHERE b_id IS NOT NULL;
CREATE INDEX entries_key_a ON entries (sync, key_a);
CREATE INDEX entries_key_b ON entries (sync, key_b);
CREATE INDEX entries_status ON entries (sync, status);
CREATE TABLE cursors (
    sync TEXT NOT NULL, side TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (sync, side)
);
CREATE TABLE intents (
    id {PK}, sync TEXT NOT NULL, side TEXT NOT NULL, entry_id {INT}, source_id TEXT NOT NULL,
    conditions TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, batch TEXT NOT NULL
);
CREATE INDEX intents_batch ON intents (batch);
CREATE TABLE changes (
    id {PK}, run_id {INT} NOT NULL, sync TEXT NOT NULL, a_id TEXT, b_id TEXT,
    side TEXT NOT NULL, field TEXT NOT NULL, old TEXT, new TEXT, at TEXT NOT NULL
);
CREATE INDEX changes_a ON changes (sync, a_id);
CREATE INDEX changes_b ON changes (sync, b_id);
CREATE TABLE conflicts (
    id {PK}, sync TEXT NOT NULL, entry_id {INT} NOT NULL, field_a TEXT NOT NULL, field_b TEXT NOT NULL,
    value_a TEXT, value_b TEXT, created_at TEXT NOT NULL, state TEXT NOT NULL,
    resolution TEXT, resolved_at TEXT
);
CREATE UNIQUE INDEX conflicts_open ON conflicts (entry_id, field_a) WHERE state <> 'applied';
CREATE INDEX conflicts_sync ON conflicts (sync, state);
