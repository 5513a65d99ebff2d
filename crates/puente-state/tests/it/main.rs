//! The same state-store suite on SQLite and on PostgreSQL.

use puente_core::{Failure, FailureCategory, Fields, Side, Value};
use puente_plan::{ConflictNote, Entry, FieldChange, Resolution, Status};
use puente_state::{Commit, EntryWrite, Intent, RecordFilter, SecretKey, StateStore};
use puente_testkit::{Server, TempSqlite, TestDb};

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::text(*v)))
        .collect()
}

fn write(e: Entry) -> EntryWrite {
    EntryWrite {
        id: (e.id > 0).then_some(e.id),
        entry: e,
        changes: vec![],
        created: vec![],
        conflicts: vec![],
        resolved: vec![],
        failed_attempt: false,
    }
}

fn linked(a: &str, b: &str, key: &str) -> Entry {
    let mut e = Entry::new(0);
    e.a_id = Some(a.into());
    e.b_id = Some(b.into());
    e.key_a = Some(key.into());
    e.key_b = Some(key.into());
    let mut seen = fields(&[("email", key)]);
    seen.insert("amount".into(), Value::decimal("1500.50".parse().unwrap()));
    e.seen_a = Some(seen);
    e.seen_b = Some(fields(&[("mail", key)]));
    e
}

