//! Database faults: the SQL side goes away mid-run (every connection
//! dropped, as a server restart does), a row lock another transaction holds,
//! a constraint violated by one row of a batch, and edits made on both sides
//! while a run is under way. Each time the next run converges: every record
//! in sync, none lost, none twice.

use std::time::Duration;

use puente_engine::RunOptions;
use rand::Rng;

use crate::fixtures::{duplicates, Db, Pair};

/// `PUENTE_DB_FAULT_TRIALS` sets how many mid-run drops are tried.
fn trials() -> usize {
    std::env::var("PUENTE_DB_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// Drops every connection to `db` from outside, as a restart of its server
/// would (PostgreSQL: `pg_terminate_backend`; MariaDB: `KILL`).
async fn drop_connections(db: &Db) -> usize {
    use sqlx::{Connection, Row};
    let name = db.url().rsplit('/').next().unwrap().to_string();
    match db {
        Db::Pg(_) => {
            let mut admin = sqlx::PgConnection::connect(&puente_testkit::pg_admin_url())
                .await
                .unwrap();
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .unwrap()
            .len()
        }
        Db::My(_) => {
            let mut admin = sqlx::MySqlConnection::connect(&puente_testkit::mysql_admin_url())
                .await
                .unwrap();
            let ids: Vec<i64> = sqlx::query(
                "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
            for id in &ids {
                // A connection may be gone already.
                let _ = sqlx::query(&format!("KILL {id}")).execute(&mut admin).await;
            }
            ids.len()
        }
        Db::Lite(_) => 0,
    }
}

/// Adds rows with fresh e-mails.
async fn add(db: &Db, table: &str, tag: &str, n: usize) {
    let rows: Vec<String> = (0..n)
        .map(|k| format!("('{tag}-{k}@example.com', 'New', '{tag}', 'lead', 1.50)"))
        .collect();
    db.exec(&format!(
        "INSERT INTO {table} (email, first_name, last_name, stage, credit) VALUES {}",
        rows.join(", ")
    ))
    .await;
}

async fn table(db: &Db, table: &str) -> std::collections::BTreeMap<String, String> {
    db.strings(&format!(
        "SELECT {} AS x FROM {table}",
        match db {
            Db::My(_) =>
                "CONCAT(LOWER(email), '|', COALESCE(first_name, ''), '|', COALESCE(last_name, ''))",
            _ =>
                "LOWER(email) || '|' || COALESCE(first_name, '') || '|' || COALESCE(last_name, '')",
        }
    ))
    .await
    .into_iter()
    .map(|r| {
        let (k, v) = r.split_once('|').unwrap();
        (k.to_string(), v.to_string())
    })
    .collect()
}

async fn assert_converged(p: &Pair, expected: usize, what: &str) {
    let ta = table(&p.a, "people").await;
    let tb = table(&p.b, "contacts").await;
    assert_eq!(ta.len(), expected, "{what}: a has {}", ta.len());
    assert_eq!(ta, tb, "{what}: the sides differ");
    assert!(duplicates(&p.a, "people").await.is_empty(), "{what}");
    assert!(duplicates(&p.b, "contacts").await.is_empty(), "{what}");
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!(st.in_sync as usize, expected, "{what}: {st:?}");
    p.assert_integrity().await;
    let r = p.run().await;
    assert_eq!(
        (r.a.created + r.a.updated, r.b.created + r.b.updated),
        (0, 0),
        "{what}: a converged pair needs no writes: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_side_restarting_mid_run_loses_nothing() {
    let a = Db::mysql().await;
    let b = Db::pg().await;
    // 3,000 + 5,000 contacts, 1,000 of them on both sides.
    a.contacts("people", 1, 3_000, false).await;
    b.contacts("contacts", 2_001, 5_000, false).await;
    let p = Pair::new(a, b, "").await;
    let mut rng = rand::thread_rng();
    let mut dropped = 0;
    let mut failed_runs = 0;
    let mut expected = 7_000;
    // How long a run takes, so the drop falls inside one (the first run is
    // the initial sync of 7,000 contacts).
    let mut span_ms: u64 = 3_000;
    for trial in 0..trials() {
        // Edits and new rows on both sides, then a run that loses its
        // connections at a random instant.
        p.a.exec(&format!(
            "UPDATE people SET first_name = 'a{trial}' WHERE id % 7 = {}",
            trial % 7
        ))
        .await;
        p.b.exec(&format!(
            "UPDATE contacts SET last_name = 'b{trial}' WHERE id % 11 = {}",
            trial % 11
        ))
        .await;
        add(&p.a, "people", &format!("a-new{trial}"), 5).await;
        add(&p.b, "contacts", &format!("b-new{trial}"), 5).await;
        expected += 10;
        let victim = if trial % 2 == 0 { &p.b } else { &p.a };
        let delay = Duration::from_millis(rng.gen_range(0..span_ms.max(2)));
        let opts = RunOptions::default();
        let run = p.engine.run(&p.engine.config.syncs[0], &opts);
        let fault = async {
            tokio::time::sleep(delay).await;
            drop_connections(victim).await
        };
        let (result, n) = tokio::join!(run, fault);
        dropped += n;
        if result.is_err() {
            failed_runs += 1;
        }
        // The next run (its pool reconnects) completes.
        let mut ok = false;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            if p.engine
                .run(&p.engine.config.syncs[0], &RunOptions::default())
                .await
                .is_ok()
            {
                ok = true;
                span_ms = (started.elapsed().as_millis() as u64).max(span_ms / 4);
                break;
            }
        }
        assert!(ok, "trial {trial}: the run after the drop never completed");
        let ta = table(&p.a, "people").await;
        assert!(
            ta.values()
                .filter(|v| v.starts_with(&format!("a{trial}|")))
                .count()
                > 0,
            "trial {trial}: a's edits are there"
        );
        assert_converged(&p, expected, &format!("trial {trial}")).await;
    }
    eprintln!(
        "db restart trials: {} trials, {dropped} connections dropped, {failed_runs} runs cut short, {expected} records checked, 0 lost, 0 duplicated",
        trials()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_fails_alone_and_syncs_once_released() {
    use sqlx::Connection;
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.contacts("people", 1, 50, false).await;
    b.contacts("contacts", 100_000, 0, false).await;
    // A short lock timeout on the PostgreSQL side.
    let text = crate::fixtures::config_text(&a, &b, "").replace(
        "[connections.right]\n",
        "[connections.right]\nlock_timeout_secs = 0.5\n",
    );
    let p = Pair::with_config(a, b, &text).await;
    p.run().await;
    p.a.exec("UPDATE people SET first_name = 'Edited' WHERE id <= 10")
        .await;
    // Another transaction holds user3's row.
    let mut holder = sqlx::PgConnection::connect(p.b.url()).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT id FROM contacts WHERE email = 'user3@example.com' FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let r = p.run().await;
    let failed = p.failed().await;
    assert_eq!((r.b.updated, r.b.failed), (9, 1), "{r:?} {failed:?}");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].category.as_deref(), Some("server"), "{failed:?}");
    let reason = failed[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("lock"), "{reason}");
    tx.rollback().await.unwrap();
    let r = p.run().await;
    assert_eq!((r.b.updated, r.b.failed), (1, 0), "{r:?}");
    assert_eq!(
        p.b.one("SELECT first_name AS x FROM contacts WHERE email = 'user3@example.com'")
            .await,
        "Edited"
    );
    assert_converged(&p, 50, "after the lock").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_violated_by_one_row_fails_that_row_alone() {
    let a = Db::sqlite();
    let b = Db::mysql().await;
    a.contacts("people", 1, 30, false).await;
    b.contacts("contacts", 1000, 1, false).await;
    // b holds a unique last name; a's user7 is given the same one.
    b.exec("UPDATE contacts SET last_name = 'Taken'").await;
    b.exec("CREATE UNIQUE INDEX contacts_last ON contacts (last_name)")
        .await;
    a.exec("UPDATE people SET last_name = 'Taken' WHERE id = 7")
        .await;
    let p = Pair::new(a, b, "").await;
    let r = p.run().await;
    assert_eq!((r.b.created, r.b.failed), (29, 1), "{r:?}");
    let failed = p.failed().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].a_id.as_deref(), Some("7"));
    assert_eq!(failed[0].category.as_deref(), Some("duplicate"));
    let reason = failed[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("contacts_last") || reason.contains("Duplicate"),
        "{reason}"
    );
    // Fixed at the source, it goes through.
    p.a.exec("UPDATE people SET last_name = 'Free' WHERE id = 7")
        .await;
    let r = p.run().await;
    assert_eq!((r.b.created, r.b.failed), (1, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_on_both_sides_during_a_run_converge_on_the_next() {
    let a = Db::pg().await;
    let b = Db::mysql().await;
    // 4,000 + 6,000 contacts, 1,000 of them on both sides.
    a.contacts("people", 1, 4_000, false).await;
    b.contacts("contacts", 3_001, 6_000, false).await;
    let p = Pair::new(a, b, "").await;
    p.run().await;
    // Edits land while a run is reading and writing: a's on even ids, b's on
    // odd ones (so neither edit is a conflict), some on records the run is
    // writing at that moment.
    p.a.exec("UPDATE people SET first_name = 'Before' WHERE id % 3 = 0")
        .await;
    let opts = RunOptions::default();
    let run = p.engine.run(&p.engine.config.syncs[0], &opts);
    let edits = async {
        let mut made = Vec::new();
        for round in 0..8 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let lo = round * 500 + 1;
            p.a.exec(&format!(
                "UPDATE people SET last_name = 'A{round}' WHERE id BETWEEN {lo} AND {} AND email LIKE '%0@example.com'",
                lo + 499
            ))
            .await;
            p.b.exec(&format!(
                "UPDATE contacts SET first_name = 'B{round}' WHERE id BETWEEN {lo} AND {} AND email LIKE '%5@example.com'",
                lo + 499
            ))
            .await;
            made.push(round);
        }
        made
    };
    let (r, made) = tokio::join!(run, edits);
    r.unwrap();
    assert_eq!(made.len(), 8);
    // The next run takes what the first one could not have seen.
    p.run().await;
    let ta = table(&p.a, "people").await;
    for round in 0..8 {
        let a_edits = ta
            .values()
            .filter(|v| v.ends_with(&format!("|A{round}")))
            .count();
        let b_edits = ta
            .values()
            .filter(|v| v.starts_with(&format!("B{round}|")))
            .count();
        assert!(
            a_edits > 0 && b_edits > 0,
            "round {round}: {a_edits} {b_edits}"
        );
    }
    assert_converged(&p, 9_000, "after concurrent edits").await;
}
