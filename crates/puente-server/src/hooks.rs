//! Webhook endpoints: `POST /webhooks/{connection}`. The body is capped
//! before it is read, the connector verifies the signature (or token)
//! before it parses anything, and a verified notification only wakes the
//! syncs that read that connection: the records it names are read by id.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use puente_core::{ErrorKind, Push};
use serde_json::json;

use crate::api::ApiError;
use crate::App;

/// Webhook bodies larger than this are refused unread (HubSpot sends at
/// most 100 events, well under it).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The URL the sender signed: the public URL when one is configured (a
/// proxy may rewrite the host), else what this request was addressed to.
fn signed_url(app: &App, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match &app.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}

async fn receive(
    State(app): State<App>,
    Path(connection): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !app.engine.config.connections.contains_key(&connection) {
        return ApiError::not_found(format!("no connection named {connection}")).into_response();
    }
    let connector = match app.engine.connector(&connection).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(connection = %connection, error = %e, "webhook for a connection that cannot open");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection_unavailable",
                format!("connection {connection} cannot be opened; the sender should retry"),
            )
            .into_response();
        }
    };
    let push = Push {
        method: method.to_string(),
        uri: signed_url(&app, &headers, &uri),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body: body.to_vec(),
    };
    match connector.accept_push(&push).await {
        Ok(events) => {
            app.metrics.webhook(&connection, "accepted");
            let woken = app.scheduler.pushed(&connection);
            Json(json!({ "accepted": events, "syncs": woken })).into_response()
        }
        Err(e) => {
            let (status, code, outcome) = match e.kind {
                ErrorKind::Auth => (StatusCode::UNAUTHORIZED, "webhook_rejected", "rejected"),
                ErrorKind::Config => (StatusCode::NOT_FOUND, "webhooks_not_configured", "rejected"),
                _ => (StatusCode::BAD_REQUEST, "webhook_malformed", "malformed"),
            };
            app.metrics.webhook(&connection, outcome);
            tracing::warn!(connection = %connection, error = %e, "webhook refused");
            ApiError::new(status, code, e.message).into_response()
        }
    }
}

pub fn routes() -> Router<App> {
    Router::new()
        .route("/webhooks/{connection}", post(receive))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}
