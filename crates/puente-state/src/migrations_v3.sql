-- version 3: one pass of a sync at a time, across processes (see lease.rs).
-- expires_ms is the state store's own clock in milliseconds since the epoch,
-- so the clocks of the machines that share the store do not matter. node
-- and pid_start let a process on the same machine see that the holder died.
CREATE TABLE leases (
    sync TEXT PRIMARY KEY, token TEXT NOT NULL, host TEXT NOT NULL, pid {INT} NOT NULL,
    command TEXT NOT NULL, started_at TEXT NOT NULL, renewed_at TEXT NOT NULL,
    expires_ms {INT} NOT NULL, node TEXT, pid_start {INT}
);
