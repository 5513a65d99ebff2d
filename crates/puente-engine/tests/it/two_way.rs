use puente_core::Side;
use puente_engine::SyncReport;

use crate::fixtures::{duplicates, Db, Pair};

async fn row(db: &Db, table: &str, email: &str, col: &str) -> String {
    db.one(&format!(
        "SELECT {col} AS x FROM {table} WHERE LOWER(email) = '{email}'"
    ))
    .await
}

fn assert_no_writes(r: &SyncReport) {
    for (side, c) in [("a", &r.a), ("b", &r.b)] {
        assert_eq!(
            (c.created, c.updated, c.deleted, c.failed),
            (0, 0, 0, 0),
            "a run with no changes wrote to {side}: {r:?}"
        );
    }
}

/// The scenario the issue asks for, on any pair of databases.
async fn two_way_scenario(a: Db, b: Db) {
    a.contacts("people", 1, 10_000, false).await;
    // 2,000 of b's 10,000 are a's last 2,000, written in upper case.
    b.contacts("contacts", 8_001, 10_000, true).await;
    let p = Pair::new(a, b, "").await;

    let r = p.run().await;
    assert_eq!((r.a.read, r.b.read), (10_000, 10_000), "{r:?}");
    assert_eq!(
        (r.a.created, r.b.created),
        (8_000, 8_000),
        "matched pairs are linked, not created: {r:?}"
    );
    assert_eq!(r.a.failed + r.b.failed, 0, "{r:?}");
    assert_eq!(p.a.count("SELECT COUNT(*) AS x FROM people").await, 18_000);
    assert_eq!(
        p.b.count("SELECT COUNT(*) AS x FROM contacts").await,
        18_000
    );
    assert!(duplicates(&p.a, "people").await.is_empty());
    assert!(duplicates(&p.b, "contacts").await.is_empty());
    // The winner's values went to the matched records.
    assert_eq!(
        p.b.one("SELECT email AS x FROM contacts WHERE LOWER(email) = 'user9000@example.com'")
            .await,
        "user9000@example.com"
    );
    // Exact decimals crossed unchanged.
    assert_eq!(
        p.b.one("SELECT credit AS x FROM contacts WHERE email = 'user17@example.com'")
            .await,
        "170.50"
    );

    let r = p.run().await;
    assert_no_writes(&r);

    // Edits on both sides.
    let (ea, eb) = (&p.a, &p.b);
    ea.exec("UPDATE people SET first_name = 'Xa' WHERE email = 'user9001@example.com'")
        .await;
    eb.exec("UPDATE contacts SET last_name = 'Yb' WHERE email = 'user9001@example.com'")
        .await;
    ea.exec("UPDATE people SET last_name = 'FromA' WHERE email = 'user9002@example.com'")
        .await;
    eb.exec("UPDATE contacts SET last_name = 'FromB' WHERE email = 'user9002@example.com'")
        .await;
    ea.exec("UPDATE people SET last_name = NULL WHERE email = 'user9003@example.com'")
        .await;
    eb.exec("UPDATE contacts SET last_name = 'FromB2' WHERE email = 'user9003@example.com'")
        .await;
    eb.exec("UPDATE contacts SET credit = 12345.67 WHERE email = 'user9004@example.com'")
        .await;
    eb.exec(
        "UPDATE contacts SET first_name = 'New in b' WHERE LOWER(email) = 'user17000@example.com'",
    )
    .await;
    let r = p.run().await;
    assert!(r.conflicts >= 2, "{r:?}");
    // Disjoint fields merge.
    assert_eq!(
        row(&p.b, "contacts", "user9001@example.com", "first_name").await,
        "Xa"
    );
    assert_eq!(
        row(&p.a, "people", "user9001@example.com", "last_name").await,
        "Yb"
    );
    // The same field: the winner (a).
    assert_eq!(
        row(&p.a, "people", "user9002@example.com", "last_name").await,
        "FromA"
    );
    assert_eq!(
        row(&p.b, "contacts", "user9002@example.com", "last_name").await,
        "FromA"
    );
    // An empty winner value overwrites nothing; b's value flows back.
    assert_eq!(
        row(&p.b, "contacts", "user9003@example.com", "last_name").await,
        "FromB2"
    );
    assert_eq!(
        row(&p.a, "people", "user9003@example.com", "last_name").await,
        "FromB2"
    );
    assert_eq!(
        row(&p.a, "people", "user9004@example.com", "credit").await,
        "12345.67"
    );
    assert_eq!(
        row(&p.a, "people", "user17000@example.com", "first_name").await,
        "New in b"
    );
    assert_eq!(r.a.updated, 4, "{r:?}");
    assert_eq!(r.b.updated, 2, "{r:?}");
    let echoes = r.echoes_suppressed;
    let r = p.run().await;
    assert_no_writes(&r);
    // Our writes are read back, in the same run or the next, as echoes.
    assert!(
        echoes + r.echoes_suppressed >= 6,
        "reads of our own writes are counted: {echoes} + {r:?}"
    );

    // A delete on b is kept (a untouched), shown, and restorable.
    p.b.exec("DELETE FROM contacts WHERE email = 'user9005@example.com'")
        .await;
    let r = p.run().await;
    assert_no_writes(&r);
    let def = p.engine.config.syncs[0].clone();
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!((st.deleted, st.in_sync), (1, 17_999), "{st:?}");
    assert_eq!(
        p.a.count("SELECT COUNT(*) AS x FROM people WHERE email = 'user9005@example.com'")
            .await,
        1
    );
    let dry = p.engine.restore(&def, Side::B, true).await.unwrap();
    assert_eq!(dry.plan.len(), 1);
    assert!(
        dry.plan[0].contains("user9005@example.com"),
        "{:?}",
        dry.plan
    );
    assert_eq!(
        p.b.count("SELECT COUNT(*) AS x FROM contacts WHERE email = 'user9005@example.com'")
            .await,
        0,
        "a dry run restores nothing"
    );
    let restored = p.engine.restore(&def, Side::B, false).await.unwrap();
    assert_eq!(restored.restored.len(), 1, "{restored:?}");
    assert_eq!(
        row(&p.b, "contacts", "user9005@example.com", "first_name").await,
        "First9005"
    );
    let r = p.run().await;
    assert_no_writes(&r);
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!(
        (st.deleted, st.in_sync, st.total()),
        (0, 18_000, 18_000),
        "{st:?}"
    );
    p.assert_integrity().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_mariadb_stay_in_sync_both_ways() {
    two_way_scenario(Db::pg().await, Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_stay_in_sync_both_ways() {
    two_way_scenario(Db::sqlite(), Db::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_exact_changes_and_writes_nothing() {
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.contacts("people", 1, 3, false).await;
    b.contacts("contacts", 3, 2, false).await;
    b.exec("UPDATE contacts SET first_name = 'Other' WHERE email = 'user3@example.com'")
        .await;
    let p = Pair::new(a, b, "").await;
    let r = p
        .run_with(puente_engine::RunOptions {
            dry_run: true,
            ..Default::default()
        })
        .await;
    let plan = r.plan.clone().unwrap();
    assert!(plan.contains("create on b from a:1:"), "{plan}");
    assert!(
        plan.contains("first_name: \"Other\" → \"First3\""),
        "{plan}"
    );
    assert!(plan.contains("create on a from b:2:"), "{plan}");
    assert_eq!(
        p.b.count("SELECT COUNT(*) AS x FROM contacts").await,
        2,
        "nothing written"
    );
    assert_eq!(
        p.engine
            .state
            .status_counts("contacts")
            .await
            .unwrap()
            .total(),
        0,
        "state untouched"
    );
    let r = p.run().await;
    assert_eq!((r.a.created, r.b.created, r.b.updated), (1, 2, 1), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_back_our_own_creates_is_an_echo_and_changes_no_state() {
    let a = Db::pg().await;
    let b = Db::mysql().await;
    a.contacts("people", 1, 20, false).await;
    b.contacts("contacts", 1000, 1, false).await;
    b.exec("DELETE FROM contacts").await;
    let p = Pair::new(a, b, "").await;
    let r = p.run().await;
    assert_eq!(r.b.created, 20);
    let before = p
        .engine
        .state
        .entries_by_ids(
            "contacts",
            Side::B,
            &(1..=20).map(|i| i.to_string()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let r = p.run().await;
    assert_no_writes(&r);
    assert_eq!(r.echoes_suppressed, 20, "{r:?}");
    let after = p
        .engine
        .state
        .entries_by_ids(
            "contacts",
            Side::B,
            &(1..=20).map(|i| i.to_string()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x.seen_b, y.seen_b, "seen values unchanged by a read-back");
        assert_eq!(
            (x.key_a.clone(), x.key_b.clone()),
            (y.key_a.clone(), y.key_b.clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_can_keep_its_state_in_postgres() {
    let state = Db::pg().await;
    let a = Db::sqlite();
    let b = Db::mysql().await;
    a.contacts("people", 1, 300, false).await;
    b.contacts("contacts", 201, 300, true).await;
    let text = crate::fixtures::config_text(&a, &b, "").replace(
        "url = \"sqlite://state.db\"",
        &format!("url = \"{}\"", state.url()),
    );
    let p = Pair::with_config(a, b, &text).await;
    let r = p.run().await;
    assert_eq!((r.a.created, r.b.created), (200, 200), "{r:?}");
    p.b.exec(
        "UPDATE contacts SET first_name = 'Changed' WHERE LOWER(email) = 'user450@example.com'",
    )
    .await;
    let r = p.run().await;
    assert_eq!(r.a.updated, 1, "{r:?}");
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!(st.in_sync, 500);
    assert_eq!(p.engine.state.backend(), puente_state::Backend::Postgres);
    assert_eq!(state.count("SELECT COUNT(*) AS x FROM entries").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sees_the_deletes_it_found() {
    let a = Db::sqlite();
    let b = Db::sqlite();
    a.contacts("people", 1, 3, false).await;
    b.contacts("contacts", 1000, 1, false).await;
    b.exec("DELETE FROM contacts").await;
    let p = Pair::new(a, b, "").await;
    p.run().await;
    p.a.exec("DELETE FROM people WHERE email = 'user2@example.com'")
        .await;
    p.b.exec("UPDATE contacts SET first_name = 'Late edit' WHERE email = 'user2@example.com'")
        .await;
    let r = p
        .run_with(puente_engine::RunOptions {
            dry_run: true,
            ..Default::default()
        })
        .await;
    let plan = r.plan.unwrap();
    assert!(plan.contains("deleted on a a:2 ↔ b:"), "{plan}");
    assert!(
        !plan.contains("update a:2"),
        "no update planned into a deleted row: {plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_sync_reads_its_target_once_and_matches_what_appears_there_later() {
    let a = Db::pg().await;
    let b = Db::mysql().await;
    a.contacts("people", 1, 1_000, false).await;
    // b holds one of a's people already, and one of its own.
    b.contacts("contacts", 5, 1, false).await;
    b.exec("INSERT INTO contacts (email, first_name) VALUES ('own@example.com', 'Own')")
        .await;
    let text = crate::fixtures::config_text(&a, &b, "")
        .replace("direction = \"two-way\"", "direction = \"a-to-b\"");
    let p = Pair::with_config(a, b, &text).await;

    // The first pass reads the target to its end: its records are indexed.
    let r = p.run().await;
    assert_eq!((r.a.read, r.b.read), (1_000, 2), "{r:?}");
    assert_eq!(r.b.created, 999, "user5 is matched, not created: {r:?}");

    // Later passes do not read back what the sync wrote.
    let r = p.run().await;
    assert_eq!(r.b.read, 0, "{r:?}");
    assert_no_writes(&r);

    // A change on a arrives; a record made on b since the first pass is
    // matched with the new a record of its key, not duplicated.
    p.b.exec(
        "INSERT INTO contacts (email, first_name, last_name) VALUES ('user2001@example.com', 'On b', 'Later')",
    )
    .await;
    // Matched as e-mails are: whatever their case.
    p.b.exec(
        "INSERT INTO contacts (email, first_name, last_name) VALUES ('USER2002@Example.com', 'On b', 'Upper')",
    )
    .await;
    p.a.exec(
        "INSERT INTO people (email, first_name, last_name) VALUES ('user2002@example.com', 'On a', 'Lower')",
    )
    .await;
    p.a.exec(
        "INSERT INTO people (email, first_name, last_name) VALUES ('user2001@example.com', 'On a', 'Later')",
    )
    .await;
    p.a.exec("UPDATE people SET first_name = 'Changed' WHERE email = 'user10@example.com'")
        .await;
    let r = p.run().await;
    assert_eq!(r.b.read, 0, "{r:?}");
    assert_eq!(r.b.created, 0, "{r:?}");
    assert_eq!(r.b.failed, 0, "{r:?}");
    assert!(duplicates(&p.b, "contacts").await.is_empty());
    assert_eq!(p.b.count("SELECT COUNT(*) AS x FROM contacts").await, 1_003);
    assert_eq!(
        row(&p.b, "contacts", "user10@example.com", "first_name").await,
        "Changed"
    );
    // a wins the first-sight merge of the matched pair.
    assert_eq!(
        row(&p.b, "contacts", "user2001@example.com", "first_name").await,
        "On a"
    );

    // A full pass (what the scheduled reconciliation runs) reads the target.
    let r = p
        .run_with(puente_engine::RunOptions {
            full: true,
            ..Default::default()
        })
        .await;
    assert_eq!(r.b.read, 1_003, "{r:?}");
    assert_no_writes(&r);
    p.assert_integrity().await;
}
