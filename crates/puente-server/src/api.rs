//! The JSON API: everything the dashboard shows and does. Its contract is
//! `openapi.json` (served at `/api/openapi.json`); a test checks that every
//! route here is documented there and answers 401 without a token.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use puente_core::{Side, Value};
use puente_engine::RunOptions;
use puente_plan::Resolution;
use puente_state::{RecordFilter, RecordRow};

use crate::wire::{
    self, BackfillView, ChangeView, ConflictView, CountsView, GroupView, RecordView, ReportView,
    RestoreView, RunView, UsageView, WorkerView,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::App;

const OPENAPI: &str = include_str!("openapi.json");

/// An API error: `{code, type, message, link}`, with a stable snake_case code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send the admin token as `Authorization: Bearer TOKEN`, or sign in at /login",
        )
    }
    pub fn forbidden(m: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over {limit} bytes"),
        )
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
    }
    /// A failure inside: logged in full, answered in general terms.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "api call failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request; its log has the details",
        )
    }
    /// An engine error the caller can act on (a sync that failed to run).
    fn engine(e: puente_engine::EngineError) -> Self {
        match e {
            puente_engine::EngineError::Refused(m) => Self::not_found(m),
            busy @ puente_engine::EngineError::Busy { .. } => {
                Self::new(StatusCode::CONFLICT, "sync_busy", busy.to_string())
            }
            puente_engine::EngineError::State(s) => Self::internal(s),
            other => Self::new(StatusCode::BAD_GATEWAY, "sync_failed", other.to_string()),
        }
    }
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 | 403 => "auth",
            400..=499 => "invalid_request",
            503 => "external",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "type": self.kind(),
            "message": self.message,
            "link": format!("/api/openapi.json#error-{}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ----- views ---------------------------------------------------------------

#[derive(Serialize)]
pub struct SyncView {
    pub name: String,
    pub direction: String,
    pub a: String,
    pub b: String,
    pub state: WorkerView,
    pub lag_secs: Option<f64>,
    pub counts: CountsView,
    pub total: i64,
    /// Failed records by category (with a hint), then excluded ones by reason.
    pub failed: Vec<GroupView>,
    pub excluded: Vec<GroupView>,
    /// A gradual exchange's backfill (none for `all_at_once`).
    pub backfill: Option<BackfillView>,
    /// The process running a pass of this sync now (this server or
    /// another: a `puente sync` from cron, another worker).
    pub held_by: Option<HolderView>,
}

/// Who holds a sync's lease: the process running a pass of it.
#[derive(Serialize)]
pub struct HolderView {
    pub host: String,
    pub pid: i64,
    pub command: String,
    pub started_at: String,
    /// When the lease lapses unless its holder renews it.
    pub expires_at: String,
    /// Whether it is this server.
    pub this_process: bool,
    /// `` `puente sync` (pid 42 on host) since … ``
    pub text: String,
}

impl HolderView {
    fn new(row: puente_state::LeaseRow, me: &puente_state::Holder) -> HolderView {
        HolderView {
            this_process: row.host == me.host && row.pid == i64::from(me.pid),
            text: row.to_string(),
            host: row.host,
            pid: row.pid,
            command: row.command,
            started_at: row.started_at,
            expires_at: row.expires_at,
        }
    }
}

/// A sync of the config, or a 404 naming it.
fn sync_def<'a>(app: &'a App, name: &str) -> ApiResult<&'a puente_engine::SyncDef> {
    app.engine
        .config
        .sync(name)
        .ok_or_else(|| ApiError::not_found(format!("no sync named {name}")))
}

