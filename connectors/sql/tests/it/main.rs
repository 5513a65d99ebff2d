//! The SQL connector against real PostgreSQL, MariaDB and SQLite servers:
//! the connector contract suite, and what only tables do.

mod contract;
mod table;
