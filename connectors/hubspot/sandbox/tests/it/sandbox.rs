//! Sandbox behaviour the official clients do not reach: rate-limit headers,
//! search caps, webhook retries, persistence and seeding.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use puente_hubspot_sandbox::{sign_v3, Running, SandboxOptions, SearchCaps};
use serde_json::{json, Value as J};

async fn call(
    sb: &Running,
    method: reqwest::Method,
    path: &str,
    body: Option<J>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", sb.url))
        .bearer_auth(sb.token());
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn every_answer_but_search_carries_hubspots_rate_limit_headers() {
    let sb = Running::start(SandboxOptions {
        daily_limit: 1000,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let r = call(&sb, reqwest::Method::GET, "/crm/v3/objects/contacts", None).await;
    let h = r.headers();
    assert_eq!(h["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    assert_eq!(h["x-hubspot-ratelimit-max"], "100");
    assert_eq!(h["x-hubspot-ratelimit-remaining"], "99");
    assert_eq!(h["x-hubspot-ratelimit-daily"], "1000");
    assert_eq!(h["x-hubspot-ratelimit-daily-remaining"], "999");
    assert!(h.contains_key("x-hubspot-correlation-id"));
    let r = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-hubspot-ratelimit-max"));
    let r = reqwest::get(format!("{}/crm/v3/objects/contacts", sb.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: J = r.json().await.unwrap();
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
}

#[tokio::test]
async fn search_refuses_what_hubspot_refuses() {
    let sb = Running::start(SandboxOptions {
        search: SearchCaps {
            max_results: 50,
            ..SearchCaps::default()
        },
        search_per_sec: 100,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let past = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/search",
        Some(json!({"after": "40", "limit": 20})),
    )
    .await;
    assert_eq!(past.status(), 400);
    let filters: Vec<J> = (0..7)
        .map(|i| json!({"propertyName": "email", "operator": "EQ", "value": format!("{i}@x.co")}))
        .collect();
    let many = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/search",
        Some(json!({"filterGroups": [{"filters": filters}]})),
    )
    .await;
    assert_eq!(many.status(), 400);
    let two_sorts = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/search",
        Some(json!({"sorts": ["email", "firstname"]})),
    )
    .await;
    assert_eq!(two_sorts.status(), 400);
    let big = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/search",
        Some(json!({"query": "x".repeat(3100)})),
    )
    .await;
    assert_eq!(big.status(), 400);
}

#[derive(Clone, Default)]
struct Got(Arc<Mutex<Vec<(HeaderMap, String)>>>);

#[tokio::test(flavor = "multi_thread")]
async fn failed_webhook_deliveries_are_retried_and_signed() {
    let sb = Running::start(SandboxOptions {
        webhook_retry_base: Duration::from_millis(50),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let got = Got::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/hook", listener.local_addr().unwrap());
    let app =
        axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |axum::extract::State(g): axum::extract::State<Got>,
                     h: HeaderMap,
                     body: String| async move {
                        let mut v = g.0.lock().unwrap();
                        v.push((h, body));
                        // The first delivery fails.
                        if v.len() == 1 {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        }
                    },
                ),
            )
            .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (app_id, key) = (
        sb.sandbox.opts.app_id,
        sb.sandbox.opts.developer_key.clone(),
    );
    let r = call(
        &sb,
        reqwest::Method::PUT,
        &format!("/webhooks/v3/{app_id}/settings?hapikey={key}"),
        Some(json!({"targetUrl": target})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = call(
        &sb,
        reqwest::Method::POST,
        &format!("/webhooks/v3/{app_id}/subscriptions?hapikey={key}"),
        Some(json!({"eventType": "contact.creation", "active": true})),
    )
    .await;
    assert_eq!(r.status(), 201);
    call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "w@x.co"}})),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.0.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retry arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = got.0.lock().unwrap();
    let (h, body) = &v[1];
    let events: J = serde_json::from_str(body).unwrap();
    assert_eq!(events[0]["subscriptionType"], "contact.creation");
    assert_eq!(events[0]["attemptNumber"], 1);
    let ts: i64 = h["x-hubspot-request-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        h["x-hubspot-signature-v3"].to_str().unwrap(),
        sign_v3(
            &sb.sandbox.opts.client_secret,
            "POST",
            &target,
            body.as_bytes(),
            ts
        )
    );
    assert_eq!(sb.sandbox.stats().webhook_failures, 1);
}

#[tokio::test]
async fn state_survives_a_restart_and_a_seed_is_realistic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hubspot.json");
    let opts = SandboxOptions {
        state_file: Some(file.clone()),
        seed: Some(60),
        ..SandboxOptions::default()
    };
    let sb = Running::start(opts.clone()).await.unwrap();
    let listed: J = call(
        &sb,
        reqwest::Method::GET,
        "/crm/v3/objects/contacts?limit=100&associations=companies",
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let contacts = listed["results"].as_array().unwrap();
    assert!(contacts.len() >= 60, "{}", contacts.len());
    assert!(
        contacts.iter().any(|c| c.get("associations").is_some()),
        "seeded contacts have companies"
    );
    assert!(
        contacts
            .iter()
            .any(|c| c["properties"]["lastname"].is_null()),
        "some have no last name"
    );
    let companies: J = call(
        &sb,
        reqwest::Method::GET,
        "/crm/v3/objects/companies?limit=100",
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let domains: Vec<&str> = companies["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["properties"]["domain"].as_str())
        .collect();
    assert!(
        domains.len()
            > domains
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        "a near-duplicate company shares a domain"
    );
    let made: J = call(
        &sb,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "kept@x.co"}})),
    )
    .await
    .json()
    .await
    .unwrap();
    sb.stop().await;
    let again = Running::start(opts).await.unwrap();
    let r = call(
        &again,
        reqwest::Method::GET,
        &format!("/crm/v3/objects/contacts/{}", made["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let dup = call(
        &again,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "kept@x.co"}})),
    )
    .await;
    assert_eq!(dup.status(), 409, "the unique index is rebuilt on load");
}
