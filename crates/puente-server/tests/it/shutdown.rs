//! Graceful shutdown: a pass in progress when the server is told to stop
//! finishes (no half-applied batch, no open intent, cursors committed), and
//! a restarted engine finds nothing left to do.

use std::time::{Duration, Instant};

use puente_engine::{config, Engine, RunOptions};
use reqwest::Method;

use crate::setup::{Served, Setup};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_the_pass_finish_and_a_restart_continues() {
    let mut s = Served::start(Setup::default()).await;
    // 1,500 new rows: a pass long enough to be stopped in the middle.
    s.db.exec(
        "INSERT INTO people (email, first_name, last_name, stage, credit)
         SELECT 'late' || i || '@example.com', 'Late', 'Row' || i, 'lead', 1.5
         FROM generate_series(1, 1500) AS i",
    )
    .await;
    let (st, _) = s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    assert_eq!(st, 202);
    s.wait_for(Duration::from_secs(20), |v| v["state"]["running"] == true)
        .await;
    let asked = Instant::now();
    s.shut_down().await;
    let took = asked.elapsed();

    // The pass finished before the server returned.
    let engine = s.engine.clone();
    let runs = engine.state.runs(Some("contacts"), 1).await.unwrap();
    assert_ne!(runs[0].status, "running", "{runs:?}");
    assert!(engine
        .state
        .pending_intents("contacts")
        .await
        .unwrap()
        .is_empty());
    assert!(engine.state.integrity_problems().await.unwrap().is_empty());
    let counts = engine.state.status_counts("contacts").await.unwrap();
    assert_eq!(counts.in_sync, 1520, "{counts:?} after {took:?}");
    assert_eq!(
        s.sandbox.all("contacts", "email").await.unwrap().len(),
        1520
    );

    // A restart (a new engine on the same state) has nothing to redo.
    let cfg = config::load(&s.config_path()).await.unwrap();
    let fresh = Engine::open(cfg).await.unwrap();
    let def = fresh.config.syncs[0].clone();
    let r = fresh.run(&def, &RunOptions::default()).await.unwrap();
    assert_eq!(
        (
            r.a.created,
            r.a.updated,
            r.b.created,
            r.b.updated,
            r.recovered_intents
        ),
        (0, 0, 0, 0, 0),
        "{r:?}"
    );
    fresh.state.close().await;
    s.stop().await;
}
