//! Private-app tokens and the OAuth 2.0 authorization-code flow: the
//! authorize redirect, the token endpoints (v1 and v3, form bodies),
//! introspection and revocation; expiring access tokens, long-lived refresh
//! tokens, HubSpot's 401 and `invalid_grant` bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::store::{now_ms, ApiErr, Ms};
use super::{correlation, empty, reply, Sandbox};

#[derive(Default)]
pub struct OAuthState {
    codes: HashMap<String, (String, Vec<String>)>,
    access: HashMap<String, (Ms, Vec<String>)>,
    refresh: HashMap<String, Vec<String>>,
    /// Private-app tokens rotated or deleted since the sandbox started.
    revoked: std::collections::HashSet<String>,
}

/// Who is calling: the rate-limit key, and whether it is a private app
/// (which gets daily-limit headers).
pub struct Caller {
    pub app: String,
    pub private: bool,
}

impl Sandbox {
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiErr> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(ApiErr::new(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ));
        };
        if self.opts.tokens.iter().any(|t| t == token)
            && !self.auth.lock().expect("auth").revoked.contains(token)
        {
            return Ok(Caller {
                app: format!("private:{token}"),
                private: true,
            });
        }
        let st = self.auth.lock().expect("auth");
        match st.access.get(token) {
            Some((expires, _)) if *expires > now_ms() => Ok(Caller {
                app: format!("oauth:{}", self.opts.client_id),
                private: false,
            }),
            Some((expires, _)) => Err(ApiErr::new(
                401,
                "EXPIRED_AUTHENTICATION",
                format!(
                    "The OAuth token used to make this call expired {} minute(s) ago.",
                    (now_ms() - expires) / 60_000
                ),
            )),
            None => Err(ApiErr::new(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )),
        }
    }

    /// Issues a code as if a user approved the app (tests and the demo).
    pub fn authorize(&self, redirect_uri: &str, scopes: &[&str]) -> String {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        self.auth.lock().expect("auth").codes.insert(
            code.clone(),
            (
                redirect_uri.to_string(),
                scopes.iter().map(|s| s.to_string()).collect(),
            ),
        );
        code
    }

    /// Expires every access token now (tests of refresh).
    pub fn expire_access_tokens(&self) {
        for (exp, _) in self.auth.lock().expect("auth").access.values_mut() {
            *exp = now_ms() - 1;
        }
    }

    /// Revokes a private app's token, as rotating it or deleting the app
    /// in HubSpot does: calls with it get HubSpot's 401 from then on.
    pub fn revoke_token(&self, token: &str) {
        self.auth
            .lock()
            .expect("auth")
            .revoked
            .insert(token.to_string());
    }

    /// Every OAuth access token issued so far, expired or not (tests).
    pub fn access_tokens(&self) -> Vec<String> {
        self.auth
            .lock()
            .expect("auth")
            .access
            .keys()
            .cloned()
            .collect()
    }

    /// Revokes a refresh token, as an admin uninstalling the app would.
    pub fn revoke_refresh_token(&self, token: &str) -> bool {
        self.auth
            .lock()
            .expect("auth")
            .refresh
            .remove(token)
            .is_some()
    }
}

pub fn router(_sb: Arc<Sandbox>) -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/v1/token", post(token))
        .route("/oauth/v3/token", post(token))
        .route("/oauth/2026-03/token", post(token))
        .route("/oauth/v3/token/introspect", post(introspect))
        .route("/oauth/v3/token/revoke", post(revoke))
        .route("/oauth/v1/access-tokens/{token}", get(access_info))
        .route(
            "/oauth/v1/refresh-tokens/{token}",
            get(refresh_info).delete(refresh_delete),
        )
}

