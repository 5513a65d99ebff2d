//! The connector contract suite on PostgreSQL, MariaDB and SQLite: a table
//! with a unique e-mail, a required label and an `updated_at` cursor column
//! kept by the database, changed out of band by plain SQL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use puente_core::{Connector, FailureCategory, Fields, ObjectSpec, Value};
use puente_sql::SqlConnector;
use puente_testkit::contract::{self, Applies, BadCredentials, Fault, Harness, Invalid, Valid};
use puente_testkit::Db;

struct Sql {
    db: Db,
    /// Each reset makes a new table: `contract_1`, `contract_2`, …
    table: Mutex<String>,
    resets: AtomicUsize,
    /// Records created out of band since the reset (`oob{n}@example.com`).
    created: AtomicUsize,
}

impl Sql {
    fn new(db: Db) -> Sql {
        Sql {
            db,
            table: Mutex::new(String::new()),
            resets: AtomicUsize::new(0),
            created: AtomicUsize::new(0),
        }
    }

    fn table(&self) -> String {
        self.table.lock().unwrap().clone()
    }

    fn ddl(&self, t: &str) -> String {
        match self.db {
            Db::Pg(_) => format!(
                "CREATE TABLE {t} (id BIGSERIAL PRIMARY KEY, email VARCHAR(80) NOT NULL UNIQUE, label VARCHAR(40) NOT NULL,
                   updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
                 CREATE FUNCTION {t}_touch() RETURNS trigger AS $$ BEGIN NEW.updated_at = clock_timestamp(); RETURN NEW; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER {t}_touch BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_touch()"
            ),
            Db::My(_) => format!(
                "CREATE TABLE {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(80) NOT NULL UNIQUE, label VARCHAR(40) NOT NULL,
                   updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
            ),
            Db::Lite(_) => format!(
                "CREATE TABLE {t} (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, label TEXT NOT NULL,
                   updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
                 CREATE TRIGGER {t}_touch AFTER UPDATE ON {t} WHEN NEW.updated_at = OLD.updated_at
                   BEGIN UPDATE {t} SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END"
            ),
        }
    }

    /// The database's URL with other credentials.
    fn url_as(&self, user: &str, password: &str) -> String {
        let url = self.db.url();
        let (scheme, rest) = url.split_once("://").expect("a url");
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        format!("{scheme}://{user}:{password}@{rest}")
    }
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An id as the table holds it (numeric), so it can sit in SQL text.
fn numeric(id: &str) -> &str {
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "id {id:?}");
    id
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::text(*v)))
        .collect()
}

#[async_trait]
impl Harness for Sql {
    fn name(&self) -> String {
        format!("{} (a table with an updated_at cursor)", self.db.kind())
    }

    async fn reset(&self) {
        let n = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        let t = format!("contract_{n}");
        self.db.exec(&self.ddl(&t)).await;
        *self.table.lock().unwrap() = t;
        self.created.store(0, Ordering::Relaxed);
    }

    async fn connect(&self) -> Arc<dyn Connector> {
        Arc::new(SqlConnector::connect(self.db.url()).await.unwrap())
    }

    fn spec(&self, page_size: usize) -> ObjectSpec {
        ObjectSpec {
            object: self.table(),
            cursor: Some("updated_at".into()),
            overlap_secs: 0,
            page_size,
            ..ObjectSpec::default()
        }
    }

    fn label_field(&self) -> &str {
        "label"
    }

    async fn create(&self, labels: &[String]) -> Vec<String> {
        let t = self.table();
        let from = self.created.fetch_add(labels.len(), Ordering::Relaxed);
        let emails: Vec<String> = (from..from + labels.len())
            .map(|n| quoted(&format!("oob{n}@example.com")))
            .collect();
        let rows: Vec<String> = emails
            .iter()
            .zip(labels)
            .map(|(e, l)| format!("({e}, {})", quoted(l)))
            .collect();
        self.db
            .exec(&format!(
                "INSERT INTO {t} (email, label) VALUES {}",
                rows.join(", ")
            ))
            .await;
        // One INSERT numbers its rows in order.
        let mut ids: Vec<i64> = self
            .db
            .strings(&format!(
                "SELECT id AS x FROM {t} WHERE email IN ({})",
                emails.join(", ")
            ))
            .await
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|i| i.to_string()).collect()
    }

    async fn change(&self, id: &str, label: &str) {
        self.db
            .exec(&format!(
                "UPDATE {} SET label = {} WHERE id = {}",
                self.table(),
                quoted(label),
                numeric(id)
            ))
            .await;
    }

    async fn delete(&self, id: &str) -> Applies<()> {
        self.db
            .exec(&format!(
                "DELETE FROM {} WHERE id = {}",
                self.table(),
                numeric(id)
            ))
            .await;
        Applies::Yes(())
    }

    fn valid(&self, n: usize) -> Applies<Valid> {
        let email = format!("new{n}@example.com");
        Applies::Yes(Valid {
            fields: fields(&[("email", &email), ("label", &format!("new {n}"))]),
            key: vec![("email".into(), Value::text(email))],
        })
    }

    fn invalid(&self) -> Applies<Vec<Invalid>> {
        Applies::Yes(vec![
            // The database refuses it (NOT NULL without a default), so the
            // batch's transaction fails and is retried row by row.
            Invalid {
                fields: fields(&[("email", "nolabel@example.com")]),
                field: "label".into(),
                category: FailureCategory::Validation,
            },
            // The e-mail of the first record made out of band.
            Invalid {
                fields: fields(&[("email", "oob0@example.com"), ("label", "a copy")]),
                field: "email".into(),
                category: FailureCategory::Duplicate,
            },
        ])
    }

    fn upsert(&self) -> Applies<()> {
        Applies::Not("a create is an INSERT: made again, it fails as a duplicate of the unique e-mail; the engine looks a lost create up by its match key before creating it again")
    }

    async fn arm(&self, fault: Fault) -> Applies<()> {
        Applies::Not(match fault {
            Fault::LostAnswer => "a database answers a write on the connection that sent it; losing that answer after the commit would take a proxy",
            Fault::RateLimited => "a database has no request rate limit",
            Fault::ServerErrors | Fault::ServerDown => {
                "a database answers with no HTTP status; a server gone away is an Unreachable error"
            }
        })
    }

    async fn bad_credentials(&self) -> Applies<BadCredentials> {
        let secret = "contract-wrong-password".to_string();
        let url = match self.db {
            // The test server trusts local connections whatever the
            // password, so an unknown role is what it refuses.
            Db::Pg(_) => self.url_as("puente_contract_nobody", &secret),
            Db::My(_) => self.url_as("root", &secret),
            Db::Lite(_) => return Applies::Not("an SQLite file has no credentials"),
        };
        let result = SqlConnector::connect(&url).await.map(|_| ());
        Applies::Yes(BadCredentials { result, secret })
    }
}

#[tokio::test]
async fn the_contract_holds_on_postgres() {
    contract::run(&Sql::new(Db::pg().await)).await;
}

#[tokio::test]
async fn the_contract_holds_on_mariadb() {
    contract::run(&Sql::new(Db::mysql().await)).await;
}

#[tokio::test]
async fn the_contract_holds_on_sqlite() {
    contract::run(&Sql::new(Db::sqlite())).await;
}
