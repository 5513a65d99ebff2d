//! The dashboard: server-rendered HTML (minijinja templates compiled into
//! the binary, auto-escaped), one stylesheet and one small script for live
//! counts. Every action is a form POST carrying the session's CSRF token;
//! the API does the work, so the dashboard and the API cannot disagree.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use minijinja::{context, Environment, Value as J};
use serde::Deserialize;

use crate::api::{self, ApiError, RecordQuery, SideQuery};
use crate::auth::Caller;
use crate::App;

macro_rules! templates {
    ($env:ident, $($name:literal),*) => {
        $( $env.add_template($name, include_str!(concat!("../templates/", $name)))
            .expect(concat!("template ", $name)); )*
    };
}

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    templates!(
        env,
        "layout.html",
        "login.html",
        "index.html",
        "sync.html",
        "records.html",
        "record.html",
        "dryrun.html",
        "restore.html",
        "conflicts.html",
        "runs.html",
        "message.html"
    );
    env.add_filter("secs", |v: f64| -> String {
        if v < 1.0 {
            format!("{:.0} ms", v * 1000.0)
        } else if v < 120.0 {
            format!("{v:.1} s")
        } else if v < 7200.0 {
            format!("{:.0} min", v / 60.0)
        } else {
            format!("{:.1} h", v / 3600.0)
        }
    });
    env.add_filter("value", |v: J| -> String {
        if v.is_none() || v.is_undefined() {
            "—".into()
        } else if let Some(s) = v.as_str() {
            s.to_string()
        } else {
            // A number, a boolean, or a multi-choice's list (wire::value).
            v.to_string()
        }
    });
    env
}

/// Renders a template; a template error is a bug, logged and shown plainly.
pub fn render(app: &App, name: &str, ctx: J) -> String {
    match app.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(template = name, error = %e, "template failed");
            "<!doctype html><title>Puente</title><p>This page could not be drawn; the server log has the details.</p>".into()
        }
    }
}

fn page(app: &App, caller: &Caller, name: &str, active: &str, ctx: J) -> Response {
    let ctx = context! { csrf => caller.csrf(), active => active, ..ctx };
    Html(render(app, name, ctx)).into_response()
}

/// An API error shown as a page.
fn error_page(app: &App, caller: &Caller, e: ApiError) -> Response {
    let status = e.status;
    let mut res = page(
        app,
        caller,
        "message.html",
        "",
        context! { title => "Something went wrong", message => e.message, code => e.code },
    );
    *res.status_mut() = status;
    res
}

macro_rules! tryp {
    ($app:expr, $caller:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => return error_page(&$app, &$caller, err),
        }
    };
}

async fn index(State(app): State<App>, Extension(caller): Extension<Caller>) -> Response {
    let syncs = tryp!(app, caller, api::sync_views(&app).await);
    let connections = api::connection_views(&app).await;
    page(
        &app,
        &caller,
        "index.html",
        "overview",
        context! { syncs, connections, alerts => app.alerts.recent() },
    )
}

#[derive(Deserialize, Default)]
struct Done {
    done: Option<String>,
}

async fn sync_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let sync = tryp!(app, caller, api::sync_view(&app, &name).await);
    let runs = api::runs(&app, Some(&name), 10).await.unwrap_or_default();
    page(
        &app,
        &caller,
        "sync.html",
        "overview",
        context! { sync, runs, done => d.done },
    )
}

async fn records_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).max(0);
    let query = RecordQuery {
        limit: Some(limit + 1),
        offset: Some(offset),
        ..q.clone()
    };
    let mut rows = tryp!(app, caller, api::records(&app, &query, None).await);
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let rows: Vec<crate::wire::RecordView> = crate::wire::all(&rows);
    let pairs = [
        ("sync", &q.sync),
        ("status", &q.status),
        ("category", &q.category),
        ("since", &q.since),
        ("until", &q.until),
    ]
    .map(|(k, v)| (k, v.clone().unwrap_or_default()));
    let filter = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let qs = |offset: i64| format!("{filter}&offset={offset}");
    let syncs: Vec<String> = app
        .engine
        .config
        .syncs
        .iter()
        .map(|s| s.name.clone())
        .collect();
    page(
        &app,
        &caller,
        "records.html",
        "records",
        context! {
            rows, syncs, statuses => puente_state::STATUSES, q => context! {
                sync => q.sync, status => q.status, category => q.category,
                since => q.since, until => q.until,
            },
            filter,
            offset,
            prev => (offset > 0).then(|| qs((offset - limit).max(0))),
            next => more.then(|| qs(offset + limit)),
        },
    )
}

async fn records_csv(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let rows = tryp!(app, caller, api::records(&app, &q, None).await);
    let bytes = tryp!(app, caller, api::records_csv(&rows));
    api::csv_response(bytes, q.sync.as_deref())
}

