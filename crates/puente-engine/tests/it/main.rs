//! End-to-end syncs between real databases: PostgreSQL ↔ MariaDB and
//! SQLite ↔ PostgreSQL, through the engine.

mod conflicts;
mod corpus;
mod db_faults;
mod examples;
mod faults;
mod fixtures;
mod fuzz_corpus;
mod gradual;
mod hubspot;
mod two_way;
mod validate;
