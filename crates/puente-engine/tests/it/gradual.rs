//! A gradual exchange between the HubSpot sandbox and PostgreSQL: the
//! initial read (the backfill) goes on only inside its window and within
//! its share of the daily API budget, resumes where it stopped, creates
//! nothing until both sides are read in full, and then converges with every
//! shared contact matched, not duplicated.

use puente_engine::{Engine, RunOptions, SyncReport};
use puente_hubspot_sandbox::{Running, SandboxOptions};
use serde_json::json;

use crate::fixtures::Db;

fn config_text(sb: &Running, pg: &Db, gradual: &str) -> String {
    format!(
        r#"
[state]
url = "sqlite://state.db"
[connections.crm]
kind = "hubspot"
base_url = "{}"
token = "{}"
rate_limit_per_10s = 100000
[connections.db]
kind = "postgres"
url = "{}"
[[syncs]]
name = "contacts"
winner = "a"
delete_check_interval_secs = 0
exchange = "gradual"
{gradual}
a = {{ connection = "crm", object = "contacts", page_size = 20 }}
b = {{ connection = "db", object = "people", cursor = "updated_at", page_size = 20 }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "firstname", b = "first_name" }},
  {{ a = "lastname", b = "last_name" }},
]
"#,
        sb.url,
        sb.token(),
        pg.url()
    )
}

async fn engine(dir: &std::path::Path, text: &str) -> Engine {
    let path = dir.join("puente.toml");
    std::fs::write(&path, text).unwrap();
    crate::fixtures::open_engine(&path).await
}

async fn pass(e: &Engine) -> SyncReport {
    let def = e.config.syncs[0].clone();
    e.run(&def, &RunOptions::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gradual_exchange_keeps_to_its_window_and_budget() {
    let sb = Running::start(SandboxOptions {
        daily_limit: 2_000,
        ..SandboxOptions::unthrottled()
    })
    .await
    .unwrap();
    // HubSpot: 200 contacts, 50 of them (user1..user50) also in PostgreSQL.
    sb.create_all(
        "contacts",
        (0..200).map(|n| {
            let email = if n < 50 {
                format!("user{}@example.com", n + 1)
            } else {
                format!("hs{n}@example.com")
            };
            json!({"email": email, "firstname": "Hub", "lastname": format!("Spot{n}")})
        }),
    )
    .await
    .unwrap();
    let pg = Db::pg().await;
    pg.contacts("people", 1, 300, false).await;
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let closed = format!(
        "backfill_window = \"{}-{}\"",
        (now + chrono::Duration::hours(2)).format("%H:%M"),
        (now + chrono::Duration::hours(3)).format("%H:%M")
    );

    // Outside its window the backfill does not start.
    let e = engine(dir.path(), &config_text(&sb, &pg, &closed)).await;
    let r = pass(&e).await;
    assert_eq!((r.a.read, r.b.read), (0, 0), "{r:?}");
    assert!(
        r.backfill
            .iter()
            .all(|n| n.contains("outside the backfill window")),
        "{r:?}"
    );
    e.state.close().await;

    // Within 0.05% of 2,000 requests a day (1 request) it reads HubSpot's
    // first page only (PostgreSQL costs no API requests, so it is read in
    // full) and creates nothing: the pages not read may hold a match.
    let e = engine(
        dir.path(),
        &config_text(&sb, &pg, "backfill_budget_share = 0.0005"),
    )
    .await;
    let r = pass(&e).await;
    assert!(
        r.backfill
            .iter()
            .any(|n| n.contains("today's backfill budget is spent")),
        "{r:?}"
    );
    assert!(r.a.read > 0 && r.a.read < 200, "{r:?}");
    assert_eq!((r.a.created, r.b.created), (0, 0), "{r:?}");
    assert_eq!(sb.all("contacts", "email").await.unwrap().len(), 200);
    assert_eq!(pg.count("SELECT COUNT(*) AS x FROM people").await, 300);
    let spent = e
        .state
        .marker("contacts", puente_state::Marker::BackfillSpent)
        .await
        .unwrap()
        .unwrap();
    assert!(spent["requests"].as_u64().unwrap() >= 1, "{spent}");
    // The budget is per day: another pass today reads no more of HubSpot
    // (PostgreSQL, read in full, is now read incrementally) and creates
    // nothing.
    let r = pass(&e).await;
    assert_eq!((r.a.read, r.a.created, r.b.created), (0, 0, 0), "{r:?}");
    e.state.close().await;

    // A larger share: the backfill resumes where it stopped and finishes,
    // and the same pass then creates what has no match.
    let e = engine(
        dir.path(),
        &config_text(&sb, &pg, "backfill_budget_share = 1.0"),
    )
    .await;
    let r = pass(&e).await;
    assert!(
        r.backfill.iter().any(|n| n.contains("a: read in full")),
        "{r:?}"
    );
    assert!(r.a.read < 200, "resumed, not restarted: {r:?}");
    assert!(
        r.backfill
            .iter()
            .any(|n| n.contains("both sides read in full: 400 held records planned")),
        "{r:?}"
    );
    assert_eq!((r.a.created, r.b.created), (250, 150), "{r:?}");
    let emails: Vec<String> = sb
        .all("contacts", "email")
        .await
        .unwrap()
        .iter()
        .map(|c| c["properties"]["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(emails.len(), 450);
    let unique: std::collections::HashSet<_> = emails.iter().collect();
    assert_eq!(unique.len(), 450, "no contact twice");
    assert_eq!(pg.count("SELECT COUNT(*) AS x FROM people").await, 450);
    assert!(pg.duplicates("people").await.is_empty());
    let st = e.state.status_counts("contacts").await.unwrap();
    assert_eq!(st.in_sync, 450, "{st:?}");
    // From here on it is an ordinary incremental sync.
    let r = pass(&e).await;
    assert_eq!(
        (r.a.created + r.a.updated, r.b.created + r.b.updated),
        (0, 0),
        "{r:?}"
    );
    e.state.close().await;
}
