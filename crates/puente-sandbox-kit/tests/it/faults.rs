//! The fault middleware in front of a real handler: the vendor's 429 and
//! 5xx answers, slow answers, answers cut off after the write happened,
//! bodies that are not JSON, all counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use puente_sandbox_kit::counters::{FAULTS, RATE_LIMITED};
use puente_sandbox_kit::faults::inject;
use puente_sandbox_kit::{Counters, FaultAnswers, FaultInjector, Faults, Server};
use serde_json::json;

struct Vendor;

impl FaultAnswers for Vendor {
    fn rate_limited(&self) -> Response {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"policy": "vendor"})),
        )
            .into_response()
    }
    fn server_error(&self, status: StatusCode) -> Response {
        (status, Json(json!({"error": "vendor 5xx"}))).into_response()
    }
}

struct Setup {
    server: Server,
    injector: Arc<FaultInjector>,
    counters: Arc<Counters>,
    writes: Arc<AtomicU64>,
}

async fn setup(spec: &str) -> Setup {
    let counters = Arc::new(Counters::default());
    let injector = Arc::new(FaultInjector::new(
        Faults::parse(spec).unwrap(),
        7,
        Vendor,
        counters.clone(),
    ));
    let writes = Arc::new(AtomicU64::new(0));
    let w = writes.clone();
    let app = Router::new()
        .route(
            "/write",
            post(move || {
                let w = w.clone();
                async move {
                    let n = w.fetch_add(1, Ordering::SeqCst) + 1;
                    Json(json!({"status": "COMPLETE", "written": n}))
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            injector.clone(),
            inject,
        ));
    Setup {
        server: Server::local(app).await.unwrap(),
        injector,
        counters,
        writes,
    }
}

async fn write(s: &Setup) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{}/write", s.server.url()))
        .send()
        .await
}

#[tokio::test]
async fn injected_429s_and_5xx_carry_the_vendors_answers_and_write_nothing() {
    let s = setup("429=1").await;
    let r = write(&s).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["policy"],
        "vendor"
    );
    s.injector.set(Faults::parse("5xx=1").unwrap());
    let r = write(&s).await.unwrap();
    assert!(
        [500, 502, 503, 504].contains(&r.status().as_u16()),
        "{}",
        r.status()
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "vendor 5xx"
    );
    assert_eq!(s.writes.load(Ordering::SeqCst), 0);
    assert_eq!(s.counters.get(FAULTS), 2);
    assert_eq!(s.counters.get(RATE_LIMITED), 1);
}

#[tokio::test]
async fn a_dropped_answer_means_the_write_happened_but_no_answer_arrived() {
    let s = setup("drop=1").await;
    let outcome = match write(&s).await {
        Ok(r) => r.text().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(outcome.is_err(), "the client gets no complete answer");
    assert_eq!(s.writes.load(Ordering::SeqCst), 1, "the write happened");
    assert_eq!(s.counters.get(FAULTS), 1);
}

#[tokio::test]
async fn a_malformed_answer_is_not_json_and_a_slow_one_waits() {
    let s = setup("malformed=1").await;
    let r = write(&s).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.ends_with("<html>"), "{text}");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    assert_eq!(s.writes.load(Ordering::SeqCst), 1);

    s.injector.set(Faults::parse("slow=1,slow_ms=300").unwrap());
    let started = Instant::now();
    let r = write(&s).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["written"], 2);
    s.injector.set(Faults::default());
    assert_eq!(write(&s).await.unwrap().status(), 200);
    assert_eq!(s.counters.get(FAULTS), 2, "the last request met no fault");
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let statuses = |s: Setup| async move {
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(write(&s).await.unwrap().status().as_u16());
        }
        out
    };
    let a = statuses(setup("429=0.3,5xx=0.2").await).await;
    let b = statuses(setup("429=0.3,5xx=0.2").await).await;
    assert_eq!(a, b);
    assert!(a.contains(&429) && a.contains(&200), "{a:?}");
}