pub async fn sync_view(app: &App, name: &str) -> ApiResult<SyncView> {
    let def = sync_def(app, name)?;
    let state = app.scheduler.state(name).unwrap_or_default();
    let counts = app
        .engine
        .state
        .status_counts(name)
        .await
        .map_err(ApiError::internal)?;
    let (failed, excluded) = app
        .engine
        .state
        .groups(name)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(GroupView::from)
        .partition(|g| g.status == "failed");
    let backfill = app
        .engine
        .backfill_status(def)
        .await
        .map_err(ApiError::internal)?;
    let held_by = app
        .engine
        .state
        .lease_holder(name)
        .await
        .map_err(ApiError::internal)?
        .map(|row| HolderView::new(row, &app.engine.holder));
    Ok(SyncView {
        backfill: backfill.as_ref().map(BackfillView::from),
        held_by,
        name: def.name.clone(),
        direction: def.direction.as_str().to_string(),
        a: def.a.label(),
        b: def.b.label(),
        lag_secs: state.lag_secs(Utc::now()),
        state: (&state).into(),
        total: counts.total(),
        failed,
        excluded,
        counts: (&counts).into(),
    })
}

pub async fn sync_views(app: &App) -> ApiResult<Vec<SyncView>> {
    let mut out = Vec::new();
    for s in &app.engine.config.syncs {
        out.push(sync_view(app, &s.name).await?);
    }
    Ok(out)
}

#[derive(Serialize)]
pub struct ConnectionView {
    pub name: String,
    pub kind: String,
    /// ok, failing (with the error), or idle (not used yet).
    pub status: String,
    pub error: Option<String>,
    pub usage: Option<UsageView>,
}

pub async fn connection_views(app: &App) -> Vec<ConnectionView> {
    let mut out = Vec::new();
    for (name, def) in &app.engine.config.connections {
        let conn = app.engine.connected(name).await;
        let error = app.alerts.connection_error(name);
        out.push(ConnectionView {
            name: name.clone(),
            kind: def.kind().to_string(),
            status: match (&conn, &error) {
                (_, Some(_)) => "failing".into(),
                (Some(_), None) => "ok".into(),
                (None, None) => "idle".into(),
            },
            error,
            usage: conn.and_then(|c| c.usage()).as_ref().map(UsageView::from),
        });
    }
    out
}

// ----- records ---------------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
pub struct RecordQuery {
    pub sync: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
    /// Changed at or after (RFC 3339, or a date).
    pub since: Option<String>,
    /// Changed before.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl RecordQuery {
    pub fn filter(&self, default_limit: Option<i64>) -> ApiResult<RecordFilter> {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        if let Some(s) = nonempty(&self.status) {
            if !puente_state::STATUSES.contains(&s.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "status {s:?} is not one of {}",
                    puente_state::STATUSES.join(", ")
                )));
            }
        }
        let time = |s: Option<String>, what: &str| -> ApiResult<Option<String>> {
            let Some(s) = s else { return Ok(None) };
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&s) {
                return Ok(Some(
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                ));
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
                return Ok(Some(format!("{d}T00:00:00.000000Z")));
            }
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M") {
                return Ok(Some(format!("{}.000000Z", t.format("%Y-%m-%dT%H:%M:%S"))));
            }
            Err(ApiError::bad_request(format!(
                "{what} {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"
            )))
        };
        Ok(RecordFilter {
            sync: nonempty(&self.sync),
            status: nonempty(&self.status),
            category: nonempty(&self.category),
            entry_id: None,
            since: time(nonempty(&self.since), "since")?,
            until: time(nonempty(&self.until), "until")?,
            limit: self.limit.or(default_limit).map(|l| l.clamp(1, 1_000_000)),
            offset: self.offset.map(|o| o.max(0)),
        })
    }
}

pub async fn records(app: &App, q: &RecordQuery, limit: Option<i64>) -> ApiResult<Vec<RecordRow>> {
    if let Some(s) = q.sync.as_deref().filter(|s| !s.is_empty()) {
        sync_def(app, s)?;
    }
    app.engine
        .state
        .records(&q.filter(limit)?)
        .await
        .map_err(ApiError::internal)
}

