//! `puente demo`: a self-contained, offline tour. Two SQLite databases (a
//! shop's customers and a bookkeeping system's clients) are seeded with
//! realistic data — records to match rather than duplicate, an invalid
//! e-mail, a picklist value with no mapping — synced both ways, edited on
//! both sides (a conflict), a record deleted, and synced again.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result};
use puente_engine::{config, Engine};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

const CONFIG: &str = r#"# Written by `puente demo`: two SQLite databases kept in sync both ways.
[state]
url = "sqlite://state.db"

[connections.shop]
kind = "sqlite"
url = "sqlite://shop.db"

[connections.books]
kind = "sqlite"
url = "sqlite://books.db"

[[syncs]]
name = "customers"
direction = "two-way"
winner = "a"
delete_check_interval_secs = 0
a = { connection = "shop", object = "customers", cursor = "updated_at", overlap_secs = 5 }
b = { connection = "books", object = "clients", cursor = "updated_at", overlap_secs = 5 }
match = [{ a = "email", b = "email_address" }]
fields = [
  { a = "email", b = "email_address" },
  { a = "first_name", b = "given_name" },
  { a = "last_name", b = "family_name" },
  { a = "stage", b = "status", values = { lead = "L", customer = "C", churned = "X" } },
  { a = "phone", b = "phone", direction = "a-to-b" },
  { a = "credit_limit", b = "credit" },
]
"#;

const FIRST: [&str; 12] = [
    "Ana", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Gustavo", "Hana", "Ivan", "Jamal", "Keiko",
    "Lars",
];
const LAST: [&str; 10] = [
    "Silva", "Okafor", "Nakamura", "Novak", "Haddad", "Larsen", "Moreau", "Kowalski", "Ibarra",
    "Tanaka",
];

async fn open(path: &Path) -> Result<SqliteConnection> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .disable_statement_logging()
        .connect()
        .await?)
}

async fn exec(c: &mut SqliteConnection, sql: &str) -> Result<()> {
    for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt)
            .execute(&mut *c)
            .await
            .with_context(|| stmt.to_string())?;
    }
    Ok(())
}

