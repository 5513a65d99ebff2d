//! A generic JSON webhook (a PBX posting calls) feeding a PostgreSQL table
//! through `puente serve`: refused without its token, kept on disk before it
//! is acknowledged, and in the table within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use puente_engine::{config, Engine};
use puente_server::ServeOptions;
use puente_testkit::Db;
use serde_json::json;

const PBX_TOKEN: &str = "pbx-token-5b0c9e1d7a";

#[tokio::test(flavor = "multi_thread")]
async fn posted_calls_reach_the_database_within_seconds() {
    let db = Db::pg().await;
    db.exec(
        "CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, call_id TEXT UNIQUE NOT NULL,
           caller TEXT, seconds INTEGER, answered BOOLEAN, started_at TIMESTAMPTZ)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("puente.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[state]
url = "sqlite://state.db"
[connections.pbx]
kind = "webhook"
token = "{PBX_TOKEN}"
[connections.db]
kind = "postgres"
url = "{}"
[[syncs]]
name = "calls"
direction = "a-to-b"
poll_interval_secs = 3600
reconcile = "off"
a = {{ connection = "pbx", object = "calls", key = "call_id" }}
b = {{ connection = "db", object = "calls" }}
match = [{{ a = "call_id", b = "call_id" }}]
fields = [
  {{ a = "call_id", b = "call_id" }},
  {{ a = "from", b = "caller", type = "phone" }},
  {{ a = "duration", b = "seconds" }},
  {{ a = "answered", b = "answered" }},
  {{ a = "start", b = "started_at", type = "datetime" }},
]
"#,
            db.url()
        ),
    )
    .unwrap();
    let cfg = config::load(&path)
        .await
        .unwrap_or_else(|d| panic!("{d:?}"));
    let engine = Arc::new(Engine::open(cfg).await.unwrap());
    let app = puente_server::app(
        engine.clone(),
        ServeOptions {
            admin_token: "test-admin-token-0123456789".into(),
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/pbx?object=calls",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(puente_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let call = |id: &str, secs: i64| {
        json!({
            "call_id": id, "from": "+49 30 901820", "duration": secs,
            "answered": secs > 0, "start": "2026-11-22T09:15:00+01:00"
        })
    };

    // Without the token, or with a wrong one: refused, nothing kept.
    for token in [None, Some("wrong-token-000000000")] {
        let mut r = http.post(&url).json(&call("c-0", 1));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }
    assert!(!dir.path().join(".puente/inbox/pbx/calls.jsonl").exists());

    let sent = Instant::now();
    let r = http
        .post(&url)
        .bearer_auth(PBX_TOKEN)
        .json(&json!({"events": [call("c-1", 42), call("c-2", 0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["accepted"], 2);
    // Acknowledged means on disk.
    let inbox = std::fs::read_to_string(dir.path().join(".puente/inbox/pbx/calls.jsonl")).unwrap();
    assert_eq!(inbox.lines().count(), 2);
    loop {
        if db.count("SELECT COUNT(*) AS x FROM calls").await == 2 {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the calls did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(
        db.one("SELECT caller || ' ' || seconds || ' ' || answered || ' ' || to_char(started_at AT TIME ZONE 'UTC', 'HH24:MI') AS x FROM calls WHERE call_id = 'c-1'")
            .await,
        "+4930901820 42 true 08:15"
    );

    // A later event of the same call updates it; a replay changes nothing.
    for _ in 0..2 {
        let r = http
            .post(&url)
            .header("x-puente-token", PBX_TOKEN)
            .json(&call("c-2", 7))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let sent = Instant::now();
    loop {
        if db
            .one("SELECT seconds AS x FROM calls WHERE call_id = 'c-2'")
            .await
            == "7"
        {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the update did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(db.count("SELECT COUNT(*) AS x FROM calls").await, 2);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    engine.state.close().await;
}
