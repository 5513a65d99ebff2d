//! `kind = "postgres" | "mysql" | "mariadb" | "sqlite"`: the connection's
//! table, checked, and how it connects.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use puente_core::config::{
    anchor_sqlite, ConnectContext, ConnectionConfig, ConnectorKind, Key, KeyType, Table,
};
use puente_core::{Connector, ConnectorError};

use crate::{redact, SqlConnector, DEFAULT_LOCK_TIMEOUT};

/// The SQL databases, as a connector kind.
pub struct SqlKind;

/// The SQL kind, for the engine's list of connectors.
pub static KIND: SqlKind = SqlKind;

const KEYS: &[Key] = &[
    Key::new(
        "url",
        KeyType::Secret,
        "the database: postgres://user@host/db, mysql://… (or mariadb://…), sqlite://path (relative to the config file); a password belongs in { env = \"VAR\" } or { vault = \"NAME\" }",
    )
    .required(),
    Key::new(
        "lock_timeout_secs",
        KeyType::Number,
        "how long a write waits for a row or table lock another transaction holds (default 10); then that row fails (category server, retried next pass) and the rest of its batch goes on",
    ),
];

impl ConnectorKind for SqlKind {
    fn names(&self) -> &'static [&'static str] {
        &["postgres", "mysql", "mariadb", "sqlite"]
    }

    fn about(&self) -> &'static str {
        "PostgreSQL, MySQL/MariaDB and SQLite tables, or read-only queries"
    }

    fn keys(&self) -> &'static [Key] {
        KEYS
    }

    fn configure(&self, kind: &str, t: &mut Table<'_, '_>) -> Option<Arc<dyn ConnectionConfig>> {
        if !t.has("url") {
            let message = format!("{} has no url", t.label);
            t.err(
                None,
                message,
                Some(format!(
                    "add url = \"{kind}://…\" or url = {{ env = \"VAR\" }}"
                )),
            );
            return None;
        }
        let url = t.secret("url")?;
        let expected = if kind == "mariadb" { "mysql" } else { kind };
        let scheme_ok = url.starts_with(&format!("{expected}:"))
            || (kind == "postgres" && url.starts_with("postgresql:"))
            || (expected == "mysql" && url.starts_with("mariadb:"));
        if !scheme_ok {
            let message = format!(
                "{} is kind {kind} but its url does not start with {expected}://",
                t.label
            );
            t.err(
                Some("url"),
                message,
                Some("make the kind and the url agree".to_string()),
            );
        }
        let lock_timeout = match t.number("lock_timeout_secs") {
            None => DEFAULT_LOCK_TIMEOUT,
            Some(s) if s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(_) => {
                let message = format!(
                    "{}: lock_timeout_secs must be above 0 and at most 3600",
                    t.label
                );
                t.err(
                    Some("lock_timeout_secs"),
                    message,
                    Some("write lock_timeout_secs = 10".to_string()),
                );
                DEFAULT_LOCK_TIMEOUT
            }
        };
        Some(Arc::new(SqlConfig {
            kind: kind.to_string(),
            url: anchor_sqlite(&url, t.base()),
            lock_timeout,
        }))
    }
}

/// A database connection's settings.
#[derive(Clone)]
pub struct SqlConfig {
    pub kind: String,
    pub url: String,
    pub lock_timeout: Duration,
}

impl std::fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log: the URL's password is masked.
        f.debug_struct("SqlConfig")
            .field("kind", &self.kind)
            .field("url", &redact(&self.url))
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

#[async_trait]
impl ConnectionConfig for SqlConfig {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn connect(&self, _ctx: ConnectContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(
            SqlConnector::connect_with(&self.url, self.lock_timeout).await?,
        ))
    }
}
