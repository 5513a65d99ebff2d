//! Tables on the real servers and a config that syncs them.

use std::path::PathBuf;

use puente_engine::{config, Engine, RunOptions, SyncReport};
use puente_testkit::{Server, TempSqlite, TestDb};
use sqlx::{Connection, Executor};

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
                 INSERT INTO {table} (email, first_name, last_name, stage, credit)
                   SELECT {}, 'First' || i, 'Last' || i, CASE WHEN i % 2 = 0 THEN 'lead' ELSE 'customer' END, (i * 10 + 0.5)::numeric
                   FROM generate_series({from}, {}) AS i",
                email("i"),
                from + n - 1
            ),
            Db::My(_) => format!(
                "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255), first_name VARCHAR(60), last_name VARCHAR(60),
                   stage ENUM('lead','customer'), credit DECIMAL(12,2),
                   updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));
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
}

pub struct Pair {
    pub a: Db,
    pub b: Db,
    pub dir: PathBuf,
    pub engine: Engine,
}

pub fn config_text(a: &Db, b: &Db, extra: &str) -> String {
    format!(
        r#"
[state]
url = "sqlite://state.db"

[connections.left]
kind = "{ak}"
url = "{au}"

[connections.right]
kind = "{bk}"
url = "{bu}"

[[syncs]]
name = "contacts"
direction = "two-way"
winner = "a"
delete_check_interval_secs = 0
a = {{ connection = "left", object = "people", cursor = "updated_at" }}
b = {{ connection = "right", object = "contacts", cursor = "updated_at" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first_name", b = "first_name" }},
  {{ a = "last_name", b = "last_name" }},
  {{ a = "stage", b = "stage" }},
  {{ a = "credit", b = "credit" }},
]
{extra}
"#,
        ak = a.kind(),
        au = a.url(),
        bk = b.kind(),
        bu = b.url()
    )
}

impl Pair {
    pub async fn new(a: Db, b: Db, extra: &str) -> Pair {
        let text = config_text(&a, &b, extra);
        Pair::with_config(a, b, &text).await
    }

    pub async fn with_config(a: Db, b: Db, text: &str) -> Pair {
        let dir = std::env::temp_dir().join(format!("puente-e2e-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("puente.toml");
        let text = text.to_string();
        std::fs::write(&path, &text).unwrap();
        let cfg = config::parse(&text, &path).unwrap_or_else(|d| panic!("{d:?}"));
        let engine = Engine::open(cfg).await.unwrap();
        Pair { a, b, dir, engine }
    }

    pub async fn run(&self) -> SyncReport {
        self.run_with(RunOptions::default()).await
    }

    pub async fn run_with(&self, opts: RunOptions) -> SyncReport {
        let def = self.engine.config.syncs[0].clone();
        self.engine
            .run(&def, &opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{t}-{n}", std::process::id())
}

/// Lower-cased e-mails that occur more than once.
pub async fn duplicates(db: &Db, table: &str) -> Vec<String> {
    db.strings(&format!(
        "SELECT LOWER(email) AS x FROM {table} GROUP BY LOWER(email) HAVING COUNT(*) > 1"
    ))
    .await
}