/// The filtered records as CSV (the same columns as `puente records --format csv`).
pub fn records_csv(rows: &[RecordRow]) -> ApiResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(RecordRow::CSV_HEADER)
        .map_err(ApiError::internal)?;
    for r in rows {
        w.write_record(r.csv_fields()).map_err(ApiError::internal)?;
    }
    w.into_inner().map_err(ApiError::internal)
}

pub fn csv_response(bytes: Vec<u8>, sync: Option<&str>) -> Response {
    let name = format!(
        "puente-records-{}-{}.csv",
        sync.filter(|s| !s.is_empty()).unwrap_or("all"),
        Utc::now().format("%Y%m%d-%H%M%S")
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[derive(Serialize)]
pub struct FieldPair {
    pub a_field: String,
    pub b_field: String,
    pub a: serde_json::Value,
    pub b: serde_json::Value,
    pub differs: bool,
}

#[derive(Serialize)]
pub struct RecordDetail {
    pub sync: String,
    pub entry_id: i64,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub a_object: String,
    pub b_object: String,
    pub row: Option<RecordView>,
    /// The mapped fields as each side last held them.
    pub fields: Vec<FieldPair>,
    pub history: Vec<ChangeView>,
    pub conflicts: Vec<ConflictView>,
}

pub async fn record_detail(app: &App, sync: &str, id: i64) -> ApiResult<RecordDetail> {
    let def = sync_def(app, sync)?;
    let st = &app.engine.state;
    let entry = st
        .entries_by_entry_ids(sync, &[id])
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("sync {sync} has no record {id}")))?;
    let row = st
        .records(&RecordFilter {
            sync: Some(sync.into()),
            entry_id: Some(id),
            ..RecordFilter::default()
        })
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .next();
    let get =
        |seen: &Option<puente_core::Fields>, f: &str| seen.as_ref().and_then(|s| s.get(f).cloned());
    let fields = def
        .fields
        .iter()
        .map(|f| {
            let a = get(&entry.seen_a, &f.a);
            let b = get(&entry.seen_b, &f.b);
            FieldPair {
                differs: a.as_ref().map(Value::to_string) != b.as_ref().map(Value::to_string),
                a_field: f.a.clone(),
                b_field: f.b.clone(),
                a: a.as_ref().map(wire::value).unwrap_or_default(),
                b: b.as_ref().map(wire::value).unwrap_or_default(),
            }
        })
        .collect();
    let history = st
        .history(sync, entry.a_id.as_deref(), entry.b_id.as_deref())
        .await
        .map_err(ApiError::internal)?;
    let conflicts = st
        .conflicts(Some(sync), false)
        .await
        .map_err(ApiError::internal)?
        .iter()
        .filter(|c| c.entry_id == id)
        .map(ConflictView::from)
        .collect();
    Ok(RecordDetail {
        sync: sync.into(),
        entry_id: id,
        a_id: entry.a_id.clone(),
        b_id: entry.b_id.clone(),
        a_object: def.a.label(),
        b_object: def.b.label(),
        row: row.as_ref().map(RecordView::from),
        fields,
        history: history.into_iter().map(ChangeView::from).collect(),
        conflicts,
    })
}

// ----- actions -----------------------------------------------------------------

pub async fn pause(app: &App, sync: &str, paused: bool) -> ApiResult<serde_json::Value> {
    app.scheduler
        .set_paused(sync, paused)
        .await
        .map_err(ApiError::engine)?;
    Ok(json!({ "sync": sync, "paused": paused }))
}

pub fn run_now(app: &App, sync: &str, full: bool) -> ApiResult<serde_json::Value> {
    app.scheduler
        .run_now(sync, full)
        .map_err(ApiError::engine)?;
    Ok(json!({ "sync": sync, "queued": true, "full": full }))
}

