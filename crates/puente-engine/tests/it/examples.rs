//! Every config in examples/ is exercised: parsed and checked, and the
//! self-contained ones run end to end.

use std::path::{Path, PathBuf};

use puente_engine::{config, Engine, RunOptions};
use sqlx::{Connection, Executor, SqliteConnection};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

async fn sqlite(dir: &Path, file: &str, sql: &str) {
    let url = format!("sqlite://{}/{file}?mode=rwc", dir.display());
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    for s in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        c.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

async fn query(dir: &Path, file: &str, sql: &str) -> Vec<String> {
    let url = format!("sqlite://{}/{file}", dir.display());
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
}

async fn engine_for(example_name: &str, dir: &Path) -> Engine {
    let path = dir.join("puente.toml");
    std::fs::copy(example(example_name), &path).unwrap();
    crate::fixtures::open_engine(&path).await
}

const TOUCH: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

#[tokio::test]
async fn the_postgres_mariadb_example_is_valid() {
    std::env::set_var("BOOKS_DATABASE_URL", "mysql://root@127.0.0.1:3306/test");
    let c = config::load(&example("postgres-mariadb.toml"))
        .await
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(c.syncs[0].name, "customers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companies_and_contacts_children_wait_for_their_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite(
        dir,
        "crm.db",
        &format!(
            "CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT NOT NULL, domain TEXT, updated_at TEXT NOT NULL DEFAULT ({TOUCH}));
             CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT, company_id INTEGER REFERENCES companies(id), updated_at TEXT NOT NULL DEFAULT ({TOUCH}));
             INSERT INTO companies (name, domain) VALUES ('Acme', 'acme.com'), ('Globex', 'globex.io');
             INSERT INTO contacts (email, name, company_id) VALUES ('ann@acme.com', 'Ann', 1), ('bob@globex.io', 'Bob', 2), ('cy@free.org', 'Cy', NULL)"
        ),
    )
    .await;
    sqlite(
        dir,
        "erp.db",
        &format!(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, account_name TEXT NOT NULL, website TEXT, modified TEXT NOT NULL DEFAULT ({TOUCH}));
             CREATE TABLE people (id INTEGER PRIMARY KEY, mail TEXT, full_name TEXT, account_id INTEGER REFERENCES accounts(id), modified TEXT NOT NULL DEFAULT ({TOUCH}));
             INSERT INTO accounts (account_name, website) VALUES ('Globex Corp', 'https://www.globex.io/')"
        ),
    )
    .await;
    let e = engine_for("companies-and-contacts.toml", dir).await;
    assert_eq!(e.config.syncs[0].name, "companies", "parents run first");
    let companies = e.config.sync("companies").unwrap().clone();
    let contacts = e.config.sync("contacts").unwrap().clone();

    // Contacts first: the two with a company wait, the third is written.
    let r = e.run(&contacts, &RunOptions::default()).await.unwrap();
    assert_eq!((r.b.created, r.waiting), (1, 2), "{r:?}");
    let rows = e.state.records(&Default::default()).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.reason.as_deref() == Some("waiting on companies a:1")),
        "{rows:?}"
    );

    // Companies: Globex is matched by domain (not duplicated), Acme created.
    let r = e.run(&companies, &RunOptions::default()).await.unwrap();
    assert_eq!((r.b.created, r.b.updated), (1, 1), "{r:?}");
    assert_eq!(
        query(dir, "erp.db", "SELECT website FROM accounts ORDER BY id").await,
        ["https://globex.io", "https://acme.com"]
    );

    // Contacts again: the waiting ones are written, linked to the right accounts.
    let r = e.run(&contacts, &RunOptions::default()).await.unwrap();
    assert_eq!((r.b.created, r.waiting), (2, 0), "{r:?}");
    let links = query(
        dir,
        "erp.db",
        "SELECT p.mail || '→' || a.account_name FROM people p JOIN accounts a ON a.id = p.account_id ORDER BY p.mail",
    )
    .await;
    assert_eq!(links, ["ann@acme.com→Acme", "bob@globex.io→Globex"]);

    // A link changed on its own is synced: Cy joins Acme in the ERP.
    sqlite(dir, "erp.db", "UPDATE people SET account_id = 2, modified = strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 second') WHERE mail = 'cy@free.org'").await;
    let r = e.run(&contacts, &RunOptions::default()).await.unwrap();
    assert_eq!(r.a.updated, 1, "{r:?}");
    assert_eq!(
        query(
            dir,
            "crm.db",
            "SELECT CAST(company_id AS TEXT) FROM contacts WHERE email = 'cy@free.org'"
        )
        .await,
        ["1"]
    );

    // Converged: the transforms round-trip, nothing more to write.
    for def in [&companies, &contacts] {
        let r = e.run(def, &RunOptions::default()).await.unwrap();
        assert_eq!(
            r.a.updated + r.b.updated + r.a.created + r.b.created,
            0,
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_export_follows_its_filter_and_propagates_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite(
        dir,
        "shop.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, name TEXT, credit NUMERIC, active INTEGER);
         INSERT INTO customers (email, name, credit, active) VALUES
           ('ann@x.com', 'Ann, \"the first\"', 10.5, 1), ('bob@x.com', 'Bob', 20, 0), ('cy@x.com', 'Cy', 30.25, 1)",
    )
    .await;
    let e = engine_for("csv-export.toml", dir).await;
    let def = e.config.syncs[0].clone();
    let r = e.run(&def, &RunOptions::default()).await.unwrap();
    assert_eq!((r.b.created, r.excluded), (2, 1), "{r:?}");
    let csv = std::fs::read_to_string(dir.join("customers.csv")).unwrap();
    assert!(
        csv.starts_with("id,email,name,credit\n"),
        "columns follow the mapping: {csv}"
    );
    assert!(
        csv.contains(",ann@x.com,\"Ann, \"\"the first\"\"\",10.5\n"),
        "{csv}"
    );
    assert!(!csv.contains("bob@x.com"), "{csv}");
    sqlite(
        dir,
        "shop.db",
        "DELETE FROM customers WHERE email = 'cy@x.com'",
    )
    .await;
    let r = e.run(&def, &RunOptions::default()).await.unwrap();
    assert_eq!(r.b.deleted, 1, "{r:?}");
    let csv = std::fs::read_to_string(dir.join("customers.csv")).unwrap();
    assert!(!csv.contains("cy@x.com"), "{csv}");
}
