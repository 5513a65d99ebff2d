//! Tables on PostgreSQL, MariaDB and SQLite: discovery, types, exact
//! values, incremental reads, failures per row, named queries.

use std::collections::BTreeSet;

use puente_core::{
    ChangeDetection, Connector, FailureCategory, FieldType, ObjectSpec, Value, WriteOp,
    WriteOutcome,
};
use puente_sql::SqlConnector;
use puente_testkit::Db;

fn ddl(db: &Db) -> String {
    match db {
        Db::Pg(_) => "CREATE TYPE tier AS ENUM ('gold', 'silver');
            CREATE TABLE items (id BIGSERIAL PRIMARY KEY, sku VARCHAR(12) NOT NULL UNIQUE, name TEXT, price NUMERIC(16,2),
              qty INTEGER, active BOOLEAN, tier tier, born DATE, seen_at TIMESTAMPTZ,
              updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
            CREATE FUNCTION items_touch() RETURNS trigger AS $$ BEGIN NEW.updated_at = clock_timestamp(); RETURN NEW; END $$ LANGUAGE plpgsql;
            CREATE TRIGGER items_touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION items_touch();
            INSERT INTO items (sku, name, price, qty, active, tier) SELECT 'S' || i, 'Item ' || i, i * 1.25, i, i % 2 = 0, 'gold' FROM generate_series(1, 50) AS i"
            .into(),
        Db::My(_) => "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(12) NOT NULL UNIQUE, name TEXT, price DECIMAL(16,2),
              qty INT, active TINYINT(1), tier ENUM('gold','silver'), born DATE, seen_at DATETIME(6),
              updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));
            INSERT INTO items (sku, name, price, qty, active, tier) SELECT CONCAT('S', seq), CONCAT('Item ', seq), seq * 1.25, seq, seq % 2 = 0, 'gold' FROM seq_1_to_50"
            .into(),
        Db::Lite(_) => "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT, price NUMERIC,
              qty INTEGER, active BOOLEAN, tier TEXT, born DATE, seen_at DATETIME,
              updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
            CREATE TRIGGER items_touch AFTER UPDATE ON items WHEN NEW.updated_at = OLD.updated_at
              BEGIN UPDATE items SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END;
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50)
            INSERT INTO items (sku, name, price, qty, active, tier) SELECT 'S' || i, 'Item ' || i, i * 1.25, i, i % 2 = 0, 'gold' FROM s"
            .into(),
    }
}

fn spec(cursor: bool) -> ObjectSpec {
    ObjectSpec {
        object: "items".into(),
        cursor: cursor.then(|| "updated_at".to_string()),
        page_size: 7,
        overlap_secs: 0,
        ..ObjectSpec::default()
    }
}

