//! A server runs until stopped or dropped, and `stop` waits for what the
//! service does after serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use puente_sandbox_kit::harness::{bind, serve};
use puente_sandbox_kit::Server;

fn app() -> Router {
    Router::new().route("/ping", get(|| async { "pong" }))
}

async fn ping(url: &str) -> Result<String, reqwest::Error> {
    reqwest::get(format!("{url}/ping")).await?.text().await
}

#[tokio::test]
async fn a_server_answers_on_its_address_until_stopped() {
    let server = Server::local(app()).await.unwrap();
    assert_eq!(server.url(), format!("http://{}", server.addr()));
    assert_eq!(ping(server.url()).await.unwrap(), "pong");
    let url = server.url().to_string();
    server.stop().await.unwrap();
    assert!(ping(&url).await.is_err(), "nothing listens after stop");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = Server::local(app()).await.unwrap();
    let url = server.url().to_string();
    drop(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ping(&url).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still serving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stop_waits_for_what_the_service_does_after_serving() {
    let saved = Arc::new(AtomicBool::new(false));
    let flag = saved.clone();
    let server = Server::spawn(
        bind("127.0.0.1:0").await.unwrap(),
        move |l, shutdown| async move {
            let r = serve(l, app(), shutdown).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
            r
        },
    )
    .unwrap();
    assert_eq!(ping(server.url()).await.unwrap(), "pong");
    assert!(!saved.load(Ordering::SeqCst));
    server.stop().await.unwrap();
    assert!(saved.load(Ordering::SeqCst));
}

#[tokio::test]
async fn an_address_in_use_is_refused_with_the_fix() {
    let taken = bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = bind(&addr).await.unwrap_err().to_string();
    assert!(
        e.contains(&addr) && e.contains("pick a free address"),
        "{e}"
    );
}
