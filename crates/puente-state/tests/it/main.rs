//! The same state-store suite on SQLite and on PostgreSQL.

use puente_core::{Failure, FailureCategory, Fields, Side, Value};
use std::time::Duration;

use puente_plan::{ConflictNote, Entry, Exclusion, FieldChange, Resolution, Status, Wait};
use puente_state::{
    Acquired, Commit, EntryWrite, Holder, Intent, Marker, RecordFilter, Revisit, SecretKey,
    StateError, StateStore,
};
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

/// Commits one entry in sync `s`.
async fn commit_one(store: &StateStore, run: i64, e: Entry) {
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run,
            entries: vec![write(e)],
            ..Commit::default()
        })
        .await
        .unwrap();
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
    excl.status = Status::Excluded(Exclusion::NoMatchKey(
        "no match key: field email is empty on b".into(),
    ));
    c.entries.push(write(excl));
    c.cursors.push((
        Marker::Cursor(Side::A),
        serde_json::json!({"v": "2026-01-01T00:00:00Z"}),
    ));
    store.commit(&c).await.unwrap();

    assert_eq!(
        store.marker("s", Marker::Cursor(Side::A)).await.unwrap(),
        Some(serde_json::json!({"v": "2026-01-01T00:00:00Z"}))
    );
    assert_eq!(
        store.marker("s", Marker::Cursor(Side::B)).await.unwrap(),
        None
    );
    let excluded = store
        .entries_by_ids("s", Side::B, &["bx".into()])
        .await
        .unwrap();
    assert!(
        matches!(&excluded[0].status, Status::Excluded(Exclusion::NoMatchKey(m)) if m.contains("email")),
        "the reason comes back typed: {:?}",
        excluded[0].status
    );

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
    let revisit = revisits(&store, None).await;
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
    let revisit = revisits(&store, None).await;
    let e = revisit
        .iter()
        .find(|e| e.a_id.as_deref() == Some("a7"))
        .unwrap();
    assert_eq!(
        e.resolutions.get("amount"),
        Some(&Resolution::Take(Side::B))
    );
    assert!(e.echo_b);

    // Intents survive until settled: one row for the batch, each intent
    // read back as it was recorded.
    let typed = {
        // Typed values come back typed.
        let mut p = fields(&[("mail", "new@x.com")]);
        p.insert("amount".into(), Value::decimal("12.50".parse().unwrap()));
        p.insert("kind".into(), Value::Enum("lead".into()));
        p
    };
    let intents = vec![
        Intent {
            id: 0,
            sync: "s".into(),
            side: Side::B,
            entry_id: None,
            source_id: "a5000".into(),
            conditions: vec![("mail".into(), Value::text("new@x.com"))],
            seen_source: Some(fields(&[("email", "new@x.com")])),
            payload: typed.clone(),
            key_source: Some("new@x.com".into()),
            key_target: None,
        },
        // The source's seen values are the payload; a condition holds a
        // value the payload does not.
        Intent {
            id: 0,
            sync: "s".into(),
            side: Side::A,
            entry_id: Some(7),
            source_id: "b7".into(),
            conditions: vec![
                ("mail".into(), Value::text("new@x.com")),
                ("code".into(), Value::Int(7)),
            ],
            seen_source: Some(typed.clone()),
            payload: typed.clone(),
            key_source: None,
            key_target: Some("new@x.com".into()),
        },
        // The source's seen values name the payload's fields; one differs.
        Intent {
            id: 0,
            sync: "s".into(),
            side: Side::B,
            entry_id: Some(8),
            source_id: "a8".into(),
            conditions: vec![("mail".into(), Value::text("new@x.com"))],
            seen_source: Some({
                let mut seen = typed.clone();
                seen.insert("kind".into(), Value::text("lead"));
                seen
            }),
            payload: typed,
            key_source: Some("new@x.com".into()),
            key_target: None,
        },
    ];
    let conditions: Vec<_> = intents.iter().map(Intent::condition_refs).collect();
    let refs: Vec<_> = intents
        .iter()
        .zip(&conditions)
        .map(|(it, c)| it.as_ref(c))
        .collect();
    let batch = store.add_intents("s", &refs, None).await.unwrap();
    let mut pending = store.pending_intents("s").await.unwrap();
    assert_eq!(pending.len(), 3);
    assert!(
        pending.iter().all(|it| it.id == pending[0].id),
        "one row for the batch"
    );
    for it in &mut pending {
        it.id = 0;
    }
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
    commit_one(&store, run2, d).await;
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