async fn tables(db: Db) {
    db.exec(&ddl(&db)).await;
    let conn = SqlConnector::connect(db.url()).await.unwrap();
    conn.check().await.unwrap();
    let obj = conn.open(&spec(true)).await.unwrap();

    // Many keys at once: text compared trimmed and without regard to case
    // (as an e-mail key is), other types exactly.
    assert!(obj.folds_case("sku") && !obj.folds_case("qty"));
    let found = obj
        .find_any(
            "sku",
            &[Value::text(" s7 "), Value::text("S8"), Value::text("nope")],
        )
        .await
        .unwrap();
    let skus: BTreeSet<String> = found
        .iter()
        .filter_map(|r| r.get("sku").to_text())
        .collect();
    assert_eq!(skus, ["S7", "S8"].iter().map(|s| s.to_string()).collect());
    let found = obj
        .find_any("qty", &[Value::Int(3), Value::Int(4), Value::Null])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);

    // Discovery.
    let s = obj.schema();
    assert_eq!(s.id_field, "id");
    assert_eq!(obj.capabilities().change_detection, ChangeDetection::Cursor);
    let ty = |n: &str| s.field(n).unwrap().ty.clone();
    assert_eq!(ty("qty"), FieldType::Integer);
    assert_eq!(ty("seen_at"), FieldType::DateTime);
    assert_eq!(ty("born"), FieldType::Date);
    assert_eq!(ty("active"), FieldType::Boolean);
    if !matches!(db, Db::Lite(_)) {
        assert_eq!(ty("price"), FieldType::Decimal { scale: Some(2) });
        assert_eq!(ty("sku"), FieldType::Text { max_len: Some(12) });
        assert_eq!(
            ty("tier"),
            FieldType::Enum {
                options: vec!["gold".into(), "silver".into()]
            }
        );
    }
    assert!(s.field("sku").unwrap().required);
    assert!(!s.field("name").unwrap().required);
    assert!(!s.field("id").unwrap().required);

    // Paging: every row exactly once over pages of 7.
    let mut ids = Vec::new();
    let mut token = None;
    let mut pages = 0;
    let cursor = loop {
        let p = obj.read(None, token).await.unwrap();
        pages += 1;
        ids.extend(p.records.iter().map(|r| r.id.clone()));
        token = p.next;
        if token.is_none() {
            break p.cursor.expect("a cursor after a full read");
        }
    };
    assert_eq!(pages, 8);
    assert_eq!(ids.len(), 50);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 50);
    let r = obj.read_by_ids(&["3".into(), "999".into()]).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get("price"), &Value::decimal("3.75".parse().unwrap()));
    assert_eq!(r[0].get("active"), &Value::Bool(false));
    assert_eq!(r[0].get("tier").to_text().as_deref(), Some("gold"));
    assert!(
        r[0].modified_at.is_some(),
        "the cursor column is the modification time"
    );
    assert_eq!(obj.list_ids().await.unwrap().len(), 50);

    // Nothing changed: with no overlap, an incremental read starts strictly
    // after the last row seen and returns nothing.
    let p = obj.read(Some(&cursor), None).await.unwrap();
    assert_eq!(
        p.records.len(),
        0,
        "{:?}",
        p.records.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    // Two rows change: an incremental read returns them.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    db.exec("UPDATE items SET name = 'changed' WHERE id IN (5, 40)")
        .await;
    let mut changed = Vec::new();
    let mut token = None;
    loop {
        let p = obj.read(Some(&cursor), token).await.unwrap();
        changed.extend(p.records.into_iter().map(|r| r.id));
        token = p.next;
        if token.is_none() {
            break;
        }
    }
    assert!(
        changed.contains(&"5".to_string()) && changed.contains(&"40".to_string()),
        "{changed:?}"
    );
    assert!(
        changed.len() < 50,
        "only what changed since the cursor: {changed:?}"
    );

    // Find, with a NULL condition.
    let f = obj
        .find(&[
            ("sku".into(), Value::text("S7")),
            ("born".into(), Value::Null),
        ])
        .await
        .unwrap();
    assert_eq!(f.len(), 1);

    // A batch with failures: each fails alone, the rest is written.
    let when: chrono::DateTime<chrono::Utc> = "2024-03-31T01:30:00.123456Z".parse().unwrap();
    let out = obj
        .write(vec![
            WriteOp::Create {
                fields: [
                    ("sku".to_string(), Value::text("NEW1")),
                    (
                        "price".to_string(),
                        Value::decimal("12345678901234.56".parse().unwrap()),
                    ),
                    ("seen_at".to_string(), Value::DateTime(when)),
                    (
                        "born".to_string(),
                        Value::Date("1969-07-20".parse().unwrap()),
                    ),
                ]
                .into(),
            },
            WriteOp::Create {
                fields: [("sku".to_string(), Value::text("S1"))].into(),
            },
            WriteOp::Update {
                id: "2".into(),
                fields: [("qty".to_string(), Value::Int(200))].into(),
            },
            WriteOp::Update {
                id: "9999".into(),
                fields: [("qty".to_string(), Value::Int(1))].into(),
            },
            WriteOp::Create {
                fields: [("sku".to_string(), Value::text("THIS-SKU-IS-TOO-LONG"))].into(),
            },
            WriteOp::Delete { id: "50".into() },
        ])
        .await
        .unwrap();
    let WriteOutcome::Written(created) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(
        created.get("price"),
        &Value::decimal("12345678901234.56".parse().unwrap()),
        "exact decimals"
    );
    assert_eq!(created.get("seen_at"), &Value::DateTime(when));
    assert_eq!(
        created.get("born"),
        &Value::Date("1969-07-20".parse().unwrap())
    );
    let WriteOutcome::Failed(dup) = &out[1] else {
        panic!("{:?}", out[1])
    };
    assert_eq!(dup.category, FailureCategory::Duplicate, "{dup:?}");
    assert!(matches!(&out[2], WriteOutcome::Written(r) if r.get("qty") == &Value::Int(200)));
    let WriteOutcome::Failed(nf) = &out[3] else {
        panic!("{:?}", out[3])
    };
    assert_eq!(nf.category, FailureCategory::NotFound);
    if !matches!(db, Db::Lite(_)) {
        let WriteOutcome::Failed(long) = &out[4] else {
            panic!("{:?}", out[4])
        };
        assert_eq!(long.category, FailureCategory::Validation, "{long:?}");
        assert!(long.message.contains("at most 12"), "{long:?}");
    }
    assert_eq!(out[5], WriteOutcome::Deleted);
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM items WHERE sku = 'NEW1'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM items WHERE id = 50")
            .await,
        0
    );

    // Updates of the same columns go as one statement per run of them:
    // every type lands exactly, and a row that fails (a duplicate sku)
    // fails alone.
    let update = |id: i64, sku: &str| WriteOp::Update {
        id: id.to_string(),
        fields: [
            ("sku".to_string(), Value::text(sku)),
            (
                "price".to_string(),
                Value::decimal(format!("{id}.25").parse().unwrap()),
            ),
            ("tier".to_string(), Value::text("silver")),
            (
                "born".to_string(),
                Value::Date("2001-02-03".parse().unwrap()),
            ),
            ("seen_at".to_string(), Value::DateTime(when)),
            ("active".to_string(), Value::Bool(id % 2 == 1)),
            ("name".to_string(), Value::Null),
        ]
        .into(),
    };
    let mut out = obj
        .write(vec![
            update(10, "U10"),
            update(11, "U11"),
            update(12, "S13"),
            update(13, "U13"),
        ])
        .await
        .unwrap();
    // And a run with no failure: the statement itself, on every type.
    out.extend(
        obj.write(vec![update(14, "U14"), update(15, "U15")])
            .await
            .unwrap(),
    );
    for (k, o) in out.iter().enumerate() {
        let id = 10 + k as i64;
        if id == 12 {
            assert!(
                matches!(o, WriteOutcome::Failed(f) if f.category == FailureCategory::Duplicate),
                "{o:?}"
            );
            continue;
        }
        let WriteOutcome::Written(r) = o else {
            panic!("{id}: {o:?}")
        };
        assert_eq!(r.id, id.to_string());
        assert_eq!(r.get("sku"), &Value::text(format!("U{id}")));
        assert_eq!(
            r.get("price"),
            &Value::decimal(format!("{id}.25").parse().unwrap())
        );
        assert_eq!(r.get("born"), &Value::Date("2001-02-03".parse().unwrap()));
        assert_eq!(r.get("seen_at"), &Value::DateTime(when));
        assert_eq!(r.get("name"), &Value::Null);
    }
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM items WHERE sku = 'S12'")
            .await,
        1,
        "the failed row is as it was"
    );

    // A large batch of creates (written in parts on a server, see
    // `SqlTable::parts`), with a duplicate in each half: every other row is
    // written once, in order, and only the duplicates fail.
    let before = db.count("SELECT COUNT(*) AS x FROM items").await;
    let ops: Vec<WriteOp> = (0..500)
        .map(|i| WriteOp::Create {
            fields: [(
                "sku".to_string(),
                Value::text(match i {
                    100 => "S20".to_string(),
                    400 => "S30".to_string(),
                    i => format!("B{i}"),
                }),
            )]
            .into(),
        })
        .collect();
    let out = obj.write(ops).await.unwrap();
    assert_eq!(out.len(), 500);
    for (i, o) in out.iter().enumerate() {
        match (i, o) {
            (100 | 400, WriteOutcome::Failed(f)) => {
                assert_eq!(f.category, FailureCategory::Duplicate, "{i}: {f:?}")
            }
            (_, WriteOutcome::Written(r)) if i != 100 && i != 400 => {
                assert_eq!(r.get("sku"), &Value::text(format!("B{i}")), "{i}")
            }
            (i, o) => panic!("{i}: {o:?}"),
        }
    }
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM items").await,
        before + 498,
        "each row written once"
    );

    // A named query reads but never writes.
    let q = conn
        .open(&ObjectSpec {
            object: "cheap_items".into(),
            query: Some("SELECT id, sku, price FROM items WHERE price < 10".into()),
            key: Some("id".into()),
            page_size: 100,
            ..ObjectSpec::default()
        })
        .await
        .unwrap();
    let p = q.read(None, None).await.unwrap();
    assert_eq!(
        p.records.len(),
        7,
        "{:?}",
        p.records.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    let err = q
        .write(vec![WriteOp::Delete { id: "1".into() }])
        .await
        .unwrap_err();
    assert!(err.message.contains("cannot be written"), "{}", err.message);

    // A table that does not exist is a config error naming it, the tables
    // there, and the one meant.
    let err = conn
        .open(&ObjectSpec {
            object: "nope".into(),
            page_size: 1,
            ..ObjectSpec::default()
        })
        .await
        .err()
        .unwrap();
    assert!(
        err.message.contains("table nope does not exist") && err.message.contains("items"),
        "{}",
        err.message
    );
    let err = conn
        .open(&ObjectSpec {
            object: "itmes".into(),
            page_size: 1,
            ..ObjectSpec::default()
        })
        .await
        .err()
        .unwrap();
    assert!(
        err.hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean \"items\"?"),
        "{:?}",
        err.hint
    );
}

