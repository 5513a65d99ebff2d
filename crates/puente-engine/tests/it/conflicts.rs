use puente_core::{Side, Value};
use puente_plan::Resolution;

use crate::fixtures::{Db, Pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_conflicts_wait_in_the_inbox_until_a_person_settles_them() {
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.contacts("people", 1, 5, false).await;
    b.contacts("contacts", 1000, 1, false).await;
    b.exec("DELETE FROM contacts").await;
    let p = Pair::new(a, b, "conflict = \"manual\"").await;
    p.run().await;
    p.run().await;
    p.a.exec("UPDATE people SET last_name = 'Fromm', first_name = 'Ann' WHERE email = 'user1@example.com'").await;
    p.b.exec("UPDATE contacts SET last_name = 'Frohm' WHERE email = 'user1@example.com'")
        .await;
    p.a.exec("UPDATE people SET credit = 1.00 WHERE email = 'user2@example.com'")
        .await;
    p.b.exec("UPDATE contacts SET credit = 2.00 WHERE email = 'user2@example.com'")
        .await;
    let r = p.run().await;
    assert_eq!(r.conflicts, 2, "{r:?}");
    // The rest of the record syncs; the held field does not move.
    assert_eq!(
        p.b.one("SELECT first_name AS x FROM contacts WHERE email = 'user1@example.com'")
            .await,
        "Ann"
    );
    assert_eq!(
        p.b.one("SELECT last_name AS x FROM contacts WHERE email = 'user1@example.com'")
            .await,
        "Frohm"
    );
    let open = p
        .engine
        .state
        .conflicts(Some("contacts"), true)
        .await
        .unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!(st.waiting, 2, "{st:?}");
    // Seen again, a held conflict stays one inbox entry.
    let r = p.run().await;
    assert_eq!(
        r.a.updated + r.b.updated,
        0,
        "a held field is not written: {r:?}"
    );
    assert_eq!(
        p.engine
            .state
            .conflicts(Some("contacts"), true)
            .await
            .unwrap()
            .len(),
        2
    );

    let name = open.iter().find(|c| c.field_a == "last_name").unwrap();
    assert_eq!(
        (&name.value_a, &name.value_b),
        (&Value::text("Fromm"), &Value::text("Frohm"))
    );
    p.engine
        .state
        .resolve_conflict(name.id, &Resolution::Take(Side::B))
        .await
        .unwrap();
    let credit = open.iter().find(|c| c.field_a == "credit").unwrap();
    p.engine
        .state
        .resolve_conflict(credit.id, &Resolution::Value(Value::text("3.50")))
        .await
        .unwrap();
    let r = p.run().await;
    assert_eq!((r.a.updated, r.b.updated), (2, 1), "{r:?}");
    assert_eq!(
        p.a.one("SELECT last_name AS x FROM people WHERE email = 'user1@example.com'")
            .await,
        "Frohm"
    );
    assert_eq!(
        p.a.one("SELECT credit AS x FROM people WHERE email = 'user2@example.com'")
            .await,
        "3.5"
    );
    assert_eq!(
        p.b.one("SELECT credit AS x FROM contacts WHERE email = 'user2@example.com'")
            .await,
        "3.50"
    );
    assert!(p
        .engine
        .state
        .conflicts(Some("contacts"), true)
        .await
        .unwrap()
        .is_empty());
    let st = p.engine.state.status_counts("contacts").await.unwrap();
    assert_eq!((st.waiting, st.in_sync), (0, 5), "{st:?}");
    // The decision is in the record's history.
    let hist = p
        .engine
        .state
        .history("contacts", Some("1"), None)
        .await
        .unwrap();
    assert!(
        hist.iter()
            .any(|h| h.field == "last_name" && h.new.as_deref() == Some("Frohm")),
        "{hist:?}"
    );
    let r = p.run().await;
    assert_eq!(r.a.updated + r.b.updated, 0, "{r:?}");
}
