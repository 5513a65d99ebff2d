//! Throwaway databases on the machine's real PostgreSQL and MariaDB servers,
//! one per test, so tests run in parallel and rerun cleanly. A server that
//! cannot be reached fails the test loudly: nothing is skipped.
//!
//! [`contract`] is the connector contract suite every connector's
//! integration tests run.

pub mod contract;

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a
/// test starts in another process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

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

/// A database for an end-to-end test, on one of the three backends.
pub enum Db {
    Pg(TestDb),
    My(TestDb),
    Lite(TempSqlite),
}

impl Db {
    pub async fn pg() -> Db {
        Db::Pg(TestDb::create(Server::Postgres, "e2e").await)
    }
    pub async fn mysql() -> Db {
        Db::My(TestDb::create(Server::Mysql, "e2e").await)
    }
    pub fn sqlite() -> Db {
        Db::Lite(TempSqlite::new("e2e"))
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Pg(d) | Db::My(d) => &d.url,
            Db::Lite(t) => &t.url,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Pg(_) => "postgres",
            Db::My(_) => "mysql",
            Db::Lite(_) => "sqlite",
        }
    }

    /// Runs statements separated by `;\n`.
    pub async fn exec(&self, sql: &str) {
        let stmts: Vec<&str> = sql
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        match self {
            Db::Pg(d) => {
                let mut c = sqlx::PgConnection::connect(&d.url).await.unwrap();
                for s in stmts {
                    c.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            Db::My(d) => {
                let mut c = sqlx::MySqlConnection::connect(&d.url).await.unwrap();
                for s in stmts {
                    c.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            Db::Lite(t) => {
                let url = format!("{}?mode=rwc", t.url);
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                for s in stmts {
                    c.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
        }
    }

    /// One text column of a query, NULL as "".
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let wrapped = match self {
            Db::My(_) => format!("SELECT CAST(x AS CHAR) FROM ({sql}) AS q"),
            Db::Pg(_) => format!("SELECT x::text FROM ({sql}) AS q"),
            Db::Lite(_) => format!("SELECT CAST(x AS TEXT) FROM ({sql}) AS q"),
        };
        let rows: Vec<Option<String>> = match self {
            Db::Pg(d) => {
                let mut c = sqlx::PgConnection::connect(&d.url).await.unwrap();
                sqlx::query_scalar(&wrapped)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Db::My(d) => {
                let mut c = sqlx::MySqlConnection::connect(&d.url).await.unwrap();
                sqlx::query_scalar(&wrapped)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Db::Lite(t) => {
                let mut c = sqlx::SqliteConnection::connect(&t.url).await.unwrap();
                sqlx::query_scalar(&wrapped)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        };
        rows.into_iter().map(Option::unwrap_or_default).collect()
    }

    pub async fn one(&self, sql: &str) -> String {
        self.strings(sql)
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.one(sql).await.parse().unwrap()
    }

    /// A contacts table named `table` with `n` rows whose e-mails are
    /// `user{i}@example.com` for i in `from..from+n` (upper-cased when `upper`).
    pub async fn contacts(&self, table: &str, from: i64, n: i64, upper: bool) {
        let email = |i: &str| match (self, upper) {
            (Db::My(_), true) => format!("CONCAT('USER', {i}, '@Example.com')"),
            (Db::My(_), false) => format!("CONCAT('user', {i}, '@example.com')"),
            (_, true) => format!("'USER' || {i} || '@Example.com'"),
            (_, false) => format!("'user' || {i} || '@example.com'"),
        };
        let ddl = match self {
            Db::Pg(_) => format!(
                "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, email TEXT, first_name VARCHAR(60), last_name VARCHAR(60),
                   stage TEXT, credit NUMERIC(12,2), updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
                 CREATE FUNCTION {table}_touch() RETURNS trigger AS $$ BEGIN NEW.updated_at = clock_timestamp(); RETURN NEW; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER {table}_touch BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_touch();
                 CREATE INDEX {table}_updated ON {table} (updated_at, id);
                 INSERT INTO {table} (email, first_name, last_name, stage, credit)
                   SELECT {}, 'First' || i, 'Last' || i, CASE WHEN i % 2 = 0 THEN 'lead' ELSE 'customer' END, (i * 10 + 0.5)::numeric
                   FROM generate_series({from}, {}) AS i",
                email("i"),
                from + n - 1
            ),
            Db::My(_) => format!(
                "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255), first_name VARCHAR(60), last_name VARCHAR(60),
                   stage ENUM('lead','customer'), credit DECIMAL(12,2),
                   updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
                   INDEX {table}_updated (updated_at, id));
                 INSERT INTO {table} (email, first_name, last_name, stage, credit)
                   SELECT {}, CONCAT('First', seq), CONCAT('Last', seq), IF(seq % 2 = 0, 'lead', 'customer'), seq * 10 + 0.5
                   FROM seq_{from}_to_{}",
                email("seq"),
                from + n - 1
            ),
            Db::Lite(_) => format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, stage TEXT, credit NUMERIC,
                   updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
                 CREATE TRIGGER {table}_touch AFTER UPDATE ON {table} WHEN NEW.updated_at = OLD.updated_at
                   BEGIN UPDATE {table} SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END;
                 WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i < {})
                 INSERT INTO {table} (email, first_name, last_name, stage, credit)
                   SELECT {}, 'First' || i, 'Last' || i, CASE WHEN i % 2 = 0 THEN 'lead' ELSE 'customer' END, i * 10 + 0.5 FROM s",
                from + n - 1,
                email("i")
            ),
        };
        self.exec(&ddl).await;
    }

    /// Lower-cased e-mails of `table` that occur more than once.
    pub async fn duplicates(&self, table: &str) -> Vec<String> {
        self.strings(&format!(
            "SELECT LOWER(email) AS x FROM {table} GROUP BY LOWER(email) HAVING COUNT(*) > 1"
        ))
        .await
    }
}

/// The config of a sync named `contacts` between two tables made by
/// [`Db::contacts`]: `people` on a, `contacts` on b, matched by e-mail, five
/// fields, cursors on `updated_at`, state in `state.db` beside the config.
/// `extra` holds more lines of the sync (before its endpoints);
/// `endpoint` more keys of each endpoint (`overlap_secs = 0`).
pub fn contacts_config(a: &Db, b: &Db, direction: &str, extra: &str, endpoint: &str) -> String {
    let more = if endpoint.is_empty() {
        String::new()
    } else {
        format!(", {endpoint}")
    };
    format!(
        r#"[state]
url = "sqlite://state.db"

[connections.left]
kind = "{ak}"
url = "{au}"

[connections.right]
kind = "{bk}"
url = "{bu}"

[[syncs]]
name = "contacts"
direction = "{direction}"
{extra}
a = {{ connection = "left", object = "people", cursor = "updated_at"{more} }}
b = {{ connection = "right", object = "contacts", cursor = "updated_at"{more} }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first_name", b = "first_name" }},
  {{ a = "last_name", b = "last_name" }},
  {{ a = "stage", b = "stage" }},
  {{ a = "credit", b = "credit" }},
]
"#,
        ak = a.kind(),
        au = a.url(),
        bk = b.kind(),
        bu = b.url()
    )
}
