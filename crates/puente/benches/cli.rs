//! Speed as a user sees it: `puente sync` run through the CLI, a new process
//! each time, with a minimal config, against the machine's real servers.
//!
//!   cargo bench -p puente --bench cli
//!   BENCH_ROWS=100000 BENCH_CASES=copy cargo bench -p puente --bench cli
//!
//! `copy` (for each size in BENCH_ROWS, default 100000,1000000): a one-way
//! sync PostgreSQL → MariaDB, five columns, matched by e-mail, cursors on
//! `updated_at` with the default overlap, state in SQLite. Three runs: the
//! initial copy into an empty table, a run after 1% of the rows changed, and
//! a run after another 1% changed.
//!
//! `hubspot`: `puente sandbox hubspot --seed 20000` with its limits lifted,
//! and a one-way sync of its contacts into a new SQLite table.
//!
//! Each run prints wall time, rows/s, the process's CPU (user + system), its
//! peak resident memory, and the state store's size on disk (with its
//! largest tables). Every run's result is checked: the target holds exactly
//! the rows it should, with the changes in it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use puente_testkit::Db;

/// The binary measured: this build's, or another one's (to compare a
/// change with what came before it) named by BENCH_PUENTE.
fn puente_bin() -> String {
    std::env::var("BENCH_PUENTE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_puente").to_string())
}

/// What one process cost.
struct Cost {
    wall: Duration,
    cpu: Duration,
    peak_mib: f64,
}

/// Runs `puente` with `args` in `dir` and waits for it. While it runs, its
/// peak resident memory (VmHWM) is read from /proc; once it has exited (a
/// zombie, not yet reaped) its CPU time is read there too.
fn puente(dir: &Path, args: &[&str]) -> Cost {
    let out_path = dir.join("puente.out");
    let started = Instant::now();
    let mut child = Command::new(puente_bin())
        .args(args)
        .current_dir(dir)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start puente");
    let proc_dir = format!("/proc/{}", child.id());
    let mut peak_kib = 0u64;
    let cpu = loop {
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        // The fields after the command's name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first() == Some(&"Z") {
            // utime and stime: the 14th and 15th fields of the line.
            let ticks: u64 =
                fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            break Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = child.wait().expect("wait for puente");
    let wall = started.elapsed();
    assert!(
        status.success(),
        "puente {args:?} failed ({status}):\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default()
    );
    Cost {
        wall,
        cpu,
        peak_mib: peak_kib as f64 / 1024.0,
    }
}

/// The kernel's clock ticks per second, in which /proc gives CPU times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The state store's files (database and write-ahead log) in MiB, and its
/// largest tables and indexes.
fn state_size(dir: &Path, rows: u64) -> String {
    let db = dir.join("state.db");
    let bytes: u64 = ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let mut line = format!(
        "state {:.1} MiB ({:.0} B/row)",
        bytes as f64 / 1048576.0,
        bytes as f64 / rows.max(1) as f64
    );
    if let Ok(out) = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6")
        .output()
    {
        let parts: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(n, b)| format!("{n} {:.1}", b.parse::<f64>().unwrap_or(0.0) / 1048576.0))
            .collect();
        if !parts.is_empty() {
            line.push_str(&format!(": {}", parts.join(", ")));
        }
    }
    line
}

fn report(name: &str, rows: u64, c: &Cost, dir: &Path, state_rows: u64) {
    println!(
        "{name:<34} {:>7.2} s {:>9.0} rows/s  cpu {:>6.2} s  peak {:>6.1} MiB  {}",
        c.wall.as_secs_f64(),
        rows as f64 / c.wall.as_secs_f64(),
        c.cpu.as_secs_f64(),
        c.peak_mib,
        state_size(dir, state_rows)
    );
}

