//! Alerts reach a webhook (in Slack's shape) and a real SMTP server (the
//! one in Python's standard library), once per condition, each saying what
//! broke and what to do. Mild errors are not alerted.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use puente_engine::config::AlertsDef;
use reqwest::Method;
use serde_json::Value as J;

use crate::setup::{Served, Setup};

/// A local endpoint standing in for Slack's incoming webhook: it keeps
/// every body it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<J>>>) {
    let got: Arc<Mutex<Vec<J>>> = Arc::default();
    let keep = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(body): Json<J>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// Python's debugging SMTP server: it accepts every message and prints it.
struct Smtp {
    port: u16,
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Smtp {
        let port = puente_testkit::free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("smtp.log");
        let child = Command::new("python3")
            .args([
                "-u",
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (the SMTP server of its standard library)");
        // Wait until it listens.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    fn received(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of_kind(got: &Arc<Mutex<Vec<J>>>, kind: &str) -> Vec<J> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|b| b["alert"]["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn severe_errors_are_alerted_once_by_webhook_and_email() {
    let (hook, got) = receiver().await;
    let smtp = Smtp::start();
    let s = Served::start(Setup {
        contacts: 25,
        alerts: AlertsDef {
            webhook_url: Some(hook),
            smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port)),
            email_from: Some("puente@example.com".into()),
            email_to: vec!["ops@example.com".into()],
            check_secs: 1,
            ..AlertsDef::default()
        },
        ..Setup::default()
    })
    .await;

    // A mild error: one record fails. Logged and shown, not alerted.
    s.db.exec("UPDATE people SET email = 'broken-1' WHERE id = 1")
        .await;
    let (st, _) = s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    assert_eq!(st, 202);
    s.wait_for(Duration::from_secs(30), |v| v["counts"]["failed"] == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(got.lock().unwrap().is_empty(), "{:?}", got.lock().unwrap());

    // A failure rate over 20%: 7 of 25 records fail.
    s.db.exec("UPDATE people SET email = 'broken-' || id WHERE id <= 7")
        .await;
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    s.wait_for(Duration::from_secs(30), |v| v["counts"]["failed"] == 7)
        .await;
    let alert = until(Duration::from_secs(10), || {
        of_kind(&got, "failure_rate").pop()
    })
    .await;
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains("7 of 25 records failed (28%)"), "{text}");
    assert!(text.contains("most are validation (7)"), "{text}");
    assert!(text.contains("What to do: open the dashboard"), "{text}");

    // Credentials revoked: alerted at once, by webhook and by e-mail.
    s.sandbox.sandbox.revoke_token(s.sandbox.token());
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    let alert = until(Duration::from_secs(20), || {
        of_kind(&got, "auth_revoked").pop()
    })
    .await;
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("connection crm refused Puente's credentials"),
        "{text}"
    );
    assert!(
        text.contains("What to do: authorize the app again or put a new token"),
        "{text}"
    );
    let mail = until(Duration::from_secs(20), || {
        let m = smtp.received();
        m.contains("auth_revoked").then_some(m)
    })
    .await;
    assert!(
        mail.contains("Subject: Puente alert: auth_revoked (crm)"),
        "{mail}"
    );
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(
        mail.contains("What to do: authorize the app again"),
        "{mail}"
    );
    // The same condition again is not alerted again.
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    s.wait_for(Duration::from_secs(20), |v| {
        v["state"]["failed_runs"].as_u64() >= Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(of_kind(&got, "auth_revoked").len(), 1);
    assert_eq!(of_kind(&got, "failure_rate").len(), 1);
    // The dashboard's API lists them.
    let (_, list) = s.api(Method::GET, "/api/alerts", None).await;
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"auth_revoked") && kinds.contains(&"failure_rate"),
        "{list}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nearly_spent_daily_budget_is_alerted() {
    let (hook, got) = receiver().await;
    let s = Served::start(Setup {
        contacts: 5,
        daily_limit: 1_000,
        alerts: AlertsDef {
            webhook_url: Some(hook),
            budget_share: 0.002,
            check_secs: 1,
            ..AlertsDef::default()
        },
        ..Setup::default()
    })
    .await;
    let alert = until(Duration::from_secs(10), || {
        of_kind(&got, "daily_budget").pop()
    })
    .await;
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("connection crm:") && text.contains("of today's 1000 API requests used"),
        "{text}"
    );
    assert!(
        text.contains("What to do: syncs stop calling this API"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(of_kind(&got, "daily_budget").len(), 1, "alerted once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_down_past_its_threshold_is_alerted_and_clears() {
    let (hook, got) = receiver().await;
    let s = Served::start(Setup {
        contacts: 5,
        alerts: AlertsDef {
            webhook_url: Some(hook),
            connection_down_secs: 1,
            check_secs: 1,
            ..AlertsDef::default()
        },
        ..Setup::default()
    })
    .await;
    // HubSpot answers every call with a 5xx: the pass fails after its retries.
    s.sandbox
        .sandbox
        .set_faults(puente_hubspot_sandbox::Faults {
            server_error: 1.0,
            ..Default::default()
        });
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    let alert = until(Duration::from_secs(40), || {
        of_kind(&got, "connection_down").pop()
    })
    .await;
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains("connection crm has failed for"), "{text}");
    assert!(
        text.contains("What to do: check that crm is reachable"),
        "{text}"
    );
    // It answers again: a pass goes through and the condition clears.
    s.sandbox.sandbox.set_faults(Default::default());
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    s.wait_for(Duration::from_secs(30), |v| {
        v["state"]["failing_since"].is_null()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(of_kind(&got, "connection_down").len(), 1);
    let (_, st) = s.api(Method::GET, "/api/connections", None).await;
    assert!(st.to_string().contains("crm"), "{st}");
    s.stop().await;
}