async fn suite(store: StateStore) {
    let run = store.start_run("s", false).await.unwrap();
    // Bulk insert of new entries, a failed one, an excluded one.
    let mut c = Commit {
        sync: "s".into(),
        run_id: run,
        ..Commit::default()
    };
    for i in 0..1000 {
        c.entries.push(write(linked(
            &format!("a{i}"),
            &format!("b{i}"),
            &format!("k{i}"),
        )));
    }
    let mut failed = Entry::new(0);
    failed.a_id = Some("af".into());
    failed.status = Status::Failed(Failure::new(
        FailureCategory::Mapping,
        "field stage: no value map entry",
    ));
    let mut fw = write(failed);
    fw.failed_attempt = true;
    c.entries.push(fw);
    let mut excl = Entry::new(0);
    excl.b_id = Some("bx".into());
    excl.status = Status::Excluded("no match key".into());
    c.entries.push(write(excl));
    c.cursors
        .push(("a".into(), serde_json::json!({"v": "2026-01-01T00:00:00Z"})));
    store.commit(&c).await.unwrap();

    assert_eq!(
        store.cursor("s", "a").await.unwrap(),
        Some(serde_json::json!({"v": "2026-01-01T00:00:00Z"}))
    );
    assert_eq!(store.cursor("s", "b").await.unwrap(), None);

    let got = store
        .entries_by_ids("s", Side::A, &["a7".into(), "zz".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let e7 = got[0].clone();
    assert_eq!(e7.b_id.as_deref(), Some("b7"));
    assert_eq!(
        e7.seen_a.as_ref().unwrap()["amount"],
        Value::decimal("1500.5".parse().unwrap()),
        "seen values keep exact decimals"
    );
    let by_key = store.entries_by_keys("s", &["k9".into()]).await.unwrap();
    assert_eq!(by_key.len(), 1);

    let counts = store.status_counts("s").await.unwrap();
    assert_eq!(
        (counts.in_sync, counts.failed, counts.excluded),
        (1000, 1, 1)
    );
    assert_eq!(counts.failures_by_category.get("mapping"), Some(&1));
    assert_eq!(counts.total(), 1002);
    let revisit = store.entries_to_revisit("s").await.unwrap();
    assert_eq!(revisit.len(), 1);
    assert_eq!(revisit[0].a_id.as_deref(), Some("af"));

    // An update with a change log and a held conflict.
    let mut e = e7.clone();
    e.seen_a = Some(fields(&[("email", "k7"), ("amount", "9")]));
    e.echo_b = true;
    let mut w = write(e);
    w.changes.push((
        Side::B,
        FieldChange {
            field: "mail".into(),
            old: Value::text("x"),
            new: Value::text("y"),
        },
    ));
    w.conflicts.push(ConflictNote {
        field_a: "amount".into(),
        field_b: "sum".into(),
        value_a: Value::Int(9),
        value_b: Value::Int(8),
        winner: None,
    });
    let run2 = store.start_run("s", false).await.unwrap();
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run2,
            entries: vec![w.clone()],
            ..Commit::default()
        })
        .await
        .unwrap();
    // The same conflict seen again stays one inbox entry.
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run2,
            entries: vec![w],
            ..Commit::default()
        })
        .await
        .unwrap();
    let open = store.conflicts(Some("s"), true).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].value_b, Value::Int(8));
    let hist = store.history("s", Some("a7"), None).await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].new.as_deref(), Some("y"));

    // A decision is stored and handed to the next run as a resolution.
    store
        .resolve_conflict(open[0].id, &Resolution::Take(Side::B))
        .await
        .unwrap();
    assert!(store
        .resolve_conflict(open[0].id, &Resolution::Take(Side::B))
        .await
        .is_err());
    let revisit = store.entries_to_revisit("s").await.unwrap();
    let e = revisit
        .iter()
        .find(|e| e.a_id.as_deref() == Some("a7"))
        .unwrap();
    assert_eq!(
        e.resolutions.get("amount"),
        Some(&Resolution::Take(Side::B))
    );
    assert!(e.echo_b);

    // Intents survive until settled.
    let intents = vec![Intent {
        id: 0,
        sync: "s".into(),
        side: Side::B,
        entry_id: None,
        source_id: "a5000".into(),
        conditions: vec![("mail".into(), Value::text("new@x.com"))],
        seen_source: Some(fields(&[("email", "new@x.com")])),
        payload: fields(&[("mail", "new@x.com")]),
        key_source: Some("new@x.com".into()),
        key_target: None,
    }];
    let batch = store.add_intents(&intents).await.unwrap();
    let mut pending = store.pending_intents("s").await.unwrap();
    assert_eq!(pending.len(), 1);
    pending[0].id = 0;
    assert_eq!(pending, intents);
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run2,
            intent_batches: vec![batch],
            ..Commit::default()
        })
        .await
        .unwrap();
    assert!(store.pending_intents("s").await.unwrap().is_empty());

    // Deletes and key diff input.
    let mut d = store
        .entries_by_ids("s", Side::A, &["a1".into()])
        .await
        .unwrap()
        .remove(0);
    d.deleted_a = true;
    d.status = Status::Deleted;
    let id = d.id;
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run2,
            entries: vec![write(d)],
            ..Commit::default()
        })
        .await
        .unwrap();
    assert_eq!(store.deleted_on("s", Side::A).await.unwrap()[0].id, id);
    let live = store.live_ids("s", Side::A).await.unwrap();
    assert_eq!(live.len(), 1000, "999 linked + the failed one");
    let rows = store
        .records(&RecordFilter {
            sync: Some("s".into()),
            status: Some("deleted".into()),
            ..RecordFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].deleted_on.as_deref(), Some("a"));
    let tr = store
        .translate_ids("s", Side::A, &["a2".into(), "a1".into()])
        .await
        .unwrap();
    assert_eq!(tr.get("a2").map(String::as_str), Some("b2"));
    assert!(!tr.contains_key("a1"), "a deleted link translates nothing");

    store
        .finish_run(run2, "ok", &serde_json::json!({"a": {"read": 3}}), None)
        .await
        .unwrap();
    let runs = store.runs(Some("s"), 10).await.unwrap();
    assert_eq!(runs[0].status, "ok");
    assert!(store.integrity_problems().await.unwrap().is_empty());
}

#[tokio::test]
async fn state_store_suite_on_sqlite() {
    let tmp = TempSqlite::new("state");
    suite(StateStore::open(&tmp.url).await.unwrap()).await;
    vault(&StateStore::open(&tmp.url).await.unwrap(), &tmp.url).await;
    // Reopening a migrated store works.
    StateStore::open(&tmp.url).await.unwrap();
}

