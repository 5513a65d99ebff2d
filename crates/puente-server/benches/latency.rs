//! Webhook latency of `puente serve`: a change made through the HubSpot
//! sandbox's API (webhooks on) until PostgreSQL holds it, over 200 changes
//! made one after another. Polling is hourly, so only webhooks carry them.
//!
//!   cargo bench -p puente-server --bench latency
//!   PUENTE_LATENCY_CHANGES=1000 cargo bench -p puente-server --bench latency

// The tests' setup; the helpers only tests call are unused here.
#[path = "../tests/it/setup.rs"]
#[allow(dead_code)]
mod setup;

use setup::{latencies, quantile, Served, Setup};

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("PUENTE_LATENCY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let s = Served::start(Setup {
        contacts: 50,
        ..Setup::default()
    })
    .await;
    // One warm-up change (connections, caches), not counted.
    latencies(&s, 1, 50).await;
    let mut l = latencies(&s, n, 50).await;
    l.sort();
    let mean = l.iter().sum::<std::time::Duration>() / n as u32;
    println!(
        "webhook latency, HubSpot sandbox → PostgreSQL, {n} changes: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms, mean {:.0} ms",
        quantile(&l, 0.5).as_secs_f64() * 1000.0,
        quantile(&l, 0.9).as_secs_f64() * 1000.0,
        quantile(&l, 0.99).as_secs_f64() * 1000.0,
        l[n - 1].as_secs_f64() * 1000.0,
        mean.as_secs_f64() * 1000.0,
    );
    s.stop().await;
}
