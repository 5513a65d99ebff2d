//! Prometheus metrics at `/metrics` (OpenMetrics text). Counters follow
//! the passes as they finish; gauges (records per status, failures per
//! category, lag, API usage per connection) are read when scraped. Label
//! values come from small fixed sets: sync, connection, side, status,
//! category — never record ids.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use puente_engine::scheduler::Event;

use crate::App;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The counters kept between scrapes (clones share them).
#[derive(Clone, Default)]
pub struct Metrics {
    written: Family<Labels, Counter>,
    write_failures: Family<Labels, Counter>,
    runs: Family<Labels, Counter>,
    webhooks: Family<Labels, Counter>,
}

impl Metrics {
    pub fn observe(&self, e: &Event) {
        match e {
            Event::Finished { sync, report } => {
                for (side, c) in [("a", &report.a), ("b", &report.b)] {
                    for (op, n) in [
                        ("create", c.created),
                        ("update", c.updated),
                        ("delete", c.deleted),
                    ] {
                        if n > 0 {
                            self.written
                                .get_or_create(&labels(&[
                                    ("sync", sync),
                                    ("side", side),
                                    ("op", op),
                                ]))
                                .inc_by(n);
                        }
                    }
                    if c.failed > 0 {
                        self.write_failures
                            .get_or_create(&labels(&[("sync", sync), ("side", side)]))
                            .inc_by(c.failed);
                    }
                }
                self.runs
                    .get_or_create(&labels(&[("sync", sync), ("outcome", "ok")]))
                    .inc();
            }
            Event::Failed { sync, .. } => {
                self.runs
                    .get_or_create(&labels(&[("sync", sync), ("outcome", "failed")]))
                    .inc();
            }
        }
    }

    pub fn webhook(&self, connection: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&labels(&[("connection", connection), ("outcome", outcome)]))
            .inc();
    }
}

async fn snapshot(app: &App) -> String {
    let mut reg = Registry::with_prefix("puente");
    let m = &app.metrics;
    reg.register(
        "records_written",
        "Records created, updated or deleted on a side",
        m.written.clone(),
    );
    reg.register(
        "record_write_failures",
        "Record writes that failed (per record)",
        m.write_failures.clone(),
    );
    reg.register("runs", "Sync passes by outcome", m.runs.clone());
    reg.register(
        "webhooks",
        "Webhook deliveries by outcome (accepted, rejected, malformed)",
        m.webhooks.clone(),
    );

    let records = Family::<Labels, Gauge>::default();
    let failed = Family::<Labels, Gauge>::default();
    let lag = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let paused = Family::<Labels, Gauge>::default();
    let now = Utc::now();
    for name in app.scheduler.names() {
        if let Ok(c) = app.engine.state.status_counts(&name).await {
            for (status, n) in [
                ("in_sync", c.in_sync),
                ("failed", c.failed),
                ("excluded", c.excluded),
                ("deleted", c.deleted),
                ("waiting", c.waiting),
            ] {
                records
                    .get_or_create(&labels(&[("sync", &name), ("status", status)]))
                    .set(n);
            }
            for (cat, n) in &c.failures_by_category {
                failed
                    .get_or_create(&labels(&[("sync", &name), ("category", cat)]))
                    .set(*n);
            }
        }
        if let Some(st) = app.scheduler.state(&name) {
            if let Some(l) = st.lag_secs(now) {
                lag.get_or_create(&labels(&[("sync", &name)])).set(l);
            }
            paused
                .get_or_create(&labels(&[("sync", &name)]))
                .set(st.paused as i64);
        }
    }
    reg.register("records", "Records per sync and status", records);
    reg.register(
        "failed_records",
        "Failed records per sync and error category",
        failed,
    );
    reg.register(
        "sync_lag_seconds",
        "Seconds since the start of the last successful pass",
        lag,
    );
    reg.register("sync_paused", "1 when a sync is paused", paused);

    let requests = Family::<Labels, Counter>::default();
    let limited = Family::<Labels, Counter>::default();
    let server_errors = Family::<Labels, Counter>::default();
    let headroom = Family::<Labels, Gauge>::default();
    let daily = Family::<Labels, Gauge>::default();
    for c in crate::api::connection_views(app).await {
        let Some(u) = c.usage else { continue };
        let l = labels(&[("connection", &c.name)]);
        requests.get_or_create(&l).inc_by(u.requests);
        limited.get_or_create(&l).inc_by(u.rate_limited);
        server_errors.get_or_create(&l).inc_by(u.server_errors);
        if let Some(max) = u.window_max {
            headroom
                .get_or_create(&l)
                .set(max as i64 - u.window_used.unwrap_or(0) as i64);
        }
        if let Some(used) = u.daily_used {
            daily.get_or_create(&l).set(used as i64);
        }
    }
    reg.register(
        "http_requests",
        "API requests sent, per connection (every attempt)",
        requests,
    );
    reg.register(
        "rate_limited",
        "429 answers received, per connection",
        limited,
    );
    reg.register(
        "http_server_errors",
        "5xx answers received, per connection",
        server_errors,
    );
    reg.register(
        "rate_limit_headroom",
        "Requests still allowed in the current rate-limit window",
        headroom,
    );
    reg.register(
        "daily_requests_used",
        "API requests used today, as the API reports",
        daily,
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

pub async fn render(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        snapshot(&app).await,
    )
        .into_response()
}
