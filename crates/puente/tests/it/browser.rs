//! The dashboard in a real browser: `puente demo` serving, driven by
//! headless Chromium through playwright-core (`tests/browser/dashboard.mjs`,
//! installed by `scripts/browser.sh`). Screenshots and the exported CSV are
//! kept in `target/browser-artifacts/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "browser-test-token-0123456789";

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/dashboard.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run scripts/browser.sh (scripts/test.sh does)"
    );
    let out = root.join("../../target/browser-artifacts");
    let _ = std::fs::remove_dir_all(&out);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_puente"))
        .current_dir(dir.path())
        .args(["demo", "--dir", "demo", "--listen", "127.0.0.1:0"])
        .env("PUENTE_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("puente demo starts");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Dashboard: ") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let started = Instant::now();
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo prints its dashboard's address");
    println!("demo serving at {url} after {:?}", started.elapsed());
    let o = Command::new("node")
        .arg(&script)
        .args([url.as_str(), TOKEN, out.to_str().unwrap()])
        .output()
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{log}");
    assert!(o.status.success(), "browser checks failed:\n{log}");
    for shot in [
        "01-overview.png",
        "02-records-failed.png",
        "05-restore-review.png",
    ] {
        assert!(out.join(shot).exists(), "{shot} was not kept");
    }
    drop(demo);
}