async fn record_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path((sync, id)): Path<(String, i64)>,
) -> Response {
    let r = tryp!(app, caller, api::record_detail(&app, &sync, id).await);
    page(&app, &caller, "record.html", "records", context! { r })
}

async fn dry_run_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let report = tryp!(app, caller, api::dry_run(&app, &name).await);
    page(
        &app,
        &caller,
        "dryrun.html",
        "overview",
        context! { sync => name, report },
    )
}

/// The review screen (`done` false: exactly what a restore would recreate)
/// or the restore's outcome.
async fn restore_page(app: &App, caller: &Caller, name: &str, side: &str, done: bool) -> Response {
    let s = tryp!(app, caller, api::side(side));
    let report = tryp!(app, caller, api::restore(app, name, s, !done).await);
    page(
        app,
        caller,
        "restore.html",
        "overview",
        context! { sync => name, side, report, done },
    )
}

async fn restore_review(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(s): Query<SideQuery>,
) -> Response {
    restore_page(&app, &caller, &name, &s.side, false).await
}

async fn restore_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(s): Form<SideQuery>,
) -> Response {
    restore_page(&app, &caller, &name, &s.side, true).await
}

/// Back to a page, with a note of what was done.
fn done_at(path: &str, done: &str) -> Response {
    let q = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Redirect::to(&format!("{path}?{q}")).into_response()
}

fn back(name: &str, done: &str) -> Response {
    done_at(&format!("/syncs/{}", crate::urlencode(name)), done)
}

async fn pause_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    tryp!(app, caller, api::pause(&app, &name, true).await);
    back(&name, "Paused. Nothing runs until you resume it.")
}

async fn resume_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    tryp!(app, caller, api::pause(&app, &name, false).await);
    back(&name, "Resumed. A pass starts now.")
}

#[derive(Deserialize, Default)]
struct FullForm {
    full: Option<String>,
}

async fn run_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<FullForm>,
) -> Response {
    let full = f.full.is_some();
    tryp!(app, caller, api::run_now(&app, &name, full));
    back(
        &name,
        if full {
            "A full reconciliation is queued."
        } else {
            "A pass is queued."
        },
    )
}

async fn retry_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let r = tryp!(app, caller, api::retry(&app, &name).await);
    back(
        &name,
        &format!(
            "Retried {} failed record(s); {} still failing.",
            r["retried"], r["still_failed"]
        ),
    )
}

#[derive(Deserialize, Default)]
struct ConflictQ {
    sync: Option<String>,
    all: Option<String>,
    done: Option<String>,
}

async fn conflicts_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ConflictQ>,
) -> Response {
    let rows = tryp!(
        app,
        caller,
        api::conflicts(&app, q.sync.as_deref(), q.all.is_none()).await
    );
    page(
        &app,
        &caller,
        "conflicts.html",
        "conflicts",
        context! { rows, all => q.all.is_some(), done => q.done },
    )
}

#[derive(Deserialize)]
struct TakeForm {
    take: String,
    value: Option<String>,
}

async fn resolve_do(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<TakeForm>,
) -> Response {
    let take = match f.take.as_str() {
        "value" => f.value.unwrap_or_default(),
        other => other.to_string(),
    };
    let r = tryp!(app, caller, api::resolve(&app, id, &take).await);
    done_at(
        "/conflicts",
        &format!(
            "Conflict {id} settled; sync {} applies it now.",
            r["sync"].as_str().unwrap_or("")
        ),
    )
}

async fn runs_page(State(app): State<App>, Extension(caller): Extension<Caller>) -> Response {
    let runs = tryp!(app, caller, api::runs(&app, None, 100).await);
    page(&app, &caller, "runs.html", "runs", context! { runs })
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/app.js"),
    )
        .into_response()
}

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/syncs/{name}", get(sync_page))
        .route("/syncs/{name}/pause", post(pause_do))
        .route("/syncs/{name}/resume", post(resume_do))
        .route("/syncs/{name}/run", post(run_do))
        .route("/syncs/{name}/retry", post(retry_do))
        .route("/syncs/{name}/dry-run", get(dry_run_page))
        .route(
            "/syncs/{name}/restore",
            get(restore_review).post(restore_do),
        )
        .route("/records", get(records_page))
        .route("/records.csv", get(records_csv))
        .route("/records/{sync}/{id}", get(record_page))
        .route("/conflicts", get(conflicts_page))
        .route("/conflicts/{id}/resolve", post(resolve_do))
        .route("/runs", get(runs_page))
}

/// The stylesheet and script (the login page needs them too).
pub fn public_routes() -> Router<App> {
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}
