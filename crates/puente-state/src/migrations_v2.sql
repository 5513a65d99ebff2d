-- version 2: credentials sealed with the operator's key (see vault.rs).
CREATE TABLE secrets (
    name TEXT PRIMARY KEY, key_id TEXT NOT NULL, nonce TEXT NOT NULL,
    sealed TEXT NOT NULL, updated_at TEXT NOT NULL
);
