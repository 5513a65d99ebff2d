//! An initial sync of contacts from PostgreSQL into the HubSpot sandbox
//! limited as a Free/Starter private app (100 requests per 10 s), then a
//! full read of them back. Reports write calls against ceil(n / 100), 429s,
//! wall time against the time the rate limit allows, and read calls
//! against ceil(n / 100) + 2.
//!
//!   cargo bench -p puente-engine --bench hubspot
//!   BENCH_CONTACTS=5000 cargo bench -p puente-engine --bench hubspot

use std::time::Instant;

use puente_engine::{config, Engine, RunOptions};
use puente_hubspot_sandbox::{Running, SandboxOptions};
use puente_testkit::Db;

/// The least time a rolling window of `max` requests per 10 s allows for
/// `n` requests: the first `max` at once, then a window per `max` more.
fn limit_bound_secs(n: u64, max: u64) -> f64 {
    (n.saturating_sub(1) / max) as f64 * 10.0
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let limit = 100u64;
    let sb = Running::start(SandboxOptions {
        rate_limit_per_10s: limit as u32,
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox");
    let pg = Db::pg().await;
    pg.contacts("people", 1, n as i64, false).await;
    let dir = std::env::temp_dir().join(format!("puente-bench-hubspot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[state]
url = "sqlite://state.db"

[connections.db]
kind = "postgres"
url = "{pg}"

[connections.crm]
kind = "hubspot"
base_url = "{url}"
token = "{token}"

[[syncs]]
name = "contacts"
direction = "a-to-b"
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
        pg = pg.url(),
        url = sb.url,
        token = sb.token()
    );
    let path = dir.join("puente.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = config::parse(&text, &path).unwrap_or_else(|d| panic!("{d:?}"));
    let engine = Engine::open(cfg).await.unwrap();
    let def = engine.config.syncs[0].clone();

    println!("== {n} contacts, PostgreSQL → HubSpot sandbox at {limit} requests / 10 s ==");
    let t = Instant::now();
    let r = engine.run(&def, &RunOptions::default()).await.expect("run");
    let wall = t.elapsed().as_secs_f64();
    let s = sb.sandbox.stats();
    assert_eq!(r.b.created, n, "{r:?}");
    let ideal_writes = n.div_ceil(100);
    let bound = limit_bound_secs(s.requests, limit);
    println!(
        "write calls          {:>8}   (ceil(n/100) = {ideal_writes}, +{:.1}%)",
        s.writes,
        (s.writes as f64 / ideal_writes as f64 - 1.0) * 100.0
    );
    println!(
        "all calls            {:>8}   (reads {}, searches {})",
        s.requests, s.reads, s.searches
    );
    println!("429s                 {:>8}", s.rate_limited);
    println!("wall time            {wall:>8.2} s");
    println!(
        "limit-bound time     {bound:>8.2} s   (wall is {:+.1}%)",
        (wall / bound - 1.0) * 100.0
    );

    sb.sandbox.reset_stats();
    let open = engine.open_sync(&def).await.unwrap();
    let t = Instant::now();
    let mut page = None;
    let mut read = 0;
    loop {
        let p = open.b.read(None, page).await.unwrap();
        read += p.records.len();
        match p.next {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    let s = sb.sandbox.stats();
    println!(
        "read back            {read:>8} contacts in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    println!(
        "read calls           {:>8}   (ceil(n/100) + 2 = {}; one of them reads the properties)",
        s.requests,
        n.div_ceil(100) + 2
    );
    println!("429s                 {:>8}", s.rate_limited);
    let _ = std::fs::remove_dir_all(&dir);
}
