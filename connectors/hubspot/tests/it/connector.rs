//! The connector against the sandbox: incremental reads past the search
//! cap, per-record failures from a 207, faults retried without loss, OAuth
//! refresh and a revoked refresh token.

use std::collections::BTreeSet;

use puente_core::{
    Connector, ErrorKind, FailureCategory, Fields, Object, ObjectSpec, Value, WriteOp, WriteOutcome,
};
use puente_hubspot::{Auth, HubSpotConnector, Settings};
use puente_hubspot_sandbox::{Faults, Running, SandboxOptions, SearchCaps};

fn spec(object: &str, options: &[(&str, &str)]) -> ObjectSpec {
    ObjectSpec {
        object: object.into(),
        overlap_secs: 0,
        page_size: 5000,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ObjectSpec::default()
    }
}

fn connector(sb: &Running) -> HubSpotConnector {
    HubSpotConnector::new(Settings::new(
        Some(sb.url.clone()),
        Auth::Token(sb.token().into()),
    ))
}

fn contact(i: usize) -> Fields {
    let mut f = Fields::new();
    f.insert("email".into(), Value::Email(format!("c{i}@example.com")));
    f.insert("firstname".into(), Value::text(format!("C{i}")));
    f
}

async fn read_all(
    o: &dyn Object,
    since: Option<&puente_core::Cursor>,
) -> (Vec<String>, Option<puente_core::Cursor>) {
    let mut ids = Vec::new();
    let mut page = None;
    loop {
        let p = o.read(since, page).await.unwrap();
        ids.extend(p.records.into_iter().map(|r| r.id));
        match p.next {
            Some(n) => page = Some(n),
            None => return (ids, p.cursor),
        }
    }
}