/// A full read, in key order, while rows change: one already read is edited,
/// then one not read yet (so the read sees a newer cursor value than the
/// first edit). The cursor the read ends with must still lead the next
/// incremental read to the first edit.
async fn edits_during_a_full_read_are_read_next_time(db: Db) {
    db.exec(&ddl(&db)).await;
    let conn = SqlConnector::connect(db.url()).await.unwrap();
    let obj = conn.open(&spec(true)).await.unwrap();
    let first = obj.read(None, None).await.unwrap();
    assert!(first.records.iter().any(|r| r.id == "2"));
    db.exec("UPDATE items SET name = 'early' WHERE id = 2")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    db.exec("UPDATE items SET name = 'late' WHERE id = 49")
        .await;
    let mut next = first.next;
    let mut cursor = first.cursor;
    while let Some(t) = next {
        let p = obj.read(None, Some(t)).await.unwrap();
        next = p.next;
        cursor = p.cursor;
    }
    let cursor = cursor.expect("a full read ends with a cursor");
    let mut again = Vec::new();
    let mut token = None;
    loop {
        let p = obj.read(Some(&cursor), token).await.unwrap();
        again.extend(p.records.iter().map(|r| r.id.clone()));
        token = p.next;
        if token.is_none() {
            break;
        }
    }
    assert!(
        again.contains(&"2".to_string()),
        "{} lost the edit of row 2: {again:?}",
        db.kind()
    );
    assert!(again.contains(&"49".to_string()), "{again:?}");
}

