//! A running `puente serve` between the HubSpot sandbox and a PostgreSQL
//! table, shared by the API tests and the latency benchmark.

use std::sync::Arc;
use std::time::Duration;

use puente_engine::{config, Engine};
use puente_hubspot_sandbox::{Running, SandboxOptions};
use puente_server::ServeOptions;
use puente_testkit::Db;
use serde_json::{json, Value as J};

pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Served {
    pub url: String,
    pub sandbox: Running,
    pub db: Db,
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// How the served sync is set up.
pub struct Setup {
    pub contacts: i64,
    /// `sync.conflict`: "winner" or "manual".
    pub conflict: &'static str,
    pub poll_secs: u64,
    pub alerts: puente_engine::config::AlertsDef,
    /// The sandbox account's daily request limit.
    pub daily_limit: u64,
    /// More keys for the sync (`exchange = "gradual"`, …).
    pub sync_extra: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            contacts: 20,
            conflict: "winner",
            poll_secs: 3600,
            alerts: Default::default(),
            daily_limit: SandboxOptions::default().daily_limit,
            sync_extra: "",
        }
    }
}

impl Served {
    /// Seeds `contacts` rows in PostgreSQL, starts the sandbox and the
    /// server, subscribes the sandbox's webhooks to the server, and waits
    /// for the first pass to link every contact.
    pub async fn start(setup: Setup) -> Served {
        let sandbox = Running::start(SandboxOptions {
            rate_limit_per_10s: 10_000,
            search_per_sec: 1_000,
            webhook_retry_base: Duration::from_millis(200),
            daily_limit: setup.daily_limit,
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let db = Db::pg().await;
        db.contacts("people", 1, setup.contacts, false).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[state]
url = "sqlite://state.db"

[connections.crm]
kind = "hubspot"
base_url = "{sandbox}"
token = "{token}"
webhook_secret = "sandbox-client-secret"

[connections.db]
kind = "postgres"
url = "{pg}"

[[syncs]]
name = "contacts"
winner = "a"
conflict = "{conflict}"
poll_interval_secs = {poll}
reconcile = "off"
delete_check_interval_secs = 0
{extra}
a = {{ connection = "crm", object = "contacts" }}
b = {{ connection = "db", object = "people", cursor = "updated_at" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "firstname", b = "first_name" }},
  {{ a = "lastname", b = "last_name" }},
]
"#,
            sandbox = sandbox.url,
            token = sandbox.token(),
            pg = db.url(),
            conflict = setup.conflict,
            poll = setup.poll_secs,
            extra = setup.sync_extra,
        );
        let path = dir.path().join("puente.toml");
        std::fs::write(&path, &text).unwrap();
        let cfg = config::load(&path)
            .await
            .unwrap_or_else(|d| panic!("{d:?}"));
        let engine = Arc::new(Engine::open(cfg).await.unwrap());
        let app = puente_server::app(
            engine.clone(),
            ServeOptions {
                admin_token: TOKEN.into(),
                alerts: setup.alerts.clone(),
                ..ServeOptions::default()
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(puente_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        sandbox
            .subscribe(
                &format!("{url}/webhooks/crm"),
                &[
                    ("contact.creation", None),
                    ("contact.propertyChange", Some("firstname")),
                    ("contact.propertyChange", Some("lastname")),
                ],
            )
            .await
            .unwrap();
        let s = Served {
            url,
            sandbox,
            db,
            engine,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        };
        s.wait_for(Duration::from_secs(60), |v| {
            v["counts"]["in_sync"].as_i64() == Some(setup.contacts)
        })
        .await;
        s
    }

    /// An API call with the admin token; the JSON answer and its status.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<J>) -> (u16, J) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(J::String(text)),
        )
    }

    /// A page or text answer (the dashboard, CSV, metrics) read with the
    /// admin token.
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `/api/syncs/contacts` until `ok` holds; panics with the last
    /// answer after `limit`.
    pub async fn wait_for(&self, limit: Duration, ok: impl Fn(&J) -> bool) -> J {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (_, v) = self
                .api(reqwest::Method::GET, "/api/syncs/contacts", None)
                .await;
            if ok(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sandbox id of the contact with this e-mail.
    pub async fn hubspot_id(&self, email: &str) -> String {
        self.sandbox.contact_id(email).await.unwrap()
    }

    pub async fn set_hubspot(&self, id: &str, props: J) {
        self.sandbox
            .call(
                reqwest::Method::PATCH,
                &format!("/crm/v3/objects/contacts/{id}"),
                Some(json!({ "properties": props })),
            )
            .await
            .unwrap();
    }

    /// The config file the server was started with.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("puente.toml")
    }

    /// Signals shutdown, as SIGTERM does, and waits for the server to
    /// return (a pass in progress finishes first); the state stays open.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.engine.state.close().await;
    }
}

/// The `q`-quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Changes `n` contacts' last names in HubSpot one at a time, each waiting
/// until PostgreSQL holds the new value; returns each change's latency.
pub async fn latencies(s: &Served, n: usize, contacts: i64) -> Vec<Duration> {
    let mut ids = Vec::new();
    for i in 1..=contacts {
        ids.push(s.hubspot_id(&format!("user{i}@example.com")).await);
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let i = k % contacts as usize;
        let value = format!("Moved{k}");
        let started = tokio::time::Instant::now();
        s.set_hubspot(&ids[i], json!({ "lastname": value })).await;
        let sql = format!(
            "SELECT last_name AS x FROM people WHERE email = 'user{}@example.com'",
            i + 1
        );
        loop {
            if s.db.one(&sql).await == value {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "change {k} did not arrive in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.push(started.elapsed());
    }
    out
}