#[tokio::test]
async fn state_store_suite_on_postgres() {
    let db = TestDb::create(Server::Postgres, "state").await;
    suite(StateStore::open(&db.url).await.unwrap()).await;
    vault(&StateStore::open(&db.url).await.unwrap(), &db.url).await;
    StateStore::open(&db.url).await.unwrap();
}

#[tokio::test]
async fn a_bad_state_url_is_a_clear_error() {
    let err = StateStore::open("mongodb://x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must start with sqlite:// or postgres://"),
        "{err}"
    );
}

/// Secrets: sealed, opened only with their key and under their own name,
/// rotated all or none.
async fn vault(store: &StateStore, url: &str) {
    let key = SecretKey::generate();
    let other = SecretKey::generate();
    assert_ne!(key.id(), other.id());
    assert!(
        !format!("{key:?}").contains(&key.encode()),
        "Debug shows the id only"
    );
    assert_eq!(SecretKey::parse(&key.encode()).unwrap().id(), key.id());
    let err = SecretKey::parse("c2hvcnQ=").unwrap_err();
    assert!(err.contains("5 bytes long"), "{err}");

    store
        .put_secret("crm-token", "pat-na1-abc", &key)
        .await
        .unwrap();
    store
        .put_secret("db-url", "postgres://u:pw@h/db", &key)
        .await
        .unwrap();
    assert_eq!(
        store.secret("crm-token", &key).await.unwrap().as_deref(),
        Some("pat-na1-abc")
    );
    assert_eq!(store.secret("missing", &key).await.unwrap(), None);
    // Replacing keeps one row.
    store
        .put_secret("crm-token", "pat-na1-def", &key)
        .await
        .unwrap();
    let names: Vec<String> = store
        .secret_names()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["crm-token", "db-url"]);

    // The wrong key is named as such.
    let err = store
        .secret("crm-token", &other)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("sealed with key {}", key.id())),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");

    // A sealed value moved onto another name does not open there.
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let row: (String, String) =
        sqlx::query_as("SELECT nonce, sealed FROM secrets WHERE name = 'db-url'")
            .fetch_one(&pool)
            .await
            .unwrap();
    store.put_secret("moved", "x", &key).await.unwrap();
    sqlx::query(&format!(
        "UPDATE secrets SET nonce = '{}', sealed = '{}' WHERE name = 'moved'",
        row.0, row.1
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = store.secret("moved", &key).await.unwrap_err().to_string();
    assert!(err.contains("does not open"), "{err}");
    store.delete_secret("moved").await.unwrap();

    // Rotation moves every secret; running it again is harmless; the old
    // key no longer opens them.
    assert_eq!(store.rotate_secrets(&key, &other).await.unwrap(), 2);
    assert_eq!(store.rotate_secrets(&key, &other).await.unwrap(), 0);
    assert_eq!(
        store.secret("db-url", &other).await.unwrap().as_deref(),
        Some("postgres://u:pw@h/db")
    );
    assert!(store.secret("db-url", &key).await.is_err());
    // A secret under a third key stops a rotation before anything moves.
    let third = SecretKey::generate();
    store.put_secret("z-odd", "v", &third).await.unwrap();
    let err = store
        .rotate_secrets(&other, &key)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("z-odd"), "{err}");
    assert_eq!(
        store.secret("crm-token", &other).await.unwrap().as_deref(),
        Some("pat-na1-def"),
        "nothing moved"
    );
    assert!(store.delete_secret("z-odd").await.unwrap());
    assert!(!store.delete_secret("z-odd").await.unwrap());
}

#[tokio::test]
async fn a_version_1_store_is_upgraded_with_a_vault() {
    let tmp = TempSqlite::new("state-v1");
    StateStore::open(&tmp.url).await.unwrap().close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    sqlx::query("DROP TABLE secrets")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE puente_meta SET value = '1' WHERE key = 'schema_version'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = StateStore::open(&tmp.url).await.unwrap();
    let key = SecretKey::generate();
    store.put_secret("t", "v", &key).await.unwrap();
    assert_eq!(store.secret("t", &key).await.unwrap().as_deref(), Some("v"));
}
