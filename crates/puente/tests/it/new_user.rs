//! What a new user meets first: a config file that is not there, a CSV
//! object that names no file, a file without its key column, a typo in a
//! key, output piped into `head`, and logs for a collector.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use puente_testkit::Db;

fn puente(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_puente"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("puente runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A folder of CSV files (`files`) and an SQLite database (`db`), with a
/// one-way sync from `from` (a connection.object) to `to`.
fn config(dir: &Path, db: &Db, from: (&str, &str), to: (&str, &str)) {
    std::fs::write(
        dir.join("puente.toml"),
        format!(
            "[connections.files]\nkind = \"csv\"\n[connections.db]\nkind = \"sqlite\"\nurl = \"{}\"\n\
             [[syncs]]\nname = \"people\"\ndirection = \"a-to-b\"\n\
             a = {{ connection = \"{}\", object = \"{}\", key = \"email\" }}\nb = {{ connection = \"{}\", object = \"{}\", key = \"email\" }}\n\
             match = [{{ a = \"email\", b = \"email\" }}]\nfields = [{{ a = \"email\", b = \"email\" }}, {{ a = \"first_name\", b = \"first_name\" }}]\n",
            db.url(),
            from.0,
            from.1,
            to.0,
            to.1
        ),
    )
    .unwrap();
}

#[test]
fn a_config_file_that_is_not_there_is_named_with_where_it_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    for (args, file) in [
        (&["validate"][..], "puente.toml"),
        (&["--config", "nope.toml", "sync"][..], "nope.toml"),
    ] {
        let o = puente(dir.path(), args);
        assert!(!o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(&format!(
                "{file}: no such config file (looked in {})",
                here.display()
            )),
            "{t}"
        );
        assert!(t.contains("fix: create it"), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_name_that_points_at_nothing_is_an_error_naming_the_files() {
    let db = Db::sqlite();
    db.contacts("people", 1, 5, false).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("contacts.csv"),
        "email,first_name\nann@example.com,Ann\n",
    )
    .unwrap();

    // Read from a file named without its ending, or misspelled: an error in
    // `validate` and in a pass, with the file meant.
    for (object, meant) in [
        ("contacts", "contacts.csv"),
        ("contcts.csv", "contacts.csv"),
    ] {
        config(dir.path(), &db, ("files", object), ("db", "people"));
        let o = puente(dir.path(), &["validate"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(&format!("no file named {object:?}")) && t.contains("files: contacts.csv"),
            "{t}"
        );
        assert!(t.contains(&format!("did you mean {meant:?}?")), "{t}");
        let o = puente(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("no file named {object:?}")),
            "{}",
            text(&o)
        );
    }

    // A file the sync writes to may be new: validate says it will create it.
    config(dir.path(), &db, ("db", "people"), ("files", "export.csv"));
    let o = puente(dir.path(), &["validate"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("(files.export.csv) does not exist yet: the first pass creates it, with email, first_name"),
        "{}",
        text(&o)
    );
    let o = puente(dir.path(), &["sync"]);
    assert!(o.status.success(), "{}", text(&o));
    let export = std::fs::read_to_string(dir.path().join("export.csv")).unwrap();
    assert_eq!(export.lines().count(), 6, "{export}");

    // A file without the key column says which column, and how to name it.
    std::fs::write(
        dir.path().join("contacts.csv"),
        "mail,first_name\nann@example.com,Ann\n",
    )
    .unwrap();
    config(dir.path(), &db, ("files", "contacts.csv"), ("db", "people"));
    let o = puente(dir.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("no column \"email\" to identify rows; columns are mail, first_name"),
        "{t}"
    );
    assert!(t.contains("key = \"COLUMN\""), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let db = Db::sqlite();
    db.contacts("people", 1, 2_000, false).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, ("db", "people"), ("files", "export.csv"));
    for args in [
        &["sync", "--dry-run"][..],
        &["records", "--format", "csv"][..],
        &["status"][..],
    ] {
        // `puente … | head -c 0`: the reader is gone before the first line.
        let mut child = Command::new(env!("CARGO_BIN_EXE_puente"))
            .current_dir(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status:?} {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_pass_and_its_counts() {
    let db = Db::sqlite();
    db.contacts("people", 1, 7, false).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, ("db", "people"), ("files", "export.csv"));
    let o = Command::new(env!("CARGO_BIN_EXE_puente"))
        .current_dir(dir.path())
        .args(["--log-format", "json", "sync"])
        .env("PUENTE_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "pass finished")
        .unwrap_or_else(|| panic!("no pass line in {lines:#?}"));
    assert_eq!(done["fields"]["b_created"], 7, "{done}");
    assert_eq!(done["fields"]["a_read"], 7, "{done}");
    assert_eq!(done["span"]["name"], "sync_run", "{done}");
    assert_eq!(done["span"]["sync"], "people", "{done}");
    assert!(done["span"]["run_id"].is_number(), "{done}");
}
