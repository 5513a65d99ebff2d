//! The CLI contract: validate's located errors, sync's JSON shape and exit
//! codes, status, records as CSV, and the demo.

use std::process::Command;

use puente_testkit::Db;

fn puente(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_puente"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("puente runs")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validate_names_the_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("puente.toml"),
        "[connections.shop]\nkind = \"postgres\"\nurl = \"postgres://x@127.0.0.1/test\"\n\n[[syncs]]\nname = \"s\"\na = { connection = \"shop\", object = \"t\" }\nb = { connection = \"shpo\", object = \"t\" }\nfields = [{ a = \"x\", b = \"x\" }]\n",
    )
    .unwrap();
    let o = puente(dir.path(), &["validate", "--offline"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("puente.toml:8: sync s: b.connection \"shpo\" is not defined"),
        "{t}"
    );
    assert!(
        t.contains("fix: did you mean \"shop\"? use one of: shop"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_prints_the_json_contract_and_records_export_as_csv() {
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.contacts("people", 1, 30, false).await;
    b.contacts("contacts", 21, 20, true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("puente.toml"),
        format!(
            "[state]\nurl = \"sqlite://st/state.db\"\n[connections.l]\nkind = \"sqlite\"\nurl = \"{}\"\n[connections.r]\nkind = \"postgres\"\nurl = \"{}\"\n\
             [[syncs]]\nname = \"people\"\na = {{ connection = \"l\", object = \"people\", cursor = \"updated_at\" }}\nb = {{ connection = \"r\", object = \"contacts\", cursor = \"updated_at\" }}\n\
             match = [{{ a = \"email\", b = \"email\" }}]\nfields = [{{ a = \"email\", b = \"email\" }}, {{ a = \"first_name\", b = \"first_name\" }}]\n",
            a.url(),
            b.url()
        ),
    )
    .unwrap();
    let o = puente(dir.path(), &["sync", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["syncs"][0];
    assert_eq!(s["name"], "people");
    assert_eq!(s["a"]["read"], 30);
    assert_eq!(s["b"]["read"], 20);
    assert_eq!(s["b"]["created"], 20);
    assert_eq!(s["a"]["created"], 10);
    for k in ["read", "created", "updated", "deleted", "failed"] {
        assert!(s["a"][k].is_u64() && s["b"][k].is_u64(), "{k} missing: {s}");
    }
    assert!(s["excluded"].is_u64() && s["conflicts"].is_u64(), "{s}");

    let o = puente(dir.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["syncs"][0]["in_sync"], 40);
    assert_eq!(v["syncs"][0]["failures_by_category"], serde_json::json!({}));

    let o = puente(
        dir.path(),
        &[
            "records", "--sync", "people", "--status", "in_sync", "--format", "csv",
        ],
    );
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with("sync,entry,a_id,b_id,status,"), "{csv}");
    assert_eq!(csv.lines().count(), 41);

    // Unknown sync names and unreachable servers are clear errors with a non-zero exit.
    let o = puente(dir.path(), &["sync", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no sync named nope; syncs are: people"),
        "{}",
        text(&o)
    );
    let cfg = std::fs::read_to_string(dir.path().join("puente.toml")).unwrap();
    std::fs::write(
        dir.path().join("puente.toml"),
        cfg.replace("127.0.0.1:5432", "127.0.0.1:9"),
    )
    .unwrap();
    let o = puente(dir.path(), &["sync"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("connection r:") && text(&o).contains("cannot connect"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_demo_runs_offline_and_reports_what_to_try() {
    let dir = tempfile::tempdir().unwrap();
    let o = puente(dir.path(), &["demo", "--no-serve"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("conflict a:201 ↔ b:21 last_name/family_name"),
        "{t}"
    );
    assert!(t.contains("in sync 357  failed 2"), "{t}");
    assert!(
        t.contains("mapping") && t.contains("not a valid e-mail address"),
        "{t}"
    );
    assert!(t.contains("Try next:"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_listed_and_settled_from_the_command_line() {
    let a = Db::sqlite();
    let b = Db::sqlite();
    a.contacts("people", 1, 3, false).await;
    b.contacts("contacts", 1, 3, false).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("puente.toml"),
        format!(
            "[connections.l]\nkind = \"sqlite\"\nurl = \"{}\"\n[connections.r]\nkind = \"sqlite\"\nurl = \"{}\"\n\
             [[syncs]]\nname = \"people\"\nconflict = \"manual\"\n\
             a = {{ connection = \"l\", object = \"people\", cursor = \"updated_at\" }}\nb = {{ connection = \"r\", object = \"contacts\", cursor = \"updated_at\" }}\n\
             match = [{{ a = \"email\", b = \"email\" }}]\nfields = [{{ a = \"email\", b = \"email\" }}, {{ a = \"last_name\", b = \"last_name\" }}]\n",
            a.url(),
            b.url()
        ),
    )
    .unwrap();
    assert!(puente(dir.path(), &["sync"]).status.success());
    a.exec("UPDATE people SET last_name = 'Ahn' WHERE email = 'user2@example.com'")
        .await;
    b.exec("UPDATE contacts SET last_name = 'Bahn' WHERE email = 'user2@example.com'")
        .await;
    let o = puente(dir.path(), &["sync", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["syncs"][0]["conflicts"], 1, "{v}");

    let o = puente(dir.path(), &["conflicts", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["field_a"], "last_name");
    let id = list[0]["id"].to_string();
    let t = text(&puente(dir.path(), &["conflicts"]));
    assert!(
        t.contains("last_name / last_name: a=\"Ahn\" b=\"Bahn\""),
        "{t}"
    );

    let o = puente(dir.path(), &["conflicts", "resolve", &id, "--take", "b"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        a.one("SELECT last_name AS x FROM people WHERE email = 'user2@example.com'")
            .await,
        "Bahn"
    );
    assert!(text(&puente(dir.path(), &["conflicts"])).contains("no open conflicts"));
    // Settling it twice is a clear error.
    let o = puente(dir.path(), &["conflicts", "resolve", &id, "--take", "a"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!("conflict {id} is not open")),
        "{}",
        text(&o)
    );
}

/// `puente sandbox hubspot` serves HubSpot's API on the address it prints,
/// seeded, and `puente validate` checks a config against it.
#[test]
fn the_hubspot_sandbox_serves_and_validate_checks_against_it() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_puente"))
        .args([
            "sandbox",
            "hubspot",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "30",
            "--token",
            "pat-test-1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("puente runs");
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    // Keep reading what the sandbox prints, so it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[connections.crm]\nkind = \"hubspot\"\nbase_url = \"{url}\"\ntoken = \"pat-test-1\"\n\n[connections.out]\nkind = \"csv\"\n\n[[syncs]]\nname = \"export\"\ndirection = \"a-to-b\"\na = {{ connection = \"crm\", object = \"contacts\" }}\nb = {{ connection = \"out\", object = \"contacts.csv\", key = \"email\" }}\nmatch = [{{ a = \"email\", b = \"email\" }}]\nfields = [{{ a = \"email\", b = \"email\" }}, {{ a = \"firstname\", b = \"first\" }}, {{ a = \"nonexistent\", b = \"x\" }}]\n"
    );
    std::fs::write(dir.path().join("puente.toml"), &config).unwrap();
    let o = puente(dir.path(), &["validate"]);
    let t = text(&o);
    assert!(
        t.contains("nonexistent"),
        "validate names the missing HubSpot property: {t}"
    );

    std::fs::write(
        dir.path().join("puente.toml"),
        config
            .replace(", {{ a = \"nonexistent\", b = \"x\" }}", "")
            .replace(", { a = \"nonexistent\", b = \"x\" }", ""),
    )
    .unwrap();
    let o = puente(dir.path(), &["sync", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(dir.path().join("contacts.csv")).unwrap();
    assert!(
        csv.lines().count() > 30,
        "the seeded contacts were exported: {csv}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
