use puente_state::RecordFilter;

use crate::fixtures::{Db, Pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_fail_their_record_with_a_category_and_the_rest_syncs() {
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.exec(
        "CREATE TABLE src (id INTEGER PRIMARY KEY, email TEXT, name TEXT, qty TEXT, stage TEXT, amount TEXT);
         INSERT INTO src (email, name, qty, stage, amount) VALUES
           ('ok1@example.com', 'Ann', '1', 'lead', '10.25'),
           ('ok2@example.com', 'Bob', '2', 'customer', '99999999.99'),
           ('wrong-type@example.com', 'Cy', 'abc', 'lead', '1'),
           ('not-an-email', 'Di', '4', 'lead', '1'),
           ('long@example.com', 'A name far longer than ten', '5', 'lead', '1'),
           ('vip@example.com', 'Ed', '6', 'vip', '1'),
           ('ok3@example.com', 'Flo', '7', 'lead', '1'),
           ('toomanydigits@example.com', 'Gus', '8', 'lead', '1.234')",
    )
    .await;
    b.exec(
        "CREATE TABLE dst (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL, name VARCHAR(10), qty INTEGER,
           stage TEXT CHECK (stage IN ('L', 'C')), amount NUMERIC(10,2))",
    )
    .await;
    let cfg = format!(
        r#"
[state]
url = "sqlite://state.db"
[connections.src]
kind = "sqlite"
url = "{}"
[connections.dst]
kind = "postgres"
url = "{}"
[[syncs]]
name = "orders"
direction = "a-to-b"
a = {{ connection = "src", object = "src" }}
b = {{ connection = "dst", object = "dst" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "name", b = "name" }},
  {{ a = "qty", b = "qty" }},
  {{ a = "stage", b = "stage", values = {{ lead = "L", customer = "C" }} }},
  {{ a = "amount", b = "amount" }},
]
"#,
        a.url(),
        b.url()
    );
    let p = Pair::with_config(a, b, &cfg).await;
    let r = p.run().await;
    assert_eq!(r.b.created, 3, "{r:?}");
    assert_eq!(r.b.failed, 5, "{r:?}");
    assert_eq!(p.b.count("SELECT COUNT(*) AS x FROM dst").await, 3);
    assert_eq!(
        p.b.one("SELECT amount AS x FROM dst WHERE email = 'ok2@example.com'")
            .await,
        "99999999.99"
    );
    let failed = p
        .engine
        .state
        .records(&RecordFilter {
            status: Some("failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let by_id = |id: &str| {
        failed
            .iter()
            .find(|r| r.a_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not failed: {failed:?}"))
    };
    let check = |id: &str, category: &str, words: &[&str]| {
        let r = by_id(id);
        assert_eq!(r.category.as_deref(), Some(category), "{r:?}");
        let reason = r.reason.clone().unwrap_or_default();
        for w in words {
            assert!(reason.contains(w), "{id}: {reason:?} lacks {w:?}");
        }
        assert!(r.hint.as_deref().is_some_and(|h| !h.is_empty()), "{r:?}");
    };
    check("3", "mapping", &["field qty", "\"abc\"", "integer"]);
    check("4", "validation", &["field email", "not a valid e-mail"]);
    check("5", "validation", &["field name", "at most 10"]);
    check("6", "mapping", &["field stage", "\"vip\""]);
    check(
        "8",
        "validation",
        &["field amount", "more than 2 decimal places"],
    );
    let st = p.engine.state.status_counts("orders").await.unwrap();
    assert_eq!(st.failures_by_category.get("mapping"), Some(&2));
    assert_eq!(st.failures_by_category.get("validation"), Some(&3));

    // Fixing a source value lets the record through on the next run.
    p.a.exec("UPDATE src SET email = 'di@example.com' WHERE id = 4")
        .await;
    let r = p.run().await;
    assert_eq!(r.b.created, 1, "{r:?}");
    assert_eq!(
        p.engine.state.status_counts("orders").await.unwrap().failed,
        4
    );
}
