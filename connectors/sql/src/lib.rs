//! PostgreSQL, MySQL/MariaDB and SQLite tables (or read-only named queries)
//! as Puente objects, through sqlx: primary keys discovered, incremental reads
//! by a cursor column with an overlap window, deletes found by key diff,
//! writes in transactions and batches, with bound parameters only.

mod backend;
mod column;
pub mod config;
mod error;
mod table;

use std::sync::Arc;

use async_trait::async_trait;
use puente_core::{Connector, ConnectorError, Object, ObjectSpec};

pub use backend::Flavor;
use backend::Pool;
pub use config::{SqlConfig, KIND};

/// One database connection (a pool).
pub struct SqlConnector {
    pool: Pool,
    flavor: Flavor,
    /// MariaDB answers `INSERT … RETURNING`; MySQL does not.
    returning: bool,
    url_redacted: String,
}

impl SqlConnector {
    /// Connects to `url` (`postgres://`, `mysql://`/`mariadb://`, `sqlite://`)
    /// with the default lock timeout.
    pub async fn connect(url: &str) -> Result<SqlConnector, ConnectorError> {
        SqlConnector::connect_with(url, DEFAULT_LOCK_TIMEOUT).await
    }

    /// Connects; a statement waiting longer than `lock_timeout` for a lock
    /// another transaction holds gives up, so one locked row fails alone
    /// instead of stalling the run.
    pub async fn connect_with(
        url: &str,
        lock_timeout: std::time::Duration,
    ) -> Result<SqlConnector, ConnectorError> {
        let flavor = Flavor::from_url(url).ok_or_else(|| {
            ConnectorError::config(format!(
                "{}: not a database url; expected postgres://, mysql:// or sqlite://",
                redact(url)
            ))
        })?;
        let pool = Pool::connect(flavor, url, lock_timeout)
            .await
            .map_err(|e| error::connect_error(&redact(url), e))?;
        let returning = match &pool {
            Pool::My(p) => {
                let v: String = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(p)
                    .await
                    .map_err(|e| error::connect_error(&redact(url), e))?;
                v.to_ascii_lowercase().contains("mariadb")
            }
            _ => true,
        };
        Ok(SqlConnector {
            pool,
            flavor,
            returning,
            url_redacted: redact(url),
        })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
}

/// How long a statement waits for a row or table lock by default.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[async_trait]
impl Connector for SqlConnector {
    fn kind(&self) -> &'static str {
        self.flavor.kind()
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        self.pool
            .ping()
            .await
            .map_err(|e| error::connect_error(&self.url_redacted, e))
    }

    async fn open(&self, spec: &ObjectSpec) -> Result<Arc<dyn Object>, ConnectorError> {
        let t = table::SqlTable::open(self.pool.clone(), self.flavor, self.returning, spec).await?;
        Ok(Arc::new(t))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
