use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions, MySqlPool, PgPool, SqlitePool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    Mysql,
    Sqlite,
}

impl Flavor {
    pub fn from_url(url: &str) -> Option<Flavor> {
        let scheme = url.split("://").next()?.split(':').next()?;
        Some(match scheme {
            "postgres" | "postgresql" => Flavor::Postgres,
            "mysql" | "mariadb" => Flavor::Mysql,
            "sqlite" => Flavor::Sqlite,
            _ => return None,
        })
    }

    pub fn kind(self) -> &'static str {
        match self {
            Flavor::Postgres => "postgres",
            Flavor::Mysql => "mysql",
            Flavor::Sqlite => "sqlite",
        }
    }

    /// Quotes an identifier (`schema.table` quoted part by part).
    pub fn quote(self, ident: &str) -> String {
        ident
            .split('.')
            .map(|part| match self {
                Flavor::Mysql => format!("`{}`", part.replace('`', "``")),
                _ => format!("\"{}\"", part.replace('"', "\"\"")),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The `n`th (1-based) bind placeholder. SQLite gets anonymous `?`:
    /// numbered ones are looked up by name, which is quadratic in wide
    /// statements. Statements bind in placeholder order, never reusing one.
    pub fn ph(self, n: usize) -> String {
        match self {
            Flavor::Postgres => format!("${n}"),
            Flavor::Mysql | Flavor::Sqlite => "?".to_string(),
        }
    }

    /// Most bind parameters one statement may carry.
    pub fn max_params(self) -> usize {
        match self {
            Flavor::Postgres => 65_000,
            Flavor::Mysql => 60_000,
            Flavor::Sqlite => 30_000,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Pool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

impl Pool {
    pub async fn connect(
        flavor: Flavor,
        url: &str,
        lock_timeout: Duration,
    ) -> Result<Pool, sqlx::Error> {
        let timeout = Duration::from_secs(15);
        let lock_ms = lock_timeout.as_millis().max(1);
        Ok(match flavor {
            Flavor::Postgres => {
                let o = PgConnectOptions::from_str(url)?
                    .options([("lock_timeout", format!("{lock_ms}ms"))])
                    .disable_statement_logging();
                // One direct attempt first: a refused or rejected connection
                // fails at once instead of after the pool's retries.
                o.connect().await?;
                Pool::Pg(
                    PgPoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(timeout)
                        .connect_with(o)
                        .await?,
                )
            }
            Flavor::Mysql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let o = MySqlConnectOptions::from_str(&url)?.disable_statement_logging();
                o.connect().await?;
                // InnoDB counts whole seconds.
                let lock_secs = lock_timeout.as_secs().max(1);
                Pool::My(
                    MySqlPoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(timeout)
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                sqlx::query(&format!(
                                    "SET SESSION innodb_lock_wait_timeout = {lock_secs}"
                                ))
                                .execute(conn)
                                .await?;
                                Ok(())
                            })
                        })
                        .connect_with(o)
                        .await?,
                )
            }
            Flavor::Sqlite => {
                let o = SqliteConnectOptions::from_str(url)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(lock_timeout)
                    .disable_statement_logging();
                Pool::Lite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(timeout)
                        .connect_with(o)
                        .await?,
                )
            }
        })
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Pool::Pg(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
            Pool::My(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
            Pool::Lite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
        }
    }
}