async fn seed(dir: &Path) -> Result<()> {
    let mut shop = open(&dir.join("shop.db")).await?;
    exec(
        &mut shop,
        "CREATE TABLE customers (
            id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT,
            stage TEXT, phone TEXT, credit_limit NUMERIC,
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
         CREATE TRIGGER customers_touch AFTER UPDATE ON customers WHEN NEW.updated_at = OLD.updated_at
         BEGIN UPDATE customers SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END",
    )
    .await?;
    let mut books = open(&dir.join("books.db")).await?;
    exec(
        &mut books,
        "CREATE TABLE clients (
            id INTEGER PRIMARY KEY, email_address TEXT, given_name TEXT, family_name TEXT,
            status TEXT CHECK (status IN ('L', 'C', 'X')), phone TEXT, credit NUMERIC,
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
         CREATE TRIGGER clients_touch AFTER UPDATE ON clients WHEN NEW.updated_at = OLD.updated_at
         BEGIN UPDATE clients SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END",
    )
    .await?;
    let stages = ["lead", "customer", "customer", "churned"];
    let codes = ["L", "C", "C", "X"];
    // 240 customers in the shop, 160 clients in the books; 60 people are in
    // both (written differently: upper-case e-mails, other first names).
    for i in 0..240 {
        let (f, l) = (FIRST[i % FIRST.len()], LAST[i % LAST.len()]);
        let email = match i {
            7 => "not-an-email".to_string(),
            _ => format!("{}.{}{}@example.com", f.to_lowercase(), l.to_lowercase(), i),
        };
        let stage = if i == 11 {
            "vip"
        } else {
            stages[i % stages.len()]
        };
        sqlx::query("INSERT INTO customers (email, first_name, last_name, stage, phone, credit_limit) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(email)
            .bind(f)
            .bind(l)
            .bind(stage)
            .bind(format!("+47 22 {:02} {:02} {:02}", i % 100, (i * 7) % 100, (i * 13) % 100))
            .bind(format!("{}.50", 1000 + i * 25))
            .execute(&mut shop)
            .await?;
    }
    for j in 0..160 {
        let i = j + 180; // 180..239 overlap with the shop
        let (f, l) = (FIRST[(i + 3) % FIRST.len()], LAST[i % LAST.len()]);
        let email = format!(
            "{}.{}{}@Example.com",
            FIRST[i % FIRST.len()].to_uppercase(),
            l.to_lowercase(),
            i
        );
        sqlx::query("INSERT INTO clients (email_address, given_name, family_name, status, credit) VALUES (?, ?, ?, ?, ?)")
            .bind(email)
            .bind(if i < 240 { FIRST[i % FIRST.len()] } else { f })
            .bind(l)
            .bind(codes[i % codes.len()])
            .bind(format!("{}", 500 + j * 10))
            .execute(&mut books)
            .await?;
    }
    shop.close().await?;
    books.close().await?;
    Ok(())
}

async fn edit(dir: &Path) -> Result<()> {
    let mut shop = open(&dir.join("shop.db")).await?;
    let mut books = open(&dir.join("books.db")).await?;
    // Both sides edit the same person's last name (shop 201 ↔ books 21): a conflict; a (the shop) wins.
    exec(
        &mut shop,
        "UPDATE customers SET last_name = 'Silva-Moreau' WHERE id = 201",
    )
    .await?;
    exec(&mut books, "UPDATE clients SET family_name = 'Moreau' WHERE email_address = (SELECT email_address FROM clients ORDER BY id LIMIT 1 OFFSET 20)").await?;
    // Disjoint edits merge.
    exec(
        &mut shop,
        "UPDATE customers SET first_name = 'Annabel' WHERE id = 1",
    )
    .await?;
    exec(
        &mut books,
        "UPDATE clients SET credit = 9999.99 WHERE id = 5",
    )
    .await?;
    // A client is deleted in the books: kept in the shop, restorable.
    exec(&mut books, "DELETE FROM clients WHERE id = 100").await?;
    Ok(())
}

pub async fn run(dir: &Path) -> Result<ExitCode> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let cfg_path = dir.join("puente.toml");
    std::fs::write(&cfg_path, CONFIG)?;
    seed(dir).await?;
    println!("Puente demo: the shop's customers (a, SQLite) ↔ the books' clients (b, SQLite).");
    println!("This demo runs a built-in SQLite-to-SQLite example; the CRM sandboxes and the dashboard are not part of it yet.");
    println!("Config: {}\n", cfg_path.display());

    let cfg = config::load(&cfg_path).map_err(|d| {
        anyhow::anyhow!(
            "{}",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let engine = Engine::open(cfg).await?;
    println!("1. First sync: matching by e-mail, creating the rest both ways.");
    let (r, f) = crate::sync(&engine, &[], false, false).await?;
    crate::output::print_reports(&r);
    anyhow::ensure!(f.is_empty(), "{}", f.join("\n"));

    println!("\n2. Edits on both sides (a conflict, disjoint edits, a delete), then a dry run:");
    edit(dir).await?;
    let (r, _) = crate::sync(&engine, &[], true, false).await?;
    crate::output::print_reports(&r);

    println!("\n3. The real run:");
    let (r, f) = crate::sync(&engine, &[], false, false).await?;
    crate::output::print_reports(&r);
    anyhow::ensure!(f.is_empty(), "{}", f.join("\n"));

    println!("\n4. Status:");
    crate::output::status(&engine, false).await?;
    println!("\n5. Records that need a person:");
    let rows = engine
        .state
        .records(&puente_state::RecordFilter {
            status: Some("failed".into()),
            ..Default::default()
        })
        .await?;
    crate::output::records_table(&rows);

    let c = cfg_path.display();
    println!("\nTry next:");
    println!("  puente --config {c} status");
    println!("  puente --config {c} records --status deleted");
    println!("  puente --config {c} restore --sync customers --side b --dry-run");
    println!("  puente --config {c} records --format csv > records.csv");
    println!("  sqlite3 {}/shop.db \"UPDATE customers SET stage='customer' WHERE id=12\" && puente --config {c} sync", dir.display());
    Ok(ExitCode::SUCCESS)
}