/// Retries the failed records now (a pass revisits every failed record)
/// and says how many are still failing.
pub async fn retry(app: &App, sync: &str) -> ApiResult<serde_json::Value> {
    let before = app
        .engine
        .state
        .status_counts(sync)
        .await
        .map_err(ApiError::internal)?
        .failed;
    let report = app
        .scheduler
        .pass_now(sync)
        .await
        .map_err(ApiError::engine)?;
    let after = app
        .engine
        .state
        .status_counts(sync)
        .await
        .map_err(ApiError::internal)?
        .failed;
    Ok(
        json!({ "sync": sync, "retried": before, "still_failed": after, "report": ReportView::from(&report) }),
    )
}

pub async fn dry_run(app: &App, sync: &str) -> ApiResult<ReportView> {
    let def = sync_def(app, sync)?;
    let opts = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    app.scheduler
        .exclusive(sync, app.engine.run(def, &opts))
        .await
        .map(|r| ReportView::from(&r))
        .map_err(ApiError::engine)
}

pub fn side(s: &str) -> ApiResult<Side> {
    Side::parse(s).ok_or_else(|| ApiError::bad_request(format!("side {s:?} is not a or b")))
}

/// Restores the records deleted on `side` (`dry_run`: only lists them, for
/// the review screen).
pub async fn restore(app: &App, sync: &str, side: Side, dry_run: bool) -> ApiResult<RestoreView> {
    let def = sync_def(app, sync)?;
    app.scheduler
        .exclusive(sync, app.engine.restore(def, side, dry_run))
        .await
        .map(|r| RestoreView::from(&r))
        .map_err(ApiError::engine)
}

/// Settles a held conflict and queues a pass that applies it.
pub async fn resolve(app: &App, id: i64, take: &str) -> ApiResult<serde_json::Value> {
    let sync = app
        .engine
        .state
        .resolve_conflict(id, &Resolution::from_choice(take))
        .await
        .map_err(|e| match e {
            puente_state::StateError::NotFound(m) => ApiError::not_found(m),
            other => ApiError::internal(other),
        })?;
    let _ = app.scheduler.run_now(&sync, false);
    Ok(json!({ "conflict": id, "sync": sync, "take": take, "queued": true }))
}

// ----- handlers -------------------------------------------------------------------

async fn h_overview(State(app): State<App>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!({
        "connections": connection_views(&app).await,
        "syncs": sync_views(&app).await?,
        "alerts": app.alerts.recent(),
    })))
}

async fn h_syncs(State(app): State<App>) -> ApiResult<Json<Vec<SyncView>>> {
    Ok(Json(sync_views(&app).await?))
}

async fn h_sync(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<SyncView>> {
    Ok(Json(sync_view(&app, &name).await?))
}

async fn h_connections(State(app): State<App>) -> Json<Vec<ConnectionView>> {
    Json(connection_views(&app).await)
}

async fn h_pause(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(pause(&app, &name, true).await?))
}

async fn h_resume(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(pause(&app, &name, false).await?))
}

#[derive(Deserialize, Default)]
struct RunQuery {
    #[serde(default)]
    full: bool,
}

async fn h_run(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    Ok((StatusCode::ACCEPTED, Json(run_now(&app, &name, q.full)?)))
}

async fn h_retry(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(retry(&app, &name).await?))
}