#[tokio::test]
async fn edits_during_a_full_read_are_not_lost() {
    edits_during_a_full_read_are_read_next_time(Db::pg().await).await;
    edits_during_a_full_read_are_read_next_time(Db::mysql().await).await;
    edits_during_a_full_read_are_read_next_time(Db::sqlite()).await;
}

/// Every page of an incremental read from `cursor`: the ids read, and the
/// cursor it ends with.
async fn read_since(
    obj: &dyn puente_core::Object,
    cursor: &puente_core::Cursor,
) -> (BTreeSet<String>, puente_core::Cursor) {
    let mut ids = BTreeSet::new();
    let mut token = None;
    loop {
        let p = obj.read(Some(cursor), token).await.unwrap();
        ids.extend(p.records.iter().map(|r| r.id.clone()));
        token = p.next;
        if token.is_none() {
            return (ids, p.cursor.expect("a read ends with a cursor"));
        }
    }
}

/// Waits until every transaction that holds a transaction id older than
/// now has ended. Other tests write to the same server: a transaction of
/// theirs open across a read widens that read's next overlap (safely, by
/// reading more), which would blur what this test counts.
async fn settled(db: &Db) {
    let mark = db.count("SELECT txid_current() AS x").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db
        .count("SELECT txid_snapshot_xmin(txid_current_snapshot()) AS x")
        .await
        <= mark
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a transaction older than {mark} stayed open for a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// PostgreSQL with the default overlap: a read notes the oldest transaction
/// open as it began, and the next read's overlap takes only the rows written
/// by that transaction or later ones. A table written moments before is not
/// read again, and a transaction that commits late (its rows older than
/// rows already read) is still read.
#[tokio::test]
async fn the_overlap_takes_only_what_a_read_could_have_missed() {
    use sqlx::Connection;
    let db = Db::pg().await;
    db.exec(&ddl(&db)).await;
    let conn = SqlConnector::connect(db.url()).await.unwrap();
    let spec = ObjectSpec {
        overlap_secs: 300,
        ..spec(true)
    };
    let obj = conn.open(&spec).await.unwrap();
    let mut token = None;
    let mut read = 0;
    settled(&db).await;
    let cursor = loop {
        let p = obj.read(None, token).await.unwrap();
        read += p.records.len();
        token = p.next;
        if token.is_none() {
            break p.cursor.unwrap();
        }
    };
    assert_eq!(read, 50);
    assert!(cursor.0.get("x").is_some(), "{cursor:?}");

    // One row changed: the 50 rows written a moment ago are not read again.
    db.exec("UPDATE items SET name = 'one' WHERE id = 5").await;
    settled(&db).await;
    let (ids, cursor) = read_since(obj.as_ref(), &cursor).await;
    assert_eq!(ids, BTreeSet::from(["5".to_string()]));
    settled(&db).await;
    let (ids, cursor) = read_since(obj.as_ref(), &cursor).await;
    assert!(ids.is_empty(), "{ids:?}");

    // Ten rows changed in a transaction that commits after a newer change
    // was read: their cursor values are behind that read's cursor.
    let mut late = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut late).await.unwrap();
    sqlx::query("UPDATE items SET name = 'late' WHERE id BETWEEN 10 AND 19")
        .execute(&mut late)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    db.exec("UPDATE items SET name = 'newer' WHERE id = 20")
        .await;
    let (ids, cursor) = read_since(obj.as_ref(), &cursor).await;
    assert_eq!(ids, BTreeSet::from(["20".to_string()]));
    sqlx::query("COMMIT").execute(&mut late).await.unwrap();
    // Another test's transaction open as this read begins would widen the
    // next read's overlap (safely) and blur its strict count.
    settled(&db).await;
    let (ids, cursor) = read_since(obj.as_ref(), &cursor).await;
    let want: BTreeSet<String> = (10..=19).map(|i| i.to_string()).collect();
    assert!(
        ids.is_superset(&want),
        "the late transaction's rows were missed: {ids:?}"
    );
    assert!(ids.len() <= 11, "read more than could be missed: {ids:?}");
    // Nothing open, nothing changed: nothing to read.
    settled(&db).await;
    let (ids, _) = read_since(obj.as_ref(), &cursor).await;
    assert!(ids.is_empty(), "{ids:?}");
}

#[tokio::test]
async fn tables_on_postgres() {
    tables(Db::pg().await).await;
}

#[tokio::test]
async fn tables_on_mariadb() {
    tables(Db::mysql().await).await;
}

#[tokio::test]
async fn tables_on_sqlite() {
    tables(Db::sqlite()).await;
}

#[tokio::test]
async fn bad_credentials_and_unreachable_servers_are_clear_errors() {
    let e = SqlConnector::connect("postgres://nobody:wrong@127.0.0.1:5432/test")
        .await
        .err()
        .unwrap();
    assert!(
        e.message.contains("nobody") && !e.message.contains("wrong"),
        "the password is never shown: {}",
        e.message
    );
    let e = SqlConnector::connect("mysql://root@127.0.0.1:9/test")
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, puente_core::ErrorKind::Unreachable, "{e:?}");
    assert!(e.hint.is_some());
}
