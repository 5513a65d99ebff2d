//! One pass of a sync at a time, across processes: two `puente sync` started
//! together, `puente serve` beside `puente sync`, and a holder killed with
//! SIGKILL. PostgreSQL → MariaDB one way, 20,000 rows; every row arrives
//! exactly once, and whoever finds the sync busy says who holds it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use puente_testkit::Db;

use crate::crash::{assert_all_in_sync, bin};

const ROWS: i64 = 20_000;
const ADMIN: &str = "lease-admin-token-0123456789";

/// PostgreSQL `people` (ROWS rows) → MariaDB `contacts` (empty, and no
/// unique index: a row written twice would stay twice).
async fn setup(lease_secs: u64) -> (Db, Db, tempfile::TempDir, PathBuf) {
    let pg = Db::pg().await;
    let my = Db::mysql().await;
    pg.contacts("people", 1, ROWS, false).await;
    my.exec(
        "CREATE TABLE contacts (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255), first_name VARCHAR(60),
           last_name VARCHAR(60), credit DECIMAL(12,2),
           updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("puente.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[state]
url = "sqlite://state.db"
lease_secs = {lease_secs}
[connections.shop]
kind = "postgres"
url = "{}"
[connections.books]
kind = "mysql"
url = "{}"
[[syncs]]
name = "people"
direction = "a-to-b"
poll_interval_secs = 3600
a = {{ connection = "shop", object = "people", cursor = "updated_at" }}
b = {{ connection = "books", object = "contacts", cursor = "updated_at" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first_name", b = "first_name" }},
  {{ a = "last_name", b = "last_name" }},
  {{ a = "credit", b = "credit" }},
]
"#,
            pg.url(),
            my.url()
        ),
    )
    .unwrap();
    (pg, my, dir, config)
}

fn puente(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--config").arg(config).args(args);
    c
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    puente(config, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("puente starts")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sync --json`'s report of the sync, when it ran.
fn report(o: &Output) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)));
    v["syncs"][0].clone()
}

/// MariaDB holds every row exactly once.
async fn assert_exactly_once(my: &Db, rows: i64) {
    assert_eq!(my.count("SELECT COUNT(*) AS x FROM contacts").await, rows);
    assert_eq!(
        my.count("SELECT COUNT(DISTINCT email) AS x FROM contacts")
            .await,
        rows
    );
    assert!(my.duplicates("contacts").await.is_empty());
}

/// `puente status --json`: who holds the sync now, if anyone.
fn holder(config: &Path) -> serde_json::Value {
    let o = puente(config, &["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["syncs"][0]["held_by"].clone()
}

/// Waits until `check` holds, polling.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_started_together_write_every_row_once() {
    let (_pg, my, _dir, config) = setup(30).await;
    let first = spawn(&config, &["sync", "--json"]);
    let second = spawn(&config, &["sync", "--json"]);
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    // Both end well: a busy sync is skipped, not an error.
    assert!(first.status.success(), "{}", text(&first));
    assert!(second.status.success(), "{}", text(&second));
    let (ran, skipped) = if report(&first).is_null() {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(report(&ran)["b"]["created"], ROWS, "{}", text(&ran));
    let said = String::from_utf8_lossy(&skipped.stderr);
    assert!(
        said.contains("sync people: skipped: a pass is running in `puente sync` (pid ")
            && said.contains(" since "),
        "the skipped run names the holder and since when: {said}"
    );
    let v: serde_json::Value = serde_json::from_slice(&skipped.stdout).unwrap();
    assert_eq!(v["skipped"][0]["sync"], "people", "{v}");
    assert_exactly_once(&my, ROWS).await;
    assert_all_in_sync(&config, ROWS as usize, 0);

    // A run that waits for the other instead: it runs after it, and finds
    // nothing left to do. One asked to fail on a busy sync exits 3.
    let holder = spawn(&config, &["sync", "--json", "--full"]);
    wait_until(
        "the first run holds the sync",
        Duration::from_secs(60),
        || !self::holder(&config).is_null(),
    );
    let failing = puente(&config, &["sync", "--fail-if-busy"])
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(3), "{}", text(&failing));
    let waiting = puente(&config, &["sync", "--json", "--wait", "120"])
        .output()
        .unwrap();
    assert!(waiting.status.success(), "{}", text(&waiting));
    assert_eq!(report(&waiting)["b"]["created"], 0, "{}", text(&waiting));
    assert!(holder.wait_with_output().unwrap().status.success());
    assert_exactly_once(&my, ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_sync_take_turns_on_one_sync() {
    let (pg, my, _dir, config) = setup(30).await;
    let port = puente_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = puente(
        &config,
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    )
    .env("PUENTE_ADMIN_TOKEN", ADMIN)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("puente serve starts");
    let http = reqwest::Client::new();
    let sync_view = || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            match http
                .get(format!("{base}/api/syncs/people"))
                .bearer_auth(ADMIN)
                .send()
                .await
            {
                Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            }
        }
    };
    // The server's first pass starts at once; while it runs, the API and
    // `puente status` name it, and `puente sync` skips the sync.
    let started = Instant::now();
    let view = loop {
        let v = sync_view().await;
        if !v["held_by"].is_null() {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["held_by"]["command"], "puente serve", "{view}");
    assert_eq!(view["held_by"]["this_process"], true, "{view}");
    let status = holder(&config);
    assert_eq!(status["command"], "puente serve", "{status}");
    let skipped = puente(&config, &["sync"]).output().unwrap();
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(
        text(&skipped).contains("skipped: a pass is running in `puente serve`"),
        "{}",
        text(&skipped)
    );
    // Wait for the server's pass, then a `puente sync` runs and has nothing to do.
    let waited = puente(&config, &["sync", "--json", "--wait", "120"])
        .output()
        .unwrap();
    assert!(waited.status.success(), "{}", text(&waited));
    assert_eq!(report(&waited)["b"]["created"], 0, "{}", text(&waited));
    assert_exactly_once(&my, ROWS).await;

    // The other way round: a `puente sync` holds the sync while the server
    // is asked to run it. The server says who holds it, skips, and runs its
    // pass once the other has ended.
    pg.exec(&format!(
        "INSERT INTO people (email, first_name, last_name, credit)
           SELECT 'more' || i || '@example.com', 'M', 'N', 1 FROM generate_series(1, {ROWS}) AS i"
    ))
    .await;
    let cron = spawn(&config, &["sync", "--json"]);
    wait_until(
        "the cron run holds the sync",
        Duration::from_secs(60),
        || holder(&config)["command"] == "puente sync",
    );
    let r = http
        .post(format!("{base}/api/syncs/people/run"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "a run is queued");
    let view = sync_view().await;
    assert_eq!(view["held_by"]["command"], "puente sync", "{view}");
    assert_eq!(view["held_by"]["this_process"], false, "{view}");
    let retry = http
        .post(format!("{base}/api/syncs/people/retry"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 409, "a synchronous pass answers busy");
    let body: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(body["code"], "sync_busy", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("a pass is running in `puente sync`"),
        "{body}"
    );
    let cron = cron.wait_with_output().unwrap();
    assert!(cron.status.success(), "{}", text(&cron));
    assert_eq!(report(&cron)["b"]["created"], ROWS, "{}", text(&cron));
    // The run asked for while busy happens after.
    let started = Instant::now();
    loop {
        let v = sync_view().await;
        let runs = v["state"]["runs"].as_u64().unwrap_or(0);
        if runs >= 2 && v["held_by"].is_null() {
            assert!(v["state"]["busy_skips"].as_u64().unwrap() >= 1, "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_exactly_once(&my, 2 * ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_blocks_its_sync_until_the_lease_lapses() {
    let (_pg, my, dir, config) = setup(3).await;
    let mut killed = spawn(&config, &["sync"]);
    let pid = killed.id();
    wait_until("the run holds the sync", Duration::from_secs(60), || {
        holder(&config)["pid"] == pid
    });
    // Mid-pass: some rows are written, not all.
    let started = Instant::now();
    while my.count("SELECT COUNT(*) AS x FROM contacts").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no row arrives"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    assert!(
        my.count("SELECT COUNT(*) AS x FROM contacts").await < ROWS,
        "killed mid-pass"
    );
    // A process on this machine sees at once that the holder died (below).
    // One on another machine cannot: it waits for the lease to lapse. The
    // lease is made another machine's, to see that.
    sqlx::any::install_default_drivers();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let pool = sqlx::AnyPool::connect(&state).await.unwrap();
    sqlx::query("UPDATE leases SET node = 'another-machine'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let busy = puente(&config, &["sync"]).output().unwrap();
    assert!(busy.status.success(), "{}", text(&busy));
    assert!(
        text(&busy).contains(&format!(
            "skipped: a pass is running in `puente sync` (pid {pid} "
        )),
        "{}",
        text(&busy)
    );
    let resumed = puente(&config, &["sync", "--json", "--wait", "30"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_exactly_once(&my, ROWS).await;
    assert_all_in_sync(&config, ROWS as usize, 0);
    // The killed run is marked interrupted in the history.
    let runs = puente(&config, &["runs"]).output().unwrap();
    assert!(text(&runs).contains("interrupted"), "{}", text(&runs));

    // On one machine, a holder that died is seen at once: no wait.
    let mut killed = spawn(&config, &["sync", "--full"]);
    let pid = killed.id();
    wait_until("the run holds the sync", Duration::from_secs(60), || {
        holder(&config)["pid"] == pid
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    let at_once = puente(&config, &["sync", "--json"]).output().unwrap();
    assert!(at_once.status.success(), "{}", text(&at_once));
    assert!(!report(&at_once).is_null(), "{}", text(&at_once));
    assert_exactly_once(&my, ROWS).await;
}