/// Every entry of sync `s` to revisit, read a page of 2 at a time (so the
/// paging itself is exercised).
async fn revisits(store: &StateStore, only: Option<&'static str>) -> Vec<Entry> {
    let mut page = Revisit {
        after: 0,
        before: puente_state::now(),
        only,
        skip: None,
    };
    let mut out = Vec::new();
    loop {
        let got = store.revisit_page("s", &page, 2).await.unwrap();
        assert!(got.len() <= 2);
        let Some(last) = got.last() else { return out };
        page.after = last.id;
        out.extend(got);
    }
}

/// Waiting entries are told apart by their reason, and a page of revisits
/// leaves out what this pass already wrote.
async fn revisit_pages(store: &StateStore) {
    let run = store.start_run("r", false).await.unwrap();
    let waiting = |id: &str, why: Wait| {
        let mut e = Entry::new(0);
        e.a_id = Some(id.into());
        e.status = Status::Waiting(why);
        write(e)
    };
    let commit = |entries: Vec<EntryWrite>| Commit {
        sync: "r".into(),
        run_id: run,
        entries,
        ..Commit::default()
    };
    store
        .commit(&commit(vec![
            waiting("held1", Wait::Backfill),
            waiting("parent1", Wait::Parent("waiting on companies a:7".into())),
            waiting("held2", Wait::Backfill),
            waiting("match1", Wait::Matching),
        ]))
        .await
        .unwrap();
    let page = |only, skip, before: String| Revisit {
        after: 0,
        before,
        only,
        skip,
    };
    let ids = |v: Vec<Entry>| -> Vec<String> { v.into_iter().filter_map(|e| e.a_id).collect() };
    let all = store
        .revisit_page("r", &page(None, None, puente_state::now()), 100)
        .await
        .unwrap();
    assert_eq!(ids(all.clone()), ["held1", "parent1", "held2", "match1"]);
    assert_eq!(all[0].status, Status::Waiting(Wait::Backfill));
    assert_eq!(all[3].status, Status::Waiting(Wait::Matching));
    let held = store
        .revisit_page("r", &page(Some("backfill"), None, puente_state::now()), 100)
        .await
        .unwrap();
    assert_eq!(ids(held), ["held1", "held2"]);
    let rest = store
        .revisit_page("r", &page(None, Some("backfill"), puente_state::now()), 100)
        .await
        .unwrap();
    assert_eq!(ids(rest), ["parent1", "match1"]);
    // Written since the pass began: not revisited by it.
    let before = puente_state::now();
    let mut again = store
        .entries_by_ids("r", Side::A, &["parent1".into()])
        .await
        .unwrap();
    again[0].status = Status::Waiting(Wait::Parent("waiting on companies a:8".into()));
    store
        .commit(&commit(vec![write(again.remove(0))]))
        .await
        .unwrap();
    let rest = store
        .revisit_page("r", &page(None, Some("backfill"), before), 100)
        .await
        .unwrap();
    assert_eq!(ids(rest), ["match1"]);
}