async fn copy(n: i64) {
    println!("\n== copy: {n} rows, PostgreSQL → MariaDB, one way, `puente sync` ==");
    let a = Db::pg().await;
    let b = Db::mysql().await;
    let t = Instant::now();
    a.contacts("people", 1, n, false).await;
    b.contacts("contacts", 1, 1, false).await;
    b.exec("DELETE FROM contacts").await;
    b.exec("CREATE UNIQUE INDEX contacts_email ON contacts (email)")
        .await;
    println!("(set up in {:.1} s)", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("puente.toml"),
        puente_testkit::contacts_config(&a, &b, "a-to-b", "", ""),
    )
    .unwrap();
    let n_u = n as u64;
    let c = puente(dir.path(), &["sync"]);
    report("initial copy", n_u, &c, dir.path(), n_u);
    assert_eq!(b.count("SELECT COUNT(*) AS x FROM contacts").await, n);

    let changed = n / 100;
    for (round, rest) in [(1, 0), (2, 1)] {
        a.exec(&format!(
            "UPDATE people SET last_name = last_name || 'x' WHERE id % 100 = {rest}"
        ))
        .await;
        let c = puente(dir.path(), &["sync"]);
        report(
            &format!("run {round} after it, {changed} changed"),
            changed as u64,
            &c,
            dir.path(),
            n_u,
        );
        assert_eq!(b.count("SELECT COUNT(*) AS x FROM contacts").await, n);
        assert_eq!(
            b.count("SELECT COUNT(*) AS x FROM contacts WHERE last_name LIKE '%x'")
                .await,
            changed * round,
            "the changes arrived"
        );
    }
}

async fn hubspot() {
    const N: u64 = 20_000;
    println!("\n== hubspot: {N} contacts, HubSpot sandbox → SQLite, one way, `puente sync` ==");
    let dir = tempfile::tempdir().unwrap();
    let port = puente_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sandbox = Command::new(puente_bin())
        .args([
            "sandbox",
            "hubspot",
            "--listen",
            &listen,
            "--seed",
            &N.to_string(),
            "--rate-limit",
            "100000000/10s",
            "--daily-limit",
            "1000000000",
            "--search-per-sec",
            "100000",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sandbox");
    // Ready once it answers a read: it listens before its seed is made, and
    // the seeding is the sandbox's time, not the read's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sandbox_answers(&listen) {
        assert!(Instant::now() < deadline, "the sandbox did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = puente_testkit::TempSqlite::new("crm");
    std::fs::write(
        dir.path().join("puente.toml"),
        format!(
            r#"[state]
url = "sqlite://state.db"

[connections.crm]
kind = "hubspot"
base_url = "http://{listen}"
token = "pat-sandbox-0000"

[connections.local]
kind = "sqlite"
url = "{}"

[[syncs]]
name = "contacts"
direction = "a-to-b"
a = {{ connection = "crm", object = "contacts" }}
b = {{ connection = "local", object = "contacts" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "firstname", b = "first_name" }},
  {{ a = "lastname", b = "last_name" }},
]
"#,
            target.url
        ),
    )
    .unwrap();
    let local = Db::Lite(target);
    local
        .exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT UNIQUE, first_name TEXT, last_name TEXT)")
        .await;
    let c = puente(dir.path(), &["sync"]);
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    // The seed makes contacts for its companies and deals too.
    let n = local.count("SELECT COUNT(*) AS x FROM contacts").await as u64;
    assert!(n >= N, "read {n} of at least {N} contacts");
    report(&format!("read {n} contacts"), n, &c, dir.path(), n);
}

/// Whether the sandbox at `listen` answers a one-contact read with 200.
fn sandbox_answers(listen: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(listen) else {
        return false;
    };
    let ask = format!(
        "GET /crm/v3/objects/contacts?limit=1 HTTP/1.1\r\nHost: {listen}\r\n\
         Authorization: Bearer pat-sandbox-0000\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    conn.write_all(ask.as_bytes()).is_ok()
        && conn.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| "copy,hubspot".into());
    let sizes = std::env::var("BENCH_ROWS").unwrap_or_else(|_| "100000,1000000".into());
    for case in cases.split(',').map(str::trim) {
        match case {
            "copy" => {
                for n in sizes
                    .split(',')
                    .filter_map(|s| s.trim().parse::<i64>().ok())
                {
                    copy(n).await;
                }
            }
            "hubspot" => hubspot().await,
            other => panic!("BENCH_CASES: no case {other:?} (there are: copy, hubspot)"),
        }
    }
}