async fn create_contacts(o: &dyn Object, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|i| WriteOp::Create {
                fields: contact(*i),
            })
            .collect();
        for out in o.write(ops).await.unwrap() {
            match out {
                WriteOutcome::Written(r) => ids.push(r.id),
                other => panic!("{other:?}"),
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_reads_miss_nothing_past_the_search_cap() {
    let sb = Running::start(SandboxOptions {
        rate_limit_per_10s: 10_000,
        search_per_sec: 1000,
        search: SearchCaps {
            max_results: 500,
            ..SearchCaps::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let c = connector(&sb);
    let o = c
        .open(&spec("contacts", &[("search_cap", "500")]))
        .await
        .unwrap();
    let (_, cursor) = read_all(o.as_ref(), None).await;
    let cursor = cursor.unwrap();
    // 1,200 changes since the cursor: more than two search windows.
    let ids = create_contacts(o.as_ref(), 1200).await;
    let (seen, _) = read_all(o.as_ref(), Some(&cursor)).await;
    let seen: BTreeSet<String> = seen.into_iter().collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of 1200 changes missed: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_record_fails_alone_with_its_field_named() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let c = connector(&sb);
    let o = c.open(&spec("contacts", &[])).await.unwrap();
    let ids = create_contacts(o.as_ref(), 3).await;
    let mut bad = Fields::new();
    bad.insert("lifecyclestage".into(), Value::Enum("royalty".into()));
    let mut good = Fields::new();
    good.insert("lastname".into(), Value::text("Fine"));
    let out = o
        .write(vec![
            WriteOp::Update {
                id: ids[0].clone(),
                fields: good.clone(),
            },
            WriteOp::Update {
                id: ids[1].clone(),
                fields: bad,
            },
            WriteOp::Update {
                id: "999999".into(),
                fields: good.clone(),
            },
            WriteOp::Create {
                fields: contact(50),
            },
        ])
        .await
        .unwrap();
    assert!(
        matches!(&out[0], WriteOutcome::Written(r) if r.get("lastname") == &Value::text("Fine")),
        "{:?}",
        out[0]
    );
    match &out[1] {
        WriteOutcome::Failed(f) => {
            assert_eq!(f.category, FailureCategory::Validation);
            assert!(
                f.message.contains(&ids[1]) && f.message.contains("lifecyclestage"),
                "{}",
                f.message
            );
            assert!(f.hint.contains("options"), "{}", f.hint);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&out[2], WriteOutcome::Failed(f) if f.category == FailureCategory::NotFound),
        "{:?}",
        out[2]
    );
    assert!(matches!(&out[3], WriteOutcome::Written(_)), "{:?}", out[3]);
    // Upserts on email are refused as a whole batch when one input is bad:
    // the bad one fails alone, its neighbours are written.
    let mut bad_email = contact(60);
    bad_email.insert("email".into(), Value::text("not-an-email"));
    let mut ops: Vec<WriteOp> = (61..70)
        .map(|i| WriteOp::Create { fields: contact(i) })
        .collect();
    ops.insert(4, WriteOp::Create { fields: bad_email });
    let out = o.write(ops).await.unwrap();
    for (n, w) in out.iter().enumerate() {
        match (n, w) {
            (4, WriteOutcome::Failed(f)) => {
                assert_eq!(f.category, FailureCategory::Validation);
                assert!(
                    f.message.contains("not-an-email") && f.hint.contains("e-mail"),
                    "{f:?}"
                );
            }
            (4, other) => panic!("{other:?}"),
            (_, WriteOutcome::Written(_)) => {}
            (_, other) => panic!("{n}: {other:?}"),
        }
    }
    // A new company without name or domain: HubSpot's required rule, per record.
    let co = c.open(&spec("companies", &[])).await.unwrap();
    let mut named = Fields::new();
    named.insert("name".into(), Value::text("Named"));
    let mut nameless = Fields::new();
    nameless.insert("city".into(), Value::text("Nowhere"));
    let out = co
        .write(vec![
            WriteOp::Create { fields: named },
            WriteOp::Create { fields: nameless },
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], WriteOutcome::Written(_)), "{:?}", out[0]);
    assert!(
        matches!(&out[1], WriteOutcome::Failed(f) if f.category == FailureCategory::Validation && f.message.contains("name")),
        "{:?}",
        out[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_retried_and_nothing_is_lost_or_doubled() {
    let sb = Running::start(SandboxOptions {
        rate_limit_per_10s: 10_000,
        search_per_sec: 1000,
        faults: Faults::parse("429=0.2,5xx=0.2,drop=0.1,malformed=0.05,slow=0.05,slow_ms=50")
            .unwrap(),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let mut settings = Settings::new(Some(sb.url.clone()), Auth::Token(sb.token().into()));
    settings.rate_limit_per_10s = 10_000;
    let c = HubSpotConnector::new(settings);
    let o = loop {
        // Opening reads the properties: it may meet a fault too, and is retried.
        if let Ok(o) = c.open(&spec("contacts", &[])).await {
            break o;
        }
    };
    // Contacts are created by upsert on email, so a lost answer is retried
    // without creating anyone twice.
    let mut written = 0;
    for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<WriteOp> = chunk
            .iter()
            .map(|i| WriteOp::Create {
                fields: contact(*i),
            })
            .collect();
        let out = o.write(ops).await.expect("retries absorb the faults");
        written += out
            .iter()
            .filter(|w| matches!(w, WriteOutcome::Written(_)))
            .count();
    }
    assert_eq!(written, 1000);
    let ids = o.list_ids().await.unwrap();
    assert_eq!(ids.len(), 1000, "every contact exactly once");
    let stats = c.stats();
    assert!(
        stats.retries > 0 && stats.rate_limited > 0,
        "{stats:?} {:?}",
        sb.sandbox.stats()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_tokens_are_refreshed_and_a_revoked_refresh_token_is_a_clear_error() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let tokens = sb
        .install_app(&["crm.objects.contacts.read"])
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let c = HubSpotConnector::new(Settings::new(
        Some(sb.url.clone()),
        Auth::OAuth {
            client_id: "sandbox-client-id".into(),
            client_secret: "sandbox-client-secret".into(),
            refresh_token: refresh.clone(),
        },
    ));
    c.check().await.unwrap();
    // The access token expires: the next call refreshes and goes through.
    sb.sandbox.expire_access_tokens();
    c.check().await.unwrap();
    // The app is uninstalled: the refresh token is revoked.
    sb.sandbox.revoke_refresh_token(&refresh);
    sb.sandbox.expire_access_tokens();
    let e = c.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("authorize the app again"),
        "{e:?}"
    );
    assert!(
        !format!("{e} {:?}", e.hint).contains(&refresh),
        "the token must not appear in errors"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_daily_quota_stops_calls_with_a_clear_error() {
    let sb = Running::start(SandboxOptions {
        daily_limit: 3,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let c = connector(&sb);
    for _ in 0..3 {
        c.check().await.unwrap();
    }
    let e = c.check().await.unwrap_err();
    assert!(
        e.hint.as_deref().unwrap_or("").contains("daily API quota"),
        "{e:?}"
    );
    let before = sb.sandbox.stats().rate_limited;
    for _ in 0..5 {
        assert!(c.check().await.is_err());
    }
    // Once HubSpot said the quota is spent, Puente stops asking.
    assert_eq!(sb.sandbox.stats().rate_limited, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_found_by_many_keys_at_once() {
    let sb = Running::start(SandboxOptions {
        rate_limit_per_10s: 10_000,
        search_per_sec: 1000,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let c = connector(&sb);
    let o = c.open(&spec("contacts", &[])).await.unwrap();
    let ids = create_contacts(o.as_ref(), 250).await;
    sb.sandbox.reset_stats();
    // 150 e-mails that exist, and one that does not.
    let mut wanted: Vec<Value> = (0..150)
        .map(|i| Value::Email(format!("c{i}@example.com")))
        .collect();
    wanted.push(Value::Email("nobody@example.com".into()));
    let found = o.find_any("email", &wanted).await.unwrap();
    let found: BTreeSet<String> = found.into_iter().map(|r| r.id).collect();
    let expected: BTreeSet<String> = ids[..150].iter().cloned().collect();
    assert_eq!(found, expected);
    // Two searches of up to 100 values, not one per e-mail.
    let stats = sb.sandbox.stats();
    assert_eq!(stats.searches, 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_asks_only_for_the_properties_the_sync_uses() {
    let sb = Running::start(SandboxOptions {
        rate_limit_per_10s: 10_000,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let c = connector(&sb);
    let all = c.open(&spec("contacts", &[])).await.unwrap();
    create_contacts(all.as_ref(), 3).await;
    let narrow = c
        .open(&ObjectSpec {
            reads: Some(["email".to_string()].into_iter().collect()),
            ..spec("contacts", &[])
        })
        .await
        .unwrap();
    let page = narrow.read(None, None).await.unwrap();
    assert_eq!(page.records.len(), 3);
    for r in &page.records {
        assert!(matches!(r.get("email"), Value::Email(_)), "{r:?}");
        let names: Vec<&str> = r.fields.keys().map(String::as_str).collect();
        assert!(!names.contains(&"firstname"), "{names:?}");
        assert!(!names.contains(&"phone"), "{names:?}");
    }
    // Without the list, every property is read.
    let page = all.read(None, None).await.unwrap();
    assert!(page
        .records
        .iter()
        .all(|r| r.get("firstname").to_text().is_some()));
}
