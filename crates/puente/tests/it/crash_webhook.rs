//! Crash trials of the generic JSON webhook: `puente serve` takes calls a
//! PBX posts and is killed with SIGKILL at random instants, then restarted.
//! The sender, as senders do, posts each call again until it is answered
//! 200. In the end every call is in PostgreSQL exactly once: nothing
//! acknowledged was lost, nothing was written twice.
//!
//! `PUENTE_CRASH_TRIALS` sets the number of kills (default 8 here).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use puente_testkit::Db;
use rand::Rng;

use crate::crash::{bin, trials};

const TOKEN: &str = "pbx-crash-token-6f1e0b9a";

fn start(config: &Path, listen: &str) -> Child {
    Command::new(bin())
        .args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            listen,
        ])
        .env("PUENTE_ADMIN_TOKEN", "crash-admin-token-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("puente starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_servers_lose_no_acknowledged_webhook() {
    let db = Db::pg().await;
    db.exec("CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, call_id TEXT UNIQUE NOT NULL, seconds INTEGER)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("puente.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[state]
url = "sqlite://state.db"
# A killed run's lease lapses within a second (the next run waits for it).
lease_secs = 1
[connections.pbx]
kind = "webhook"
token = "{TOKEN}"
[connections.db]
kind = "postgres"
url = "{}"
[[syncs]]
name = "calls"
direction = "a-to-b"
poll_interval_secs = 1
a = {{ connection = "pbx", object = "calls", key = "call_id" }}
b = {{ connection = "db", object = "calls" }}
match = [{{ a = "call_id", b = "call_id" }}]
fields = [{{ a = "call_id", b = "call_id" }}, {{ a = "seconds", b = "seconds" }}]
"#,
            db.url()
        ),
    )
    .unwrap();
    let port = puente_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}/webhooks/pbx?object=calls");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let kills = trials(8);
    // Enough calls that the kills fall while they are being sent.
    let calls = (kills * 250).max(2_000);
    let mut server = start(&config, &listen);
    // The sender posts each call until it is answered 200, as senders do.
    let sender = tokio::spawn(async move {
        let mut resent = 0;
        for n in 0..calls {
            let body = serde_json::json!({ "call_id": format!("call-{n}"), "seconds": n });
            let started = Instant::now();
            loop {
                match http.post(&url).bearer_auth(TOKEN).json(&body).send().await {
                    Ok(r) if r.status() == 200 => break,
                    _ => {
                        resent += 1;
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "call {n} never taken"
                        );
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        resent
    });
    // Meanwhile the server is killed at random instants: while it takes a
    // call, writes its inbox, or syncs to PostgreSQL.
    let mut killed = 0;
    while killed < kills && !sender.is_finished() {
        let wait = rand::thread_rng().gen_range(20..150);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        killed += 1;
        server = start(&config, &listen);
    }
    let resent = sender.await.unwrap();
    // Every acknowledged call arrives, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = db.count("SELECT COUNT(*) AS x FROM calls").await;
        if n as usize == calls {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {calls} calls arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        db.count("SELECT COUNT(DISTINCT call_id) AS x FROM calls")
            .await as usize,
        calls
    );
    assert_eq!(
        db.count("SELECT SUM(seconds) AS x FROM calls").await as usize,
        calls * (calls - 1) / 2,
        "every call carries its own values"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!(
        "webhook crash trials: {killed} kills, {calls} calls acknowledged, {resent} posts resent, 0 lost, 0 duplicated"
    );
}