/// One pass at a time across processes: a live lease is nobody else's, an
/// expired one is taken over, and a pass that lost its lease can record
/// nothing more.
async fn leases(store: &StateStore) {
    let cron = Holder {
        host: "host1".into(),
        pid: 101,
        command: "puente sync".into(),
        node: Some("boot-1/pid:[1]".into()),
        pid_start: Some(5_000),
    };
    let serve = Holder {
        host: "host2".into(),
        pid: 202,
        command: "puente serve".into(),
        node: None,
        pid_start: None,
    };
    let ttl = Duration::from_millis(800);
    let Acquired::Taken(first) = store.acquire_lease("l", &cron, ttl).await.unwrap() else {
        panic!("a free sync is taken")
    };
    // Another holder finds it held, and by whom.
    match store.acquire_lease("l", &serve, ttl).await.unwrap() {
        Acquired::Held(row) => {
            assert_eq!((row.host.as_str(), row.pid), ("host1", 101));
            assert_eq!(row.command, "puente sync");
            assert!(
                row.to_string()
                    .starts_with("`puente sync` (pid 101 on host1) since "),
                "{row}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Other syncs are free.
    assert!(matches!(
        store.acquire_lease("other", &serve, ttl).await.unwrap(),
        Acquired::Taken(_)
    ));
    // A holder known dead (by another process on its machine) is taken
    // over at once, but only the lease that was seen: not a newer one.
    assert!(matches!(
        store.acquire_lease("dead", &cron, ttl).await.unwrap(),
        Acquired::Taken(_)
    ));
    let Acquired::Held(row) = store.acquire_lease("dead", &serve, ttl).await.unwrap() else {
        panic!("held by cron")
    };
    assert_eq!(
        (row.node.as_deref(), row.pid_start),
        (Some("boot-1/pid:[1]"), Some(5_000))
    );
    assert!(matches!(
        store.take_over_lease(&row, &serve, ttl).await.unwrap(),
        Acquired::Taken(_)
    ));
    assert!(
        matches!(
            store.take_over_lease(&row, &cron, ttl).await.unwrap(),
            Acquired::Held(r) if r.pid == 202
        ),
        "a stale view of the lease takes nothing"
    );
    let holders = store.leases().await.unwrap();
    assert_eq!(holders.len(), 3);
    assert_eq!(store.lease_holder("l").await.unwrap().unwrap().pid, 101);
    // Renewed while the pass runs: still held after the first ttl.
    for _ in 0..3 {
        tokio::time::sleep(ttl / 3).await;
        assert!(store.renew_lease(&first).await.unwrap());
    }
    assert!(matches!(
        store.acquire_lease("l", &serve, ttl).await.unwrap(),
        Acquired::Held(_)
    ));
    // A commit fenced by a live lease goes through.
    let run = store.start_run("l", false).await.unwrap();
    let fenced = |lease| Commit {
        sync: "l".into(),
        run_id: run,
        cursors: vec![(Marker::Cursor(Side::A), serde_json::json!(1))],
        lease: Some(lease),
        ..Commit::default()
    };
    store.commit(&fenced(first.clone())).await.unwrap();
    // The holder stalls past its expiry (as a killed process would): the
    // lease lapses, the next holder takes the sync over, and the run left
    // running is marked interrupted.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(
        store.lease_holder("l").await.unwrap().is_none(),
        "an expired lease is nobody's"
    );
    let Acquired::Taken(second) = store.acquire_lease("l", &serve, ttl).await.unwrap() else {
        panic!("an expired lease is taken over")
    };
    let runs = store.runs(Some("l"), 1).await.unwrap();
    assert_eq!(runs[0].status, "interrupted");
    // The stalled holder wakes: it can neither commit nor announce creates.
    let err = store.commit(&fenced(first.clone())).await.unwrap_err();
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert!(err.to_string().contains("lost its lease"), "{err}");
    assert!(!store.renew_lease(&first).await.unwrap());
    let intent = Intent {
        id: 0,
        sync: "l".into(),
        side: Side::B,
        entry_id: None,
        source_id: "a1".into(),
        conditions: vec![],
        seen_source: None,
        payload: Fields::new(),
        key_source: None,
        key_target: None,
    };
    let announced = [intent.as_ref(&[])];
    assert!(matches!(
        store.add_intents("l", &announced, Some(&first)).await,
        Err(StateError::LeaseLost { .. })
    ));
    assert!(store.pending_intents("l").await.unwrap().is_empty());
    store
        .add_intents("l", &announced, Some(&second))
        .await
        .unwrap();
    // Releasing someone else's lease does nothing; one's own frees the sync.
    store.release_lease(&first).await.unwrap();
    assert_eq!(store.lease_holder("l").await.unwrap().unwrap().pid, 202);
    store.release_lease(&second).await.unwrap();
    assert!(store.lease_holder("l").await.unwrap().is_none());
    assert!(matches!(
        store.acquire_lease("l", &cron, ttl).await.unwrap(),
        Acquired::Taken(_)
    ));
}

#[tokio::test]
async fn leases_on_sqlite_and_postgres() {
    let tmp = TempSqlite::new("leases");
    let db = TestDb::create(Server::Postgres, "leases").await;
    for url in [&tmp.url, &db.url] {
        let store = StateStore::open(url).await.unwrap();
        leases(&store).await;
        revisit_pages(&store).await;
    }
}

/// Two processes race for one sync on PostgreSQL: exactly one wins.
#[tokio::test]
async fn racing_holders_get_one_lease() {
    let db = TestDb::create(Server::Postgres, "lease-race").await;
    let a = StateStore::open(&db.url).await.unwrap();
    let b = StateStore::open(&db.url).await.unwrap();
    for round in 0..20 {
        let sync = format!("race{round}");
        let holder = |pid| Holder {
            host: "h".into(),
            pid,
            command: "puente sync".into(),
            node: None,
            pid_start: None,
        };
        let ttl = Duration::from_secs(30);
        let (h1, h2) = (holder(1), holder(2));
        let (x, y) = tokio::join!(
            a.acquire_lease(&sync, &h1, ttl),
            b.acquire_lease(&sync, &h2, ttl)
        );
        let taken = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|r| matches!(r, Acquired::Taken(_)))
            .count();
        assert_eq!(taken, 1, "round {round}");
    }
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
    // What versions 2 to 8 added goes: this is a version 1 store.
    for q in [
        "DROP TABLE layouts",
        "ALTER TABLE entries DROP COLUMN layout",
        "DROP TABLE secrets",
        "DROP TABLE leases",
        "DROP INDEX entries_revisit",
        "ALTER TABLE entries DROP COLUMN reason_code",
        "ALTER TABLE entries DROP COLUMN created_run",
        "ALTER TABLE entries DROP COLUMN created_side",
        "UPDATE puente_meta SET value = '1' WHERE key = 'schema_version'",
    ] {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = StateStore::open(&tmp.url).await.unwrap();
    let key = SecretKey::generate();
    store.put_secret("t", "v", &key).await.unwrap();
    assert_eq!(store.secret("t", &key).await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn a_version_3_store_gets_typed_reasons() {
    let tmp = TempSqlite::new("state-v3");
    StateStore::open(&tmp.url).await.unwrap().close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    for q in [
        "DROP TABLE layouts",
        "ALTER TABLE entries DROP COLUMN layout",
        "DROP INDEX entries_revisit",
        "ALTER TABLE entries DROP COLUMN reason_code",
        "ALTER TABLE entries DROP COLUMN created_run",
        "ALTER TABLE entries DROP COLUMN created_side",
        "UPDATE puente_meta SET value = '3' WHERE key = 'schema_version'",
    ] {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    // Entries as version 3 wrote them: the reason told only by its text.
    let rows = [
        (
            "h",
            "waiting",
            "backfill: created once both sides are read in full",
            None,
        ),
        (
            "m",
            "waiting",
            "matching: compared with every a record before it is created there",
            None,
        ),
        ("c", "waiting", "conflict decision on field stage", None),
        ("p", "waiting", "waiting on companies a:9", None),
        (
            "f",
            "excluded",
            "filter: a record does not satisfy \"x\"",
            None,
        ),
        (
            "k",
            "excluded",
            "ambiguous match key \"x@y.z\": 2 records on b share it",
            None,
        ),
        (
            "g",
            "excluded",
            "merged",
            Some("a record g was merged into h, which is linked to another record"),
        ),
    ];
    for (id, status, reason, message) in rows {
        sqlx::query(
            "INSERT INTO entries (sync, a_id, status, reason, message, updated_at) VALUES ('s', ?, ?, ?, ?, '2026-01-01T00:00:00Z')",
        )
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(message)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let store = StateStore::open(&tmp.url).await.unwrap();
    let ids: Vec<String> = ["h", "m", "c", "p", "f", "k", "g"]
        .map(String::from)
        .to_vec();
    let mut got = store.entries_by_ids("s", Side::A, &ids).await.unwrap();
    got.sort_by_key(|e| e.id);
    let statuses: Vec<Status> = got.into_iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Waiting(Wait::Backfill),
            Status::Waiting(Wait::Matching),
            Status::Waiting(Wait::Conflict("conflict decision on field stage".into())),
            Status::Waiting(Wait::Parent("waiting on companies a:9".into())),
            Status::Excluded(Exclusion::Filter(
                "filter: a record does not satisfy \"x\"".into()
            )),
            Status::Excluded(Exclusion::Ambiguous(
                "ambiguous match key \"x@y.z\": 2 records on b share it".into()
            )),
            Status::Excluded(Exclusion::Merged(
                "a record g was merged into h, which is linked to another record".into()
            )),
        ]
    );
    assert_eq!(revisits(&store, Some("backfill")).await.len(), 1);
}

#[tokio::test]
async fn seen_values_of_every_type_are_kept_compactly_and_earlier_forms_still_read() {
    let tmp = TempSqlite::new("state-seen");
    let store = StateStore::open(&tmp.url).await.unwrap();
    let mut seen = Fields::new();
    for (k, v) in [
        ("null", Value::Null),
        ("text", Value::text("Ana [\"quoted\"]")),
        ("int", Value::Int(-42)),
        ("decimal", Value::decimal("1500.50".parse().unwrap())),
        ("bool", Value::Bool(true)),
        (
            "date",
            Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()),
        ),
        (
            "datetime",
            Value::DateTime("2026-12-01T10:11:12.345678Z".parse().unwrap()),
        ),
        ("enum", Value::Enum("lead".into())),
        (
            "multi",
            Value::MultiEnum(["a".to_string(), "b".to_string()].into_iter().collect()),
        ),
        ("email", Value::Email("ana@example.com".into())),
        ("phone", Value::Phone("+34600000000".into())),
        ("ref", Value::Ref("123".into())),
    ] {
        seen.insert(k.into(), v);
    }
    let mut e = linked("a1", "b1", "ana@example.com");
    e.seen_a = Some(seen.clone());
    let run = store.start_run("s", false).await.unwrap();
    commit_one(&store, run, e).await;
    let got = store
        .entries_by_ids("s", Side::A, &["a1".to_string()])
        .await
        .unwrap();
    assert_eq!(
        got[0].seen_a.as_ref(),
        Some(&seen),
        "every type round-trips"
    );
    assert_eq!(got[0].key_b.as_deref(), Some("ana@example.com"));
    // The key found through either side's key.
    let by_key = store
        .entries_by_keys("s", &["ana@example.com".to_string()])
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    let (stored_len,): (i64,) =
        sqlx::query_as("SELECT LENGTH(seen_a) FROM entries WHERE a_id = 'a1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let tagged_len = serde_json::to_string(&seen).unwrap().len() as i64;
    assert!(
        stored_len * 10 < tagged_len * 7,
        "stored {stored_len} bytes, the tagged form takes {tagged_len}"
    );
    // The names are kept once, in the entry's layout.
    let (stored, layouts): (String, i64) = sqlx::query_as(
        "SELECT seen_a, (SELECT COUNT(*) FROM layouts) FROM entries WHERE a_id = 'a1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!stored.contains("datetime"), "{stored}");
    // The e-mail address is the match key: stored once, in key_a.
    assert!(!stored.contains("ana@example.com"), "{stored}");
    assert_eq!(layouts, 1);
    // b's values by position against a's, under other names: `[]` where a
    // value is exactly a's (left out), `["s"]` where it is a's as text.
    let mut e = linked("a2", "b2", "bo@example.com");
    e.seen_a = Some(
        [
            ("email", Value::Email("bo@example.com".into())),
            ("firstname", Value::text("Bo")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    e.seen_b = Some(fields(&[("email", "bo@example.com"), ("first_name", "Bo")]));
    commit_one(&store, run, e.clone()).await;
    let (stored_b,): (String,) = sqlx::query_as("SELECT seen_b FROM entries WHERE a_id = 'a2'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored_b, r#"{"0":["s"]}"#);
    let got = store
        .entries_by_ids("s", Side::A, &["a2".to_string()])
        .await
        .unwrap();
    assert_eq!((&got[0].seen_a, &got[0].seen_b), (&e.seen_a, &e.seen_b));
    // A key of b's own (not a's) is found through it.
    let mut e = linked("a3", "b3", "cy@example.com");
    e.key_b = Some("cy@example.org".into());
    commit_one(&store, run, e).await;
    let by_b = store
        .entries_by_keys("s", &["cy@example.org".to_string()])
        .await
        .unwrap();
    assert_eq!(by_b.len(), 1);
    assert_eq!(by_b[0].key_b.as_deref(), Some("cy@example.org"));
    // What earlier versions wrote: the tagged form, with names, no layout.
    sqlx::query(
        "UPDATE entries SET seen_a = $1, seen_b = '{\"mail\":\"ana@example.com\"}', layout = NULL
         WHERE a_id = 'a1'",
    )
    .bind(serde_json::to_string(&seen).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let got = store
        .entries_by_ids("s", Side::A, &["a1".to_string()])
        .await
        .unwrap();
    assert_eq!(got[0].seen_a.as_ref(), Some(&seen), "the tagged form reads");
    assert_eq!(
        got[0].seen_b.as_ref(),
        Some(&fields(&[("mail", "ana@example.com")]))
    );
}

#[tokio::test]
async fn the_change_log_drops_what_is_older_than_its_retention() {
    let tmp = TempSqlite::new("state-prune");
    let store = StateStore::open(&tmp.url).await.unwrap();
    let run = store.start_run("s", false).await.unwrap();
    let mut c = Commit {
        sync: "s".into(),
        run_id: run,
        ..Commit::default()
    };
    for i in 0..10 {
        let mut w = write(linked(&format!("a{i}"), &format!("b{i}"), &format!("k{i}")));
        w.changes.push((
            Side::B,
            FieldChange {
                field: "email".into(),
                old: Value::Null,
                new: Value::text(format!("k{i}")),
            },
        ));
        c.entries.push(w);
    }
    store.commit(&c).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    // The first four were logged in 2020.
    sqlx::query("UPDATE changes SET at = '2020-01-01T00:00:00.000000Z' WHERE id <= 4")
        .execute(&pool)
        .await
        .unwrap();
    let count = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM changes")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    assert_eq!(
        store.prune_changes("2019-01-01T00:00:00Z").await.unwrap(),
        0
    );
    assert_eq!(count().await, 10);
    assert_eq!(
        store.prune_changes("2021-01-01T00:00:00Z").await.unwrap(),
        4
    );
    assert_eq!(count().await, 6);
    assert!(store.history("s", Some("a4"), None).await.unwrap().len() == 1);
    assert_eq!(
        store.prune_changes("2999-01-01T00:00:00Z").await.unwrap(),
        6
    );
    assert_eq!(count().await, 0);
    pool.close().await;
}

/// A link whose b seen values are written exactly as a's keeps them once,
/// and a create is kept in its entry rather than as a change-log row; both
/// read back as before (seen values, and the create first in the history).
#[tokio::test]
async fn like_seen_values_and_creates_take_no_extra_rows() {
    let tmp = TempSqlite::new("state-like");
    let store = StateStore::open(&tmp.url).await.unwrap();
    let mut same = linked("a1", "b1", "ana@example.com");
    same.seen_b = same.seen_a.clone();
    let differs = linked("a2", "b2", "bo@example.com");
    // b's fields named as a's, one value of another type (text, not decimal).
    let mut alike = linked("a3", "b3", "cy@example.com");
    let mut b = alike.seen_a.clone().unwrap();
    b.insert("amount".into(), Value::text("1500.50"));
    alike.seen_b = Some(b);
    let run = store.start_run("s", false).await.unwrap();
    let mut created = write(same.clone());
    created.created.push(Side::B);
    let mut changed = write(differs.clone());
    changed.changes.push((
        Side::B,
        FieldChange {
            field: "mail".into(),
            old: Value::Null,
            new: Value::text("bo@example.com"),
        },
    ));
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run,
            entries: vec![created, changed, write(alike.clone())],
            ..Commit::default()
        })
        .await
        .unwrap();
    let got = store
        .entries_by_ids(
            "s",
            Side::A,
            &["a1".to_string(), "a2".to_string(), "a3".to_string()],
        )
        .await
        .unwrap();
    let by = |id: &str| got.iter().find(|e| e.a_id.as_deref() == Some(id)).unwrap();
    assert_eq!(by("a1").seen_b, same.seen_b);
    assert_eq!(by("a2").seen_b, differs.seen_b);
    assert_eq!(by("a3").seen_b, alike.seen_b);
    assert_eq!(
        by("a3").seen_b.as_ref().unwrap()["amount"],
        Value::text("1500.50"),
        "of its own type"
    );

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    let (stored,): (i64,) = sqlx::query_as("SELECT LENGTH(seen_b) FROM entries WHERE a_id = 'a1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "b's seen values are a's: stored as a mark");
    let (stored,): (String,) = sqlx::query_as("SELECT seen_b FROM entries WHERE a_id = 'a3'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, r#"{"0":"1500.50"}"#, "by position against a's");
    let (logged,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM changes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        logged, 1,
        "only the change is a row; the create is in its entry"
    );
    pool.close().await;

    // A later run changes the created record: the create comes first.
    let run2 = store.start_run("s", false).await.unwrap();
    let mut w = write(by("a1").clone());
    w.id = Some(by("a1").id);
    w.changes.push((
        Side::B,
        FieldChange {
            field: "email".into(),
            old: Value::text("ana@example.com"),
            new: Value::text("ana@example.org"),
        },
    ));
    store
        .commit(&Commit {
            sync: "s".into(),
            run_id: run2,
            entries: vec![w],
            ..Commit::default()
        })
        .await
        .unwrap();
    let hist = store.history("s", Some("a1"), None).await.unwrap();
    let fields: Vec<(&str, &str, i64)> = hist
        .iter()
        .map(|c| (c.field.as_str(), c.side.as_str(), c.run_id))
        .collect();
    assert_eq!(fields, vec![("*created*", "b", run), ("email", "b", run2)]);
    assert!(!hist[0].at.is_empty());
}

#[tokio::test]
async fn an_intent_written_one_per_row_by_an_earlier_version_still_reads() {
    let tmp = TempSqlite::new("state-intents");
    let store = StateStore::open(&tmp.url).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&tmp.url).await.unwrap();
    // As add_intents wrote it before batches: the conditions in the tagged
    // form, the payload column holding the rest.
    sqlx::query(
        r#"INSERT INTO intents (sync, side, entry_id, source_id, conditions, payload, created_at, batch)
           VALUES ('s', 'b', 3, 'a3', '[["mail",{"t":"email","v":"old@x.com"}]]',
                   '{"seen_source":{"email":"old@x.com"},"payload":{"mail":["@","old@x.com"]},"key_source":"old@x.com","key_target":null}',
                   '2026-01-01T00:00:00.000000Z', 'earlier-1')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let pending = store.pending_intents("s").await.unwrap();
    assert_eq!(pending.len(), 1);
    let it = &pending[0];
    assert_eq!(
        (it.side, it.entry_id, it.source_id.as_str()),
        (Side::B, Some(3), "a3")
    );
    assert_eq!(
        it.conditions,
        vec![("mail".to_string(), Value::Email("old@x.com".into()))]
    );
    assert_eq!(
        it.payload.get("mail"),
        Some(&Value::Email("old@x.com".into()))
    );
    assert_eq!(it.seen_source, Some(fields(&[("email", "old@x.com")])));
    assert_eq!(it.key_source.as_deref(), Some("old@x.com"));
}
