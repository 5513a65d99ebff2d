//! The fuzzers' kept corpora (fuzz/corpus/<target>), replayed on every test
//! run: each input the fuzzers found interesting still parses or fails
//! cleanly. `scripts/fuzz.sh` grows the corpora.

use std::path::PathBuf;

use puente_core::{FieldType, Push, Value};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        out.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

#[test]
fn the_config_corpus_parses_or_fails_cleanly() {
    for input in corpus("config") {
        if let Ok(text) = std::str::from_utf8(&input) {
            let _ = puente_engine::config::parse(text, std::path::Path::new("fuzz/puente.toml"));
        }
    }
}

#[test]
fn the_csv_corpus_parses_or_fails_cleanly() {
    for input in corpus("csv") {
        for d in [b',', b';'] {
            if let Ok((headers, rows)) = puente_file::parse(&input, d, "fuzz.csv") {
                assert!(rows.iter().all(|r| r.len() <= headers.len()));
            }
        }
    }
}

#[test]
fn the_webhook_corpus_is_refused_unless_signed() {
    let now = chrono::Utc::now();
    let ts = now.timestamp_millis();
    let uri = "https://puente.example/hooks/hubspot";
    for body in corpus("hubspot_webhook") {
        let sig = puente_hubspot_sandbox::sign_v3("secret", "POST", uri, &body, ts);
        let push = Push {
            method: "POST".into(),
            uri: uri.into(),
            headers: vec![
                ("x-hubspot-signature-v3".into(), sig),
                ("x-hubspot-request-timestamp".into(), ts.to_string()),
            ],
            body,
        };
        let _ = puente_hubspot::webhook::verify_and_parse("secret", &push, now);
        assert!(puente_hubspot::webhook::verify_and_parse("other", &push, now).is_err());
    }
}

#[test]
fn the_value_corpus_converts_stably() {
    let types = [
        FieldType::Text { max_len: Some(20) },
        FieldType::Integer,
        FieldType::Decimal { scale: Some(2) },
        FieldType::Boolean,
        FieldType::Date,
        FieldType::DateTime,
        FieldType::Email,
        FieldType::Phone,
    ];
    for input in corpus("value_convert") {
        let Ok(text) = std::str::from_utf8(&input) else {
            continue;
        };
        for ty in &types {
            if let Ok(v) = Value::text(text).convert(ty, "f") {
                let again = v
                    .convert(ty, "f")
                    .expect("a converted value converts again");
                assert!(again.same(&v), "{ty:?}: {v:?} became {again:?}");
            }
        }
    }
}

#[tokio::test]
async fn the_json_webhook_corpus_is_refused_unless_authenticated() {
    use puente_core::Connector;
    let dir = tempfile::tempdir().unwrap();
    let c = puente_webhook::WebhookConnector::new(
        dir.path(),
        puente_webhook::WebhookAuth {
            secret: "fuzz-token-0123456789".into(),
            signature_header: None,
        },
    );
    for body in corpus("json_webhook") {
        let _ = puente_webhook::parse_events(&body);
        let push = |token: &str| Push {
            method: "POST".into(),
            uri: "https://puente.example/webhooks/pbx?object=calls".into(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: body.clone(),
        };
        assert!(c.accept_push(&push("forged")).await.is_err());
        let _ = c.accept_push(&push("fuzz-token-0123456789")).await;
    }
}
