//! Crash trials between PostgreSQL and the HubSpot sandbox: `puente sync`
//! killed with SIGKILL at random instants of the initial run and of the run
//! after edits on both sides, then run to completion. Afterwards no contact
//! exists twice on either side, no edit is lost, both sides agree, and
//! every entry is in sync.
//!
//! `PUENTE_CRASH_TRIALS` sets the number of trials (default 8 here).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use puente_hubspot_sandbox::{Running, SandboxOptions};
use puente_testkit::Db;
use rand::Rng;
use serde_json::{json, Value as J};

use crate::crash::{assert_all_in_sync, sync, trials};

const ROWS: i64 = 600;
const OVERLAP: i64 = 150;

fn write_config(dir: &Path, pg: &Db, sb: &Running) -> std::path::PathBuf {
    let path = dir.join("puente.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[state]
url = "sqlite://state.db"
# A killed run's lease lapses within a second (the next run waits for it).
lease_secs = 1
[connections.db]
kind = "postgres"
url = "{}"
[connections.crm]
kind = "hubspot"
base_url = "{}"
token = "{}"
rate_limit_per_10s = 100000
[[syncs]]
name = "contacts"
delete_check_interval_secs = 0
a = {{ connection = "db", object = "people", cursor = "updated_at" }}
b = {{ connection = "crm", object = "contacts" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first_name", b = "firstname" }},
  {{ a = "last_name", b = "lastname" }},
]
"#,
            pg.url(),
            sb.url,
            sb.token()
        ),
    )
    .unwrap();
    path
}

async fn api(sb: &Running, path: &str, body: J) -> J {
    sb.call(reqwest::Method::POST, path, Some(body))
        .await
        .unwrap()
}

/// HubSpot's contacts as email → "first|last", failing on a duplicate.
async fn hubspot_table(sb: &Running) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for c in sb
        .all("contacts", "email,firstname,lastname")
        .await
        .unwrap()
    {
        let p = &c["properties"];
        let email = p["email"].as_str().unwrap_or("").to_string();
        let row = format!(
            "{}|{}",
            p["firstname"].as_str().unwrap_or(""),
            p["lastname"].as_str().unwrap_or("")
        );
        assert!(
            out.insert(email.clone(), row).is_none(),
            "{email} exists twice in HubSpot"
        );
    }
    out
}

async fn pg_table(db: &Db) -> BTreeMap<String, String> {
    let rows = db
        .strings("SELECT LOWER(email) || '|' || COALESCE(first_name, '') || '|' || COALESCE(last_name, '') AS x FROM people")
        .await;
    let mut out = BTreeMap::new();
    for r in rows {
        let (email, rest) = r.split_once('|').unwrap();
        assert!(
            out.insert(email.to_string(), rest.to_string()).is_none(),
            "{email} exists twice in PostgreSQL"
        );
    }
    out
}

/// HubSpot starts with contacts ROWS-OVERLAP+1 ..= 2·ROWS-OVERLAP, the
/// first OVERLAP of them also in PostgreSQL with the same values.
async fn seed_hubspot(sb: &Running) {
    sb.create_all(
        "contacts",
        (ROWS - OVERLAP + 1..=2 * ROWS - OVERLAP).map(|i| json!({"email": format!("user{i}@example.com"), "firstname": format!("First{i}"), "lastname": format!("Last{i}")})),
    )
    .await
    .unwrap();
}

/// Edits both sides; returns how many records each edit touched.
async fn edit(pg: &Db, sb: &Running, trial: usize) -> (usize, usize) {
    pg.exec(&format!(
        "UPDATE people SET first_name = 'a-edit-{trial}' WHERE id % 40 = 1"
    ))
    .await;
    // HubSpot's own contacts only (see crash.rs: on a pair not linked yet the
    // winner, a, settles differing fields).
    let own: Vec<i64> = (ROWS + 1..=2 * ROWS - OVERLAP)
        .filter(|i| i % 40 == 2)
        .collect();
    let inputs: Vec<J> = own
        .iter()
        .map(|i| json!({"id": format!("user{i}@example.com"), "idProperty": "email", "properties": {"lastname": format!("b-edit-{trial}")}}))
        .collect();
    api(
        sb,
        "/crm/v3/objects/contacts/batch/update",
        json!({"inputs": inputs}),
    )
    .await;
    let mut new_b = Vec::new();
    for i in 0..10 {
        pg.exec(&format!(
            "INSERT INTO people (email, first_name, last_name, credit) VALUES ('new-a-{trial}-{i}@example.com', 'New', 'A', 1.5)"
        ))
        .await;
        new_b.push(json!({"properties": {"email": format!("new-b-{trial}-{i}@example.com"), "firstname": "New", "lastname": "B"}}));
    }
    api(
        sb,
        "/crm/v3/objects/contacts/batch/create",
        json!({"inputs": new_b}),
    )
    .await;
    let na = pg
        .count(&format!(
            "SELECT COUNT(*) AS x FROM people WHERE first_name = 'a-edit-{trial}'"
        ))
        .await;
    (na as usize, own.len())
}

async fn trial(n: usize, kill_at: [Duration; 2]) {
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let pg = Db::pg().await;
    pg.contacts("people", 1, ROWS, false).await;
    seed_hubspot(&sb).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pg, &sb);

    sync(&config, Some(kill_at[0]));
    let (edited_a, edited_b) = edit(&pg, &sb, n).await;
    sync(&config, Some(kill_at[1]));
    sync(&config, None);
    sync(&config, None);

    let ta = pg_table(&pg).await;
    let tb = hubspot_table(&sb).await;
    let expected = (2 * ROWS - OVERLAP + 20) as usize;
    assert_eq!(
        ta.len(),
        expected,
        "trial {n}: PostgreSQL has {} contacts",
        ta.len()
    );
    assert_eq!(
        tb.len(),
        expected,
        "trial {n}: HubSpot has {} contacts",
        tb.len()
    );
    for (email, va) in &ta {
        let vb = tb
            .get(email)
            .unwrap_or_else(|| panic!("trial {n}: {email} missing in HubSpot"));
        assert_eq!(va, vb, "trial {n}: {email} differs");
    }
    let edits_a = ta
        .values()
        .filter(|v| v.starts_with(&format!("a-edit-{n}|")))
        .count();
    let edits_b = tb
        .values()
        .filter(|v| v.ends_with(&format!("|b-edit-{n}")))
        .count();
    assert_eq!(
        edits_a, edited_a,
        "trial {n}: edits made in PostgreSQL were lost"
    );
    assert_eq!(
        edits_b, edited_b,
        "trial {n}: edits made in HubSpot were lost"
    );
    assert_all_in_sync(&config, expected, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_against_hubspot_lose_nothing_and_duplicate_nothing() {
    let trials = trials(8);
    // How long an unkilled initial run takes, to spread the kills over it.
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let pg = Db::pg().await;
    pg.contacts("people", 1, ROWS, false).await;
    seed_hubspot(&sb).await;
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = sync(&write_config(dir.path(), &pg, &sb), None);
    let mut rng = rand::thread_rng();
    for n in 0..trials {
        let mut kill = || Duration::from_millis(rng.gen_range(5..full.as_millis().max(10) as u64));
        let at = [kill(), kill()];
        trial(n, at).await;
    }
}
