//! The bad-input corpus: hostile and broken values read from a database
//! (SQLite holds anything: any type in any column, NUL bytes, bytes that
//! are not UTF-8) synced into typed PostgreSQL columns. Each case has its
//! expected outcome: the value arrives as stated, or its record alone fails
//! (or waits, or is excluded) with a message naming the field, and every
//! other record goes through.
//!
//! The table in docs/reliability.md is rendered from this corpus; the test
//! fails when the two differ (`PUENTE_BLESS=1` rewrites the table).
//! `PUENTE_CORPUS_PROBE=1` prints what each case came to instead of
//! checking it, for writing a new case's expected outcome.

use puente_state::{RecordFilter, RecordRow};

use crate::fixtures::{Db, Pair};

/// What a case must come to.
enum Outcome {
    /// Synced; each (column, text) is what PostgreSQL then holds.
    Synced(&'static [(&'static str, &'static str)]),
    /// The record failed with this category, its message holding these words.
    Failed(&'static str, &'static [&'static str]),
    /// Excluded, the reason holding these words.
    Excluded(&'static [&'static str]),
    /// Waiting, the reason holding these words.
    Waiting(&'static [&'static str]),
}

struct Case {
    /// The table's first column.
    input: &'static str,
    /// Column assignments (SQLite expressions) over a valid baseline row.
    set: &'static [(&'static str, &'static str)],
    outcome: Outcome,
}

use Outcome::*;

const CASES: &[Case] = &[
    Case {
        input: "a valid baseline row",
        set: &[],
        outcome: Synced(&[("name", "Ann"), ("qty", "1"), ("amount", "10.500000000")]),
    },
    Case {
        input: "wrong type: text in an integer column",
        set: &[("qty", "'abc'")],
        outcome: Failed("mapping", &["field qty", "\"abc\"", "integer"]),
    },
    Case {
        input: "wrong type: a fraction in an integer column",
        set: &[("qty", "'2.5'")],
        outcome: Failed("mapping", &["field qty", "2.5"]),
    },
    Case {
        input: "invalid e-mail",
        set: &[("email", "'not-an-email'")],
        outcome: Failed("validation", &["field email", "not a valid e-mail"]),
    },
    Case {
        input: "e-mail with two @",
        set: &[("email", "'a@b@example.com'")],
        outcome: Failed("validation", &["field email"]),
    },
    Case {
        input: "internationalised e-mail (UTF-8 local part and domain)",
        set: &[("email", "'josé.núñez@exämple.es'")],
        outcome: Synced(&[("email", "josé.núñez@exämple.es")]),
    },
    Case {
        input: "e-mail in mixed case with spaces around",
        set: &[("email", "'  Mixed.Case@Example.COM '")],
        outcome: Synced(&[("email", "Mixed.Case@Example.COM")]),
    },
    Case {
        input: "phone, international with punctuation",
        set: &[("phone", "'+1 (415) 555-0100'")],
        outcome: Synced(&[("phone", "+14155550100")]),
    },
    Case {
        input: "phone, 00 prefix (which depends on the country dialled from)",
        set: &[("phone", "'0044 20 7946 0958'")],
        outcome: Synced(&[("phone", "0044 20 7946 0958")]),
    },
    Case {
        input: "phone, national without a region configured",
        set: &[("phone", "'(415) 555-0100'")],
        outcome: Synced(&[("phone", "(415) 555-0100")]),
    },
    Case {
        input: "phone with an extension",
        set: &[("phone", "'+49 30 901820 ext. 12'")],
        outcome: Synced(&[("phone", "+4930901820")]),
    },
    Case {
        input: "phone that is not a number",
        set: &[("phone", "'call the office'")],
        outcome: Synced(&[("phone", "call the office")]),
    },
    Case {
        input: "over-long string (41 characters into VARCHAR(40))",
        set: &[("name", "'Abcdefghijklmnopqrstuvwxyzabcdefghijklmno'")],
        outcome: Failed("validation", &["field name", "at most 40"]),
    },
    Case {
        input: "NUL byte inside a string",
        set: &[("name", "'Nu' || char(0) || 'll'")],
        outcome: Failed("validation", &["field name", "NUL"]),
    },
    Case {
        input: "bytes that are not UTF-8",
        set: &[("name", "CAST(x'C328FF' AS TEXT)")],
        outcome: Failed("validation", &["field name", "invalid utf-8"]),
    },
    Case {
        input: "emoji",
        set: &[("name", "'Zoë 🚀✨👩🏽‍💻'")],
        outcome: Synced(&[("name", "Zoë 🚀✨👩🏽‍💻")]),
    },
    Case {
        input: "right-to-left and mixed-direction text",
        set: &[("name", "'مرحبا שלום abc'")],
        outcome: Synced(&[("name", "مرحبا שלום abc")]),
    },
    Case {
        input: "date before 1970",
        set: &[("born", "'1903-02-28'")],
        outcome: Synced(&[("born", "1903-02-28")]),
    },
    Case {
        input: "date after 2100",
        set: &[("born", "'2150-12-31'")],
        outcome: Synced(&[("born", "2150-12-31")]),
    },
    Case {
        input: "date that does not exist",
        set: &[("born", "'2023-02-30'")],
        outcome: Failed("mapping", &["field born", "2023-02-30"]),
    },
    Case {
        input: "time with a negative offset",
        set: &[("seen_at", "'2026-11-22T10:00:00-05:00'")],
        outcome: Synced(&[("seen_at", "2026-11-22 15:00:00")]),
    },
    Case {
        input: "DST edge: the repeated hour, told apart by its offset",
        set: &[("seen_at", "'2026-10-25T02:30:00+01:00'")],
        outcome: Synced(&[("seen_at", "2026-10-25 01:30:00")]),
    },
    Case {
        input: "DST edge: the hour before the gap",
        set: &[("seen_at", "'2026-03-29T01:59:59+01:00'")],
        outcome: Synced(&[("seen_at", "2026-03-29 00:59:59")]),
    },
    Case {
        input: "instant before 1970",
        set: &[("seen_at", "'1969-07-20T20:17:40Z'")],
        outcome: Synced(&[("seen_at", "1969-07-20 20:17:40")]),
    },
    Case {
        input: "decimal beyond f64 (29 significant digits)",
        set: &[("amount", "'12345678901234567890.123456789'")],
        outcome: Synced(&[("amount", "12345678901234567890.123456789")]),
    },
    Case {
        input: "decimal with more places than the column",
        set: &[("amount", "'1.0000000001'")],
        outcome: Failed(
            "validation",
            &["field amount", "more than 9 decimal places"],
        ),
    },
    Case {
        input: "number written with an exponent",
        set: &[("amount", "'1e400'")],
        outcome: Failed("mapping", &["field amount", "1e400"]),
    },
    Case {
        input: "unknown picklist value",
        set: &[("stage", "'vip'")],
        outcome: Failed("mapping", &["field stage", "\"vip\""]),
    },
    Case {
        input: "dangling reference (company that does not exist)",
        set: &[("company_id", "999")],
        outcome: Waiting(&["waiting on companies"]),
    },
    Case {
        input: "duplicate keys within one batch",
        set: &[("email", "'twin@example.com'")],
        outcome: Excluded(&["twin@example.com"]),
    },
    Case {
        input: "duplicate keys within one batch (its twin)",
        set: &[("email", "'twin@example.com'")],
        outcome: Excluded(&["twin@example.com"]),
    },
];

const COLUMNS: &[&str] = &[
    "email",
    "name",
    "phone",
    "born",
    "seen_at",
    "amount",
    "stage",
    "qty",
    "company_id",
];

fn baseline(i: usize) -> [String; 9] {
    [
        format!("'case{i}@example.com'"),
        "'Ann'".into(),
        "'+1 202 555 0100'".into(),
        "'1980-05-17'".into(),
        "'2026-01-02T03:04:05Z'".into(),
        "'10.5'".into(),
        "'lead'".into(),
        "'1'".into(),
        "1".into(),
    ]
}

async fn setup() -> Pair {
    let a = Db::sqlite();
    let b = Db::pg().await;
    a.exec(
        "CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO companies (id, name) VALUES (1, 'Acme');
         CREATE TABLE src (id INTEGER PRIMARY KEY, email TEXT, name TEXT, phone TEXT, born DATE,
           seen_at DATETIME, amount TEXT, stage TEXT, qty TEXT, company_id INTEGER)",
    )
    .await;
    let mut rows = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut values = baseline(i);
        for (col, expr) in case.set {
            let at = COLUMNS
                .iter()
                .position(|c| c == col)
                .expect("a corpus column");
            values[at] = expr.to_string();
        }
        rows.push(format!("({}, {})", i + 1, values.join(", ")));
    }
    a.exec(&format!(
        "INSERT INTO src (id, {}) VALUES {}",
        COLUMNS.join(", "),
        rows.join(",\n")
    ))
    .await;
    b.exec(
        "CREATE TABLE companies (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE dst (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL, name VARCHAR(40),
           phone TEXT, born DATE, seen_at TIMESTAMP, amount NUMERIC(40,9),
           stage TEXT CHECK (stage IN ('L', 'C')), qty INTEGER,
           company_id BIGINT REFERENCES companies (id))",
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
name = "companies"
direction = "a-to-b"
a = {{ connection = "src", object = "companies" }}
b = {{ connection = "dst", object = "companies" }}
match = [{{ a = "name", b = "name" }}]
fields = [{{ a = "name", b = "name" }}]
[[syncs]]
name = "people"
direction = "a-to-b"
a = {{ connection = "src", object = "src" }}
b = {{ connection = "dst", object = "dst" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "name", b = "name" }},
  {{ a = "phone", b = "phone" }},
  {{ a = "born", b = "born" }},
  {{ a = "seen_at", b = "seen_at" }},
  {{ a = "amount", b = "amount" }},
  {{ a = "stage", b = "stage", values = {{ lead = "L", customer = "C" }} }},
  {{ a = "qty", b = "qty" }},
  {{ a = "company_id", b = "company_id", ref = "companies" }},
]
"#,
        a.url(),
        b.url()
    );
    Pair::with_config(a, b, &cfg).await
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Synced(cols) => format!(
            "synced: {}",
            cols.iter()
                .map(|(c, v)| format!("{c} = `{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Failed(cat, words) => format!("fails alone: `{cat}`, naming {}", quoted(words)),
        Excluded(words) => format!("both excluded as ambiguous, naming {}", quoted(words)),
        Waiting(words) => format!("waits (retried each run), saying {}", quoted(words)),
    }
}

fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{}`", w.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The markdown table docs/reliability.md carries.
fn render() -> String {
    let mut t = String::from("| input | value (SQLite) | outcome |\n|---|---|---|\n");
    for c in CASES {
        let value = if c.set.is_empty() {
            "—".to_string()
        } else {
            c.set
                .iter()
                .map(|(col, v)| format!("{col} = `{}`", v.replace('|', "\\|")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.push_str(&format!(
            "| {} | {value} | {} |\n",
            c.input,
            outcome_text(&c.outcome)
        ));
    }
    t
}

fn check_row(i: usize, case: &Case, row: Option<&RecordRow>, synced: Option<&Vec<String>>) {
    let id = (i + 1).to_string();
    let reason = row.and_then(|r| r.reason.clone()).unwrap_or_default();
    let status = row.map(|r| r.status.as_str()).unwrap_or("none");
    let has = |words: &[&str]| {
        for w in words {
            assert!(
                reason.contains(w),
                "case {id} ({}): reason {reason:?} lacks {w:?}",
                case.input
            );
        }
    };
    match &case.outcome {
        Synced(cols) => {
            assert_eq!(status, "in_sync", "case {id} ({}): {row:?}", case.input);
            let got = synced.unwrap_or_else(|| panic!("case {id} ({}): not in dst", case.input));
            for (col, want) in *cols {
                let at = COLUMNS.iter().position(|c| c == col).unwrap();
                assert_eq!(&got[at], want, "case {id} ({}): column {col}", case.input);
            }
        }
        Failed(cat, words) => {
            assert_eq!(status, "failed", "case {id} ({}): {row:?}", case.input);
            assert_eq!(
                row.unwrap().category.as_deref(),
                Some(*cat),
                "case {id} ({})",
                case.input
            );
            assert!(
                row.unwrap().hint.as_deref().is_some_and(|h| !h.is_empty()),
                "case {id} ({}): no hint",
                case.input
            );
            has(words);
        }
        Excluded(words) => {
            assert_eq!(status, "excluded", "case {id} ({}): {row:?}", case.input);
            has(words);
        }
        Waiting(words) => {
            assert_eq!(status, "waiting", "case {id} ({}): {row:?}", case.input);
            has(words);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_fails_each_record_alone_with_its_field() {
    let p = setup().await;
    for def in p.engine.config.syncs.clone() {
        p.engine
            .run(&def, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("sync {}: {e}", def.name));
    }
    let rows = p
        .engine
        .state
        .records(&RecordFilter {
            sync: Some("people".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // What PostgreSQL holds, by the source id its e-mail says (case N).
    let dst =
        p.b.strings(&format!(
            "SELECT concat_ws('|', id::text, {}) AS x FROM dst ORDER BY id",
            COLUMNS
                .iter()
                .map(|c| match *c {
                    "seen_at" => "to_char(seen_at, 'YYYY-MM-DD HH24:MI:SS')".to_string(),
                    "company_id" => "coalesce(company_id::text, '')".to_string(),
                    c => format!("coalesce({c}::text, '')"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await;
    // id → the columns.
    let dst: std::collections::BTreeMap<String, Vec<String>> = dst
        .iter()
        .map(|r| {
            let mut cols: Vec<String> = r.split('|').map(str::to_string).collect();
            (cols.remove(0), cols)
        })
        .collect();
    let probe = std::env::var("PUENTE_CORPUS_PROBE").is_ok();
    for (i, case) in CASES.iter().enumerate() {
        let id = (i + 1).to_string();
        let row = rows.iter().find(|r| r.a_id.as_deref() == Some(id.as_str()));
        // The dst row of this case: found through the entry's b id.
        let synced = row.and_then(|r| r.b_id.as_ref()).and_then(|b| dst.get(b));
        if probe {
            eprintln!(
                "case {id} {}: {:?} {:?} {:?} | {:?}",
                case.input,
                row.map(|r| &r.status),
                row.and_then(|r| r.category.as_ref()),
                row.and_then(|r| r.reason.as_ref()),
                synced
            );
            continue;
        }
        check_row(i, case, row, synced);
    }
    assert!(!probe, "probe mode prints outcomes only");
    // Every other record went through: the valid ones are all in dst.
    let expected_synced = CASES
        .iter()
        .filter(|c| matches!(c.outcome, Synced(_)))
        .count();
    assert_eq!(dst.len(), expected_synced);

    // A failed record is tried again each run and goes through once its
    // source is fixed.
    let failed = p.failed().await.len();
    p.a.exec("UPDATE src SET email = 'fixed@example.com' WHERE id = 4")
        .await;
    let def = p.engine.config.sync("people").unwrap().clone();
    let r = p.engine.run(&def, &Default::default()).await.unwrap();
    assert_eq!(r.b.created, 1, "{r:?}");
    assert_eq!(p.failed().await.len(), failed - 1);

    // The table in docs/reliability.md is this corpus.
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reliability.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let table = render();
    if !doc.contains(&table) {
        if std::env::var("PUENTE_BLESS").is_ok() {
            let start = doc.find("<!-- corpus -->\n").expect("marker") + "<!-- corpus -->\n".len();
            let end = doc.find("<!-- /corpus -->").expect("marker");
            std::fs::write(doc_path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
        } else {
            panic!(
                "docs/reliability.md's corpus table differs; PUENTE_BLESS=1 rewrites it:\n{table}"
            );
        }
    }
}