async fn h_dry_run(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<ReportView>> {
    Ok(Json(dry_run(&app, &name).await?))
}

/// `?side=a` or a form's `side` field.
#[derive(Deserialize)]
pub struct SideQuery {
    pub side: String,
}

async fn h_restore_review(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<SideQuery>,
) -> ApiResult<Json<RestoreView>> {
    Ok(Json(restore(&app, &name, side(&q.side)?, true).await?))
}

async fn h_restore(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(q): Json<SideQuery>,
) -> ApiResult<Json<RestoreView>> {
    Ok(Json(restore(&app, &name, side(&q.side)?, false).await?))
}

async fn h_records(
    State(app): State<App>,
    Query(q): Query<RecordQuery>,
) -> ApiResult<Json<Vec<RecordView>>> {
    Ok(Json(wire::all(&records(&app, &q, Some(500)).await?)))
}

async fn h_records_csv(
    State(app): State<App>,
    Query(q): Query<RecordQuery>,
) -> ApiResult<Response> {
    let rows = records(&app, &q, None).await?;
    Ok(csv_response(records_csv(&rows)?, q.sync.as_deref()))
}

async fn h_record(
    State(app): State<App>,
    Path((sync, id)): Path<(String, i64)>,
) -> ApiResult<Json<RecordDetail>> {
    Ok(Json(record_detail(&app, &sync, id).await?))
}

#[derive(Deserialize)]
struct RunsQuery {
    sync: Option<String>,
    limit: Option<i64>,
}

/// Run history, newest first (`limit` between 1 and 1,000).
pub async fn runs(app: &App, sync: Option<&str>, limit: i64) -> ApiResult<Vec<RunView>> {
    Ok(app
        .engine
        .state
        .runs(sync, limit.clamp(1, 1000))
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(RunView::from)
        .collect())
}

/// The conflict inbox (`open_only`: held ones; else settled ones too).
pub async fn conflicts(
    app: &App,
    sync: Option<&str>,
    open_only: bool,
) -> ApiResult<Vec<ConflictView>> {
    let rows = app
        .engine
        .state
        .conflicts(sync.filter(|s| !s.is_empty()), open_only)
        .await
        .map_err(ApiError::internal)?;
    Ok(wire::all(&rows))
}

async fn h_runs(
    State(app): State<App>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Vec<RunView>>> {
    Ok(Json(
        runs(&app, q.sync.as_deref(), q.limit.unwrap_or(50)).await?,
    ))
}

#[derive(Deserialize)]
struct ConflictsQuery {
    sync: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn h_conflicts(
    State(app): State<App>,
    Query(q): Query<ConflictsQuery>,
) -> ApiResult<Json<Vec<ConflictView>>> {
    Ok(Json(conflicts(&app, q.sync.as_deref(), !q.all).await?))
}

#[derive(Deserialize)]
struct Take {
    take: String,
}

async fn h_resolve(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(t): Json<Take>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(resolve(&app, id, &t.take).await?))
}

async fn h_alerts(State(app): State<App>) -> Json<Vec<crate::Alert>> {
    Json(app.alerts.recent())
}

/// Routes behind authentication.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/overview", get(h_overview))
        .route("/api/connections", get(h_connections))
        .route("/api/syncs", get(h_syncs))
        .route("/api/syncs/{name}", get(h_sync))
        .route("/api/syncs/{name}/pause", post(h_pause))
        .route("/api/syncs/{name}/resume", post(h_resume))
        .route("/api/syncs/{name}/run", post(h_run))
        .route("/api/syncs/{name}/retry", post(h_retry))
        .route("/api/syncs/{name}/dry-run", post(h_dry_run))
        .route(
            "/api/syncs/{name}/restore",
            get(h_restore_review).post(h_restore),
        )
        .route("/api/records", get(h_records))
        .route("/api/records.csv", get(h_records_csv))
        .route("/api/records/{sync}/{id}", get(h_record))
        .route("/api/runs", get(h_runs))
        .route("/api/conflicts", get(h_conflicts))
        .route("/api/conflicts/{id}/resolve", post(h_resolve))
        .route("/api/alerts", get(h_alerts))
}

async fn h_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn h_health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the state store answers.
async fn h_ready(State(app): State<App>) -> Response {
    match app.engine.state.status_counts("").await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "message": "the state store does not answer" })),
            )
                .into_response()
        }
    }
}

/// Routes open to anyone: the contract and the probes.
pub fn public_routes() -> Router<App> {
    Router::new()
        .route("/api/openapi.json", get(h_openapi))
        .route("/healthz", get(h_health))
        .route("/readyz", get(h_ready))
}
