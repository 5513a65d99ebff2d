use puente_engine::{config, Engine};
use puente_testkit::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_finds_missing_fields_and_picklist_drift_before_any_write() {
    let a = Db::pg().await;
    let b = Db::mysql().await;
    a.exec(
        "CREATE TYPE stage AS ENUM ('lead', 'customer', 'vip');
         CREATE TABLE people (id BIGSERIAL PRIMARY KEY, email TEXT, stage stage, name TEXT NOT NULL)",
    )
    .await;
    b.exec(
        "CREATE TABLE contacts (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(200), status ENUM('L','C'),
           full_name VARCHAR(100) NOT NULL, code VARCHAR(10) NOT NULL)",
    )
    .await;
    let text = format!(
        r#"[state]
url = "sqlite://state.db"
[connections.l]
kind = "postgres"
url = "{}"
[connections.r]
kind = "mysql"
url = "{}"
[[syncs]]
name = "people"
a = {{ connection = "l", object = "people" }}
b = {{ connection = "r", object = "contacts" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "stage", b = "status", values = {{ lead = "L", customer = "X" }} }},
  {{ a = "name", b = "fullname" }},
]
"#,
        a.url(),
        b.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("puente.toml");
    std::fs::write(&path, &text).unwrap();
    let engine = Engine::open(config::load(&path).await.unwrap())
        .await
        .unwrap();
    let diags: Vec<String> = engine
        .validate_live()
        .await
        .iter()
        .map(|d| d.to_string())
        .collect();
    let has = |needle: &str| diags.iter().any(|d| d.contains(needle));
    // A mapped value the target does not offer: an error, on the field's line.
    assert!(has("puente.toml:16: sync people: field stage maps to 1 value(s) [\"X\"] that b.status does not offer (options: L, C)"), "{diags:#?}");
    // A source option nobody mapped: a warning with the fix (both ways).
    assert!(
        has("warning: sync people: a.stage offers [\"vip\"] which has no mapping towards b.status"),
        "{diags:#?}"
    );
    assert!(
        has("fix: add vip = \"…\" to the field's values"),
        "{diags:#?}"
    );
    assert!(
        has("warning: sync people: b.status offers [\"C\"] which has no mapping towards a.stage"),
        "{diags:#?}"
    );
    // A field that does not exist, with the columns to choose from.
    assert!(
        has("puente.toml:17: sync people: b (contacts) has no field fullname"),
        "{diags:#?}"
    );
    assert!(
        has("use one of: id, email, status, full_name, code"),
        "{diags:#?}"
    );
    // A required column no field fills.
    assert!(
        has("b.code is required on contacts and no field maps to it"),
        "{diags:#?}"
    );
}