fn form(q: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn authorize(State(sb): State<Arc<Sandbox>>, RawQuery(q): RawQuery) -> Response {
    let q = form(q.as_deref().unwrap_or(""));
    if q.get("client_id") != Some(&sb.opts.client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let Some(redirect) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let scopes: Vec<&str> = q
        .get("scope")
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    let code = sb.authorize(redirect, &scopes);
    let mut to = format!(
        "{redirect}{}code={code}",
        if redirect.contains('?') { '&' } else { '?' }
    );
    if let Some(s) = q.get("state") {
        to.push_str("&state=");
        to.push_str(&crate::urlencode(s));
    }
    let mut r = empty(302);
    if let Ok(v) = to.parse() {
        r.headers_mut().insert("location", v);
    }
    r
}

fn oauth_error(status: &str, description: &str) -> Response {
    reply(
        400,
        json!({
            "status": status,
            "message": description,
            "correlationId": correlation(),
            "error": "invalid_grant",
            "error_description": description,
        }),
    )
}

async fn token(State(sb): State<Arc<Sandbox>>, body: String) -> Response {
    let f = form(&body);
    if f.get("client_id") != Some(&sb.opts.client_id)
        || f.get("client_secret") != Some(&sb.opts.client_secret)
    {
        return reply(
            400,
            json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id", "error": "invalid_client", "error_description": "missing or unknown client id", "correlationId": correlation()}),
        );
    }
    let mut st = sb.auth.lock().expect("auth");
    let scopes = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((redirect, scopes)) = f.get("code").and_then(|c| st.codes.remove(c)) else {
                return oauth_error("BAD_AUTH_CODE", "missing or unknown auth code");
            };
            if f.get("redirect_uri") != Some(&redirect) {
                return oauth_error(
                    "BAD_REDIRECT_URI",
                    "redirect_uri does not match the one the code was issued for",
                );
            }
            scopes
        }
        Some("refresh_token") => match f.get("refresh_token").and_then(|t| st.refresh.get(t)) {
            Some(s) => s.clone(),
            None => return oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token"),
        },
        _ => {
            return oauth_error(
                "BAD_GRANT_TYPE",
                "grant_type must be authorization_code or refresh_token",
            )
        }
    };
    let ttl = sb.opts.access_token_ttl.as_secs();
    let access = format!("oa-sandbox-{}", uuid::Uuid::new_v4().simple());
    st.access.insert(
        access.clone(),
        (now_ms() + ttl as i64 * 1000, scopes.clone()),
    );
    let refresh = match f.get("refresh_token") {
        Some(t) => t.clone(),
        None => {
            let t = format!("rt-sandbox-{}", uuid::Uuid::new_v4());
            st.refresh.insert(t.clone(), scopes.clone());
            t
        }
    };
    reply(
        200,
        json!({
            "token_type": "bearer",
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": ttl,
            "hub_id": sb.opts.portal_id,
            "scopes": scopes,
        }),
    )
}

async fn introspect(State(sb): State<Arc<Sandbox>>, body: String) -> Response {
    let f = form(&body);
    let st = sb.auth.lock().expect("auth");
    let token = f.get("token").cloned().unwrap_or_default();
    let now = now_ms();
    if let Some((exp, scopes)) = st.access.get(&token).filter(|(e, _)| *e > now) {
        return reply(
            200,
            json!({"active": true, "hub_id": sb.opts.portal_id, "user_id": 1, "app_id": sb.opts.app_id, "scopes": scopes, "expires_in": (exp - now) / 1000, "token_use": "access_token"}),
        );
    }
    if let Some(scopes) = st.refresh.get(&token) {
        return reply(
            200,
            json!({"active": true, "hub_id": sb.opts.portal_id, "user_id": 1, "app_id": sb.opts.app_id, "scopes": scopes, "token_use": "refresh_token"}),
        );
    }
    reply(200, json!({"active": false}))
}

async fn revoke(State(sb): State<Arc<Sandbox>>, body: String) -> Response {
    let f = form(&body);
    let token = f.get("token").cloned().unwrap_or_default();
    let mut st = sb.auth.lock().expect("auth");
    st.refresh.remove(&token);
    st.access.remove(&token);
    empty(200)
}

async fn access_info(State(sb): State<Arc<Sandbox>>, Path(token): Path<String>) -> Response {
    let st = sb.auth.lock().expect("auth");
    let now = now_ms();
    match st.access.get(&token) {
        Some((exp, scopes)) if *exp > now => reply(
            200,
            json!({"token": token, "hub_id": sb.opts.portal_id, "app_id": sb.opts.app_id, "scopes": scopes, "expires_in": (exp - now) / 1000, "token_type": "access", "user_id": 1}),
        ),
        _ => oauth_error("BAD_ACCESS_TOKEN", "missing or unknown access token"),
    }
}

async fn refresh_info(State(sb): State<Arc<Sandbox>>, Path(token): Path<String>) -> Response {
    let st = sb.auth.lock().expect("auth");
    match st.refresh.get(&token) {
        Some(scopes) => reply(
            200,
            json!({"token": token, "hub_id": sb.opts.portal_id, "client_id": sb.opts.client_id, "scopes": scopes, "token_type": "refresh", "user_id": 1}),
        ),
        None => oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token"),
    }
}

async fn refresh_delete(State(sb): State<Arc<Sandbox>>, Path(token): Path<String>) -> Response {
    if sb.revoke_refresh_token(&token) {
        empty(204)
    } else {
        oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
    }
}
