//! Deliveries to a real receiver: batches per subscriber, the signer's
//! headers, retries with an increasing attempt number, giving up, counting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use puente_sandbox_kit::counters::{WEBHOOK_DELIVERIES, WEBHOOK_FAILURES};
use puente_sandbox_kit::{Counters, Deliveries, Delivery, DeliveryOptions, Server};
use serde_json::{json, Value};

/// What the receiver got: (path, signature header, body).
#[derive(Clone, Default)]
struct Got {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
    /// Answer 500 to this many calls first.
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(
    State(got): State<Got>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let sig = headers
        .get("x-test-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    got.calls.lock().unwrap().push((
        uri.path().to_string(),
        sig,
        serde_json::from_str(&body).unwrap(),
    ));
    let mut f = got.fail_first.lock().unwrap();
    if *f > 0 {
        *f -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Subscribers are paths on the receiver; the body is `{attempt, events}`;
/// the signature names the attempt and the body's length.
struct Test {
    base: String,
    gone: Vec<String>,
}

impl Delivery for Test {
    fn target(&self, subscriber: &str) -> Option<String> {
        (!self.gone.iter().any(|g| g == subscriber)).then(|| format!("{}/{subscriber}", self.base))
    }
    fn body(&self, events: &[Value], attempt: u32) -> Vec<u8> {
        serde_json::to_vec(&json!({"attempt": attempt, "events": events})).unwrap()
    }
    fn sign(&self, _target: &str, body: &[u8], attempt: u32) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            (
                "x-test-signature".into(),
                format!("{attempt}:{}", body.len()),
            ),
        ]
    }
}

struct Setup {
    _receiver: Server,
    got: Got,
    counters: Arc<Counters>,
    deliveries: Deliveries,
}

async fn setup(options: DeliveryOptions, gone: &[&str]) -> Setup {
    let got = Got::default();
    let app = Router::new()
        .route("/{sub}", post(receive))
        .with_state(got.clone());
    let receiver = Server::local(app).await.unwrap();
    let counters = Arc::new(Counters::default());
    let deliveries = Deliveries::new(
        Test {
            base: receiver.url().to_string(),
            gone: gone.iter().map(|s| s.to_string()).collect(),
        },
        options,
        counters.clone(),
    )
    .unwrap();
    Setup {
        _receiver: receiver,
        got,
        counters,
        deliveries,
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_batched_per_subscriber_and_signed() {
    let s = setup(
        DeliveryOptions {
            max_batch: 10,
            gather: Duration::from_millis(200),
            ..DeliveryOptions::default()
        },
        &["gone"],
    )
    .await;
    for i in 0..25 {
        s.deliveries.enqueue("a", json!({"n": i}));
    }
    for i in 0..3 {
        s.deliveries.enqueue("b", json!({"n": i}));
    }
    s.deliveries.enqueue("gone", json!({"n": 0}));
    s.deliveries.start();
    s.deliveries.start();
    until("4 batches", || s.counters.get(WEBHOOK_DELIVERIES) == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = s.got.calls.lock().unwrap().clone();
    let mut sizes: HashMap<String, Vec<usize>> = HashMap::new();
    for (path, sig, body) in &calls {
        let n = body["events"].as_array().unwrap().len();
        sizes.entry(path.clone()).or_default().push(n);
        let len = serde_json::to_vec(body).unwrap().len();
        assert_eq!(sig, &format!("0:{len}"), "signed by the vendor's signer");
    }
    let mut a = sizes.remove("/a").unwrap();
    a.sort();
    assert_eq!(a, [5, 10, 10]);
    assert_eq!(sizes.remove("/b").unwrap(), [3]);
    assert!(
        sizes.is_empty(),
        "nothing for a subscriber that is gone: {sizes:?}"
    );
    let order: Vec<i64> = calls
        .iter()
        .filter(|c| c.0 == "/a")
        .flat_map(|c| c.2["events"].as_array().unwrap().clone())
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order.len(), 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_delivery_is_retried_with_the_next_attempt_number() {
    let s = setup(
        DeliveryOptions {
            retry_base: Duration::from_millis(50),
            ..DeliveryOptions::default()
        },
        &[],
    )
    .await;
    *s.got.fail_first.lock().unwrap() = 2;
    s.deliveries.start();
    s.deliveries.enqueue("a", json!({"n": 1}));
    until("delivered", || s.counters.get(WEBHOOK_DELIVERIES) == 1).await;
    let calls = s.got.calls.lock().unwrap().clone();
    let attempts: Vec<u64> = calls
        .iter()
        .map(|c| c.2["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [0, 1, 2]);
    assert!(calls.iter().all(|c| c.2["events"] == json!([{"n": 1}])));
    assert_eq!(
        calls[2].1.split(':').next(),
        Some("2"),
        "signed per attempt"
    );
    assert_eq!(s.counters.get(WEBHOOK_FAILURES), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_is_given_up_after_its_retries() {
    let s = setup(
        DeliveryOptions {
            retry_base: Duration::from_millis(20),
            max_retries: 2,
            ..DeliveryOptions::default()
        },
        &[],
    )
    .await;
    *s.got.fail_first.lock().unwrap() = usize::MAX;
    s.deliveries.start();
    s.deliveries.enqueue("a", json!({"n": 1}));
    until("three failures", || s.counters.get(WEBHOOK_FAILURES) == 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.got.calls.lock().unwrap().len(), 3, "no fourth attempt");
    assert_eq!(s.counters.get(WEBHOOK_DELIVERIES), 0);
}
