//! Throwaway databases on the machine's real PostgreSQL and MariaDB servers,
//! one per test, so tests run in parallel and rerun cleanly. A server that
//! cannot be reached fails the test loudly: nothing is skipped.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The admin URL of the PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("PUENTE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The admin URL of the MySQL/MariaDB server tests use.
pub fn mysql_admin_url() -> String {
    std::env::var("PUENTE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    Mysql,
}

/// A database created for one test and dropped when the guard goes.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    server: Server,
    keep: bool,
}

fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("pt_{prefix}_{}_{n}_{}", std::process::id(), &rand[..8])
}

fn replace_db(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base.rfind('/').expect("database url has a path");
    format!("{}/{name}{query}", &base[..cut])
}

async fn admin(server: Server, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    match server {
        Server::Postgres => {
            let mut c = sqlx::PgConnection::connect(&pg_admin_url()).await?;
            sqlx::query(sql).execute(&mut c).await?;
            c.close().await
        }
        Server::Mysql => {
            let mut c = sqlx::MySqlConnection::connect(&mysql_admin_url()).await?;
            sqlx::query(sql).execute(&mut c).await?;
            c.close().await
        }
    }
}

impl TestDb {
    /// Creates a fresh database on `server`; panics with the reason (and what
    /// to run) when the server cannot be reached.
    pub async fn create(server: Server, prefix: &str) -> TestDb {
        let name = unique_name(prefix);
        let (admin_url, sql) = match server {
            Server::Postgres => (pg_admin_url(), format!("CREATE DATABASE \"{name}\"")),
            Server::Mysql => (
                mysql_admin_url(),
                format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
            ),
        };
        if let Err(e) = admin(server, &sql).await {
            panic!(
                "cannot create a test database on {server:?} at {admin_url}: {e}\n\
                 the test command (scripts/test.sh) installs and starts PostgreSQL and MariaDB; run it, or start the server"
            );
        }
        TestDb {
            url: replace_db(&admin_url, &name),
            name,
            server,
            keep: std::env::var_os("PUENTE_KEEP_TEST_DBS").is_some(),
        }
    }

    pub fn server(&self) -> Server {
        self.server
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let sql = match self.server {
            Server::Postgres => format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            Server::Mysql => format!("DROP DATABASE IF EXISTS `{}`", self.name),
        };
        let server = self.server;
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _ = rt.block_on(admin(server, &sql));
        })
        .join();
    }
}

/// A temporary directory holding an SQLite file; the URL creates it.
pub struct TempSqlite {
    pub dir: std::path::PathBuf,
    pub url: String,
}

impl TempSqlite {
    pub fn new(name: &str) -> TempSqlite {
        let dir = std::env::temp_dir().join(unique_name(name));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}/{name}.db", dir.display());
        TempSqlite { dir, url }
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
