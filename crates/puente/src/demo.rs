//! `puente demo`: a self-contained, offline tour. A shop's customers
//! (SQLite) are kept in sync with a bookkeeping system's clients (SQLite)
//! and with a CRM's contacts (the HubSpot sandbox, started in this
//! process). The data is realistic: records to match rather than
//! duplicate, an invalid e-mail, a picklist value with no mapping,
//! conflicting edits, deleted records. After the scripted passes the
//! demo keeps running as `puente serve` does: the dashboard on 127.0.0.1,
//! webhooks from the sandbox, live syncing.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result};
use puente_engine::Engine;
use puente_hubspot_sandbox::{Running, SandboxOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

const CONFIG: &str = r#"# Written by `puente demo`: a shop's customers (SQLite) kept in sync with
# the books' clients (SQLite) and the CRM's contacts (the HubSpot sandbox).
[state]
url = "sqlite://state.db"

[connections.crm]
kind = "hubspot"
base_url = "{CRM_URL}"
token = "{CRM_TOKEN}"
webhook_secret = "sandbox-client-secret"

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

[[syncs]]
name = "crm-contacts"
direction = "two-way"
winner = "a"
poll_interval_secs = 30
reconcile = "hourly"
delete_check_interval_secs = 60
a = { connection = "shop", object = "customers", cursor = "updated_at", overlap_secs = 5 }
b = { connection = "crm", object = "contacts" }
match = [{ a = "email", b = "email" }]
fields = [
  { a = "email", b = "email" },
  { a = "first_name", b = "firstname" },
  { a = "last_name", b = "lastname" },
  { a = "stage", b = "lifecyclestage", values = { lead = "lead", customer = "customer", churned = "other" } },
  { a = "phone", b = "phone", direction = "a-to-b" },
]
"#;

/// Person `n`'s names.
fn person(n: usize) -> (&'static str, &'static str) {
    (FIRST[n % FIRST.len()], LAST[n % LAST.len()])
}

/// Person `n`'s e-mail at `domain`: `first.last{n}@domain`, lower-case.
fn email(n: usize, domain: &str) -> String {
    let (f, l) = person(n);
    format!("{}.{}{n}@{domain}", f.to_lowercase(), l.to_lowercase())
}

/// One call to the CRM sandbox.
async fn crm_call(
    crm: &Running,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    crm.call(method, path, body)
        .await
        .map_err(|e| anyhow::anyhow!("the CRM sandbox: {e}"))
}

/// The CRM's own contacts: 30 people the shop also has (e-mails written
/// in capitals, to be matched, not duplicated) and 20 only the CRM knows.
async fn seed_crm(crm: &Running) -> Result<()> {
    let inputs: Vec<_> = (0..50usize)
        .map(|i| {
            let (n, email) = if i < 30 {
                (200 + i, email(200 + i, "example.com").to_uppercase())
            } else {
                (1000 + i, email(1000 + i, "example.org"))
            };
            let (f, l) = person(n);
            serde_json::json!({ "properties": {
                "email": email, "firstname": f, "lastname": l,
                "lifecyclestage": if i % 3 == 0 { "customer" } else { "lead" },
            }})
        })
        .collect();
    crm_call(
        crm,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/batch/create",
        Some(serde_json::json!({ "inputs": inputs })),
    )
    .await?;
    Ok(())
}

/// Edits in the CRM between passes: a conflict with the shop, a change the
/// shop takes, and a deleted contact.
async fn edit_crm(crm: &Running) -> Result<()> {
    let contact = |email: String| async move {
        let id = crm
            .contact_id(&email)
            .await
            .map_err(|e| anyhow::anyhow!("the CRM sandbox: {e}"))?;
        anyhow::Ok(format!("/crm/v3/objects/contacts/{id}"))
    };
    let patch = |props: serde_json::Value| Some(serde_json::json!({ "properties": props }));
    // The shop renames customer 201 too (see `edit`): the shop wins.
    let c201 = contact(email(200, "example.com")).await?;
    crm_call(
        crm,
        reqwest::Method::PATCH,
        &c201,
        patch(serde_json::json!({ "lastname": "Silva (CRM)" })),
    )
    .await?;
    let c205 = contact(email(204, "example.com")).await?;
    crm_call(
        crm,
        reqwest::Method::PATCH,
        &c205,
        patch(serde_json::json!({ "firstname": "Freya-Marie" })),
    )
    .await?;
    let gone = contact(email(1040, "example.org")).await?;
    crm_call(crm, reqwest::Method::DELETE, &gone, None).await?;
    Ok(())
}

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
        let (f, l) = person(i);
        let email = match i {
            7 => "not-an-email".to_string(),
            _ => email(i, "example.com"),
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

/// How the demo ends: serving (the default) or stopping after the passes.
pub struct DemoOptions {
    pub listen: String,
    pub serve: bool,
}

pub async fn run(dir: &Path, opts: DemoOptions) -> Result<ExitCode> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let crm = Running::start(SandboxOptions {
        tokens: vec!["pat-demo-sandbox-token".into()],
        rate_limit_per_10s: 1000,
        search_per_sec: 50,
        webhook_retry_base: std::time::Duration::from_millis(500),
        ..SandboxOptions::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting the HubSpot sandbox: {e}"))?;
    let cfg_path = dir.join("puente.toml");
    std::fs::write(
        &cfg_path,
        CONFIG
            .replace("{CRM_URL}", &crm.url)
            .replace("{CRM_TOKEN}", crm.token()),
    )?;
    seed(dir).await?;
    seed_crm(&crm).await?;
    outln!("Puente demo, fully offline:");
    outln!(
        "  shop  (a, SQLite)            {}/shop.db: 240 customers",
        dir.display()
    );
    outln!(
        "  books (b, SQLite)            {}/books.db: 160 clients, 60 also in the shop",
        dir.display()
    );
    outln!(
        "  crm   (b, HubSpot sandbox)   {}: 50 contacts, 30 also in the shop",
        crm.url
    );
    outln!("  The Zoho CRM and Bitrix24 sandboxes do not exist yet, so the demo leaves them out.");
    outln!("Config: {}\n", cfg_path.display());

    let cfg = crate::load(&cfg_path).await?;
    let (token, generated) = crate::serve::admin_token(&cfg)?;
    let serve_opts = crate::serve::options(&cfg, token.clone());
    let engine = Engine::open(cfg).await?.with_command("puente demo");
    let wait = std::time::Duration::ZERO;
    outln!("1. First sync: matching by e-mail, creating the rest both ways.");
    let done = crate::sync(&engine, &[], false, false, wait).await?;
    crate::output::print_reports(&done.reports);
    anyhow::ensure!(done.failures.is_empty(), "{}", done.failures.join("\n"));

    outln!("\n2. Edits on all sides (conflicts, disjoint edits, deletes), then a dry run:");
    edit(dir).await?;
    edit_crm(&crm).await?;
    let done = crate::sync(&engine, &[], true, true, wait).await?;
    crate::output::print_reports(&done.reports);

    outln!("\n3. The real run:");
    let done = crate::sync(&engine, &[], false, true, wait).await?;
    crate::output::print_reports(&done.reports);
    anyhow::ensure!(done.failures.is_empty(), "{}", done.failures.join("\n"));

    outln!("\n4. Status:");
    crate::output::status(&engine, false).await?;
    outln!("\n5. Records that need a person:");
    let rows = engine
        .state
        .records(&puente_state::RecordFilter {
            status: Some("failed".into()),
            ..Default::default()
        })
        .await?;
    crate::output::records_table(&rows);

    let c = cfg_path.display();
    if !opts.serve {
        outln!("\nTry next:");
        outln!("  puente --config {c} status");
        outln!("  puente --config {c} records --status deleted");
        outln!("  puente --config {c} restore --sync customers --side b --dry-run");
        outln!("  puente --config {c} records --format csv > records.csv");
        outln!("  puente demo            (without --no-serve: the dashboard, live)");
        crm.stop().await;
        return Ok(ExitCode::SUCCESS);
    }

    let listener = match tokio::net::TcpListener::bind(&opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "cannot listen on {} ({e}); using a free port instead",
                opts.listen
            );
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
    };
    let addr = listener.local_addr()?;
    let engine = std::sync::Arc::new(engine);
    let app = puente_server::app(engine.clone(), serve_opts).await?;
    crm.subscribe(
        &format!("http://{addr}/webhooks/crm"),
        &[
            ("contact.creation", None),
            ("contact.deletion", None),
            ("contact.propertyChange", Some("firstname")),
            ("contact.propertyChange", Some("lastname")),
            ("contact.propertyChange", Some("email")),
            ("contact.propertyChange", Some("lifecyclestage")),
        ],
    )
    .await
    .map_err(|e| anyhow::anyhow!("subscribing the sandbox's webhooks: {e}"))?;
    outln!("\nDashboard: http://{addr}/");
    if generated {
        outln!("Admin token: {token}");
    } else {
        outln!("Admin token: the one in [serve] admin_token or PUENTE_ADMIN_TOKEN");
    }
    outln!("\nTry next (Ctrl-C stops the demo):");
    outln!("  - Sign in with the token; the overview shows each sync's counts, live.");
    outln!("  - Records → status failed: each failure has its category and a hint.");
    outln!("  - Sync crm-contacts → Restore deleted on b: a review screen, then the contact comes back.");
    outln!("  - Change a contact in the CRM sandbox; it reaches the shop in about a second (webhooks):");
    outln!(
        "      curl -X PATCH {}/crm/v3/objects/contacts/1001 -H 'authorization: Bearer {}' \\",
        crm.url,
        crm.token()
    );
    outln!("           -H 'content-type: application/json' -d '{{\"properties\": {{\"firstname\": \"Changed\"}}}}'");
    outln!("  - puente --config {c} status   (in another terminal)");
    use std::io::Write;
    std::io::stdout().flush()?;
    puente_server::serve(listener, app, crate::serve::shutdown_signal()).await?;
    engine.state.close().await;
    crm.stop().await;
    Ok(ExitCode::SUCCESS)
}
