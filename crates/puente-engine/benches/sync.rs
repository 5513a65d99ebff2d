//! End-to-end throughput: PostgreSQL → MariaDB, through the engine, on the
//! machine's real servers.
//!
//!   cargo bench -p puente-engine --bench sync
//!   BENCH_ROWS=10000,100000 cargo bench -p puente-engine --bench sync
//!
//! For each size: the initial sync (n rows into an empty table), the next
//! run (which reads back, once, the rows Puente just wrote, and writes
//! nothing), and an incremental run after 1% of the rows changed. Each phase
//! reports rows/s and the process's peak resident memory during the phase.

use std::time::Instant;

// Sync work is many small allocations (records, values, keys); mimalloc
// handles them far better than the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use puente_engine::{config, Engine, RunOptions};
use puente_testkit::Db;

/// Peak resident set size (VmHWM) in MiB since the last reset.
fn peak_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn phase(e: &Engine, name: &str, n: u64) -> (f64, f64) {
    reset_peak();
    let def = e.config.syncs[0].clone();
    let t = Instant::now();
    let r = e.run(&def, &RunOptions::default()).await.expect("run");
    let secs = t.elapsed().as_secs_f64();
    let mib = peak_mib();
    println!(
        "{name:<28} {secs:>7.2} s  {:>9.0} rows/s  peak RSS {mib:>7.1} MiB  (read a {} b {}, created {}, updated {})",
        n as f64 / secs,
        r.a.read,
        r.b.read,
        r.b.created,
        r.b.updated
    );
    (secs, mib)
}

async fn bench(n: i64) {
    println!("\n== {n} rows, PostgreSQL → MariaDB ==");
    let a = Db::pg().await;
    let b = Db::mysql().await;
    a.contacts("people", 1, n, false).await;
    b.contacts("contacts", 1, 1, false).await;
    b.exec("DELETE FROM contacts").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("puente.toml");
    let text = puente_testkit::contacts_config(&a, &b, "a-to-b", "", "overlap_secs = 0");
    std::fs::write(&path, &text).unwrap();
    let e = Engine::open(config::parse(&text, &path).unwrap())
        .await
        .unwrap();
    phase(&e, "initial sync", n as u64).await;
    phase(&e, "read-back of own writes", n as u64).await;
    let changed = n / 100;
    a.exec("UPDATE people SET last_name = 'changed' WHERE id % 100 = 0")
        .await;
    phase(
        &e,
        &format!("incremental ({changed} changed)"),
        changed as u64,
    )
    .await;
    phase(&e, "incremental (nothing changed)", 1).await;
    assert_eq!(b.count("SELECT COUNT(*) AS x FROM contacts").await, n);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes = std::env::var("BENCH_ROWS").unwrap_or_else(|_| "10000,100000".into());
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<i64>().ok())
    {
        bench(n).await;
    }
}
