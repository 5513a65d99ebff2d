//! `puente serve`: the scheduler that keeps every sync running, the JSON
//! API (documented at `/api/openapi.json`), the server-rendered dashboard,
//! webhook endpoints, Prometheus metrics and alerts.
//!
//! Only this crate knows the JSON wire types of Puente's own API. It runs
//! on an already-bound listener (`serve(listener, app, shutdown)`), so
//! tests start the real server on `127.0.0.1:0`.

mod alerts;
mod api;
mod auth;
mod hooks;
mod metrics;
mod web;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use puente_engine::scheduler::{Event, Scheduler};
use puente_engine::{Engine, EngineError};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use alerts::{Alert, AlertSettings};
pub use auth::Auth;

/// `s` as one URL component (a path segment or a query value).
pub(crate) fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_string()
}

/// A fresh random admin token (64 hex digits).
pub fn new_token() -> String {
    auth::random_token()
}

/// How the service is reached and guarded.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The token that opens the API (as a bearer token) and the dashboard
    /// (through the login form).
    pub admin_token: String,
    /// The address users and webhook senders use (`https://…`), when a
    /// proxy sits in front. Webhook signatures cover this URL, and session
    /// cookies are marked `Secure` when it is https.
    pub public_url: Option<String>,
    pub alerts: AlertSettings,
}

/// Everything a handler needs.
pub struct Inner {
    pub engine: Arc<Engine>,
    pub scheduler: Arc<Scheduler>,
    pub auth: Auth,
    pub metrics: metrics::Metrics,
    pub alerts: Arc<alerts::Alerts>,
    pub public_url: Option<String>,
    templates: minijinja::Environment<'static>,
}

/// The shared application state.
pub type App = Arc<Inner>;

/// Builds the service around an opened engine (nothing runs yet).
pub async fn app(engine: Arc<Engine>, opts: ServeOptions) -> Result<App, EngineError> {
    let metrics = metrics::Metrics::default();
    let connections_of = engine
        .config
        .syncs
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                [d.a.connection.clone(), d.b.connection.clone()],
            )
        })
        .collect();
    let alerts = Arc::new(alerts::Alerts::new(opts.alerts.clone(), connections_of));
    let on_event = {
        let metrics = metrics.clone();
        let alerts = alerts.clone();
        Arc::new(move |e: &Event| {
            metrics.observe(e);
            alerts.observe(e);
        })
    };
    let scheduler = Arc::new(Scheduler::new(engine.clone(), Some(on_event)).await?);
    let secure = opts
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    Ok(Arc::new(Inner {
        engine,
        scheduler,
        auth: Auth::new(opts.admin_token, secure),
        metrics,
        alerts,
        public_url: opts.public_url,
        templates: web::templates(),
    }))
}

/// Every route: the API, the dashboard, webhooks, health and metrics.
pub fn router(app: App) -> Router {
    let guarded = Router::new()
        .merge(api::routes())
        .merge(web::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require,
        ));
    Router::new()
        .merge(guarded)
        .merge(auth::routes())
        .merge(hooks::routes())
        .merge(api::public_routes())
        .merge(web::public_routes())
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(app)
}

/// Serves until `shutdown` resolves, running every enabled sync meanwhile.
/// On shutdown the listener closes, passes in progress finish (their
/// chunks are atomic and cursors are committed last), then this returns.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(app.scheduler.clone().run(stop_rx));
    let watchdog = tokio::spawn(alerts::watch(app.clone()));
    let result = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    watchdog.abort();
    result
}
