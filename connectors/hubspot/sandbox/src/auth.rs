//! Private-app tokens, and HubSpot's face on the kit's OAuth 2.0 server:
//! its paths (the authorize redirect, the v1, v3 and date-versioned token
//! endpoints, revocation), its answers (`hub_id`, `scopes`), its errors
//! (`BAD_AUTH_CODE`, `invalid_grant`…), and its own endpoints
//! (introspection, token information); expiring access tokens, refresh
//! tokens that stay, HubSpot's 401 bodies.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use puente_sandbox_kit::oauth::{
    self, GrantType, Granted, OAuthClient, OAuthDialect, OAuthError, OAuthRoutes, TokenCheck,
    TokenPrefixes,
};
use puente_sandbox_kit::OAuthConfig;
use serde_json::json;

use super::store::{now_ms, ApiErr};
use super::{correlation, empty, reply, Sandbox, SandboxOptions};

/// Who is calling: the rate-limit key, and whether it is a private app
/// (which gets daily-limit headers).
pub struct Caller {
    pub app: String,
    pub private: bool,
}

const NO_CREDENTIALS: &str = "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview";

/// HubSpot's OAuth app: one client, access tokens of `access_token_ttl`,
/// refresh tokens that stay, the authorization-code and refresh grants.
pub fn oauth_config(opts: &SandboxOptions) -> OAuthConfig {
    OAuthConfig {
        clients: vec![OAuthClient::new(&opts.client_id, &opts.client_secret)],
        access_ttl: opts.access_token_ttl,
        rotate_refresh_tokens: false,
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        prefixes: TokenPrefixes {
            code: "code-".into(),
            access: "oa-sandbox-".into(),
            refresh: "rt-sandbox-".into(),
        },
    }
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
            return Err(ApiErr::new(401, "INVALID_AUTHENTICATION", NO_CREDENTIALS));
        };
        if self.opts.tokens.iter().any(|t| t == token)
            && !self.revoked.lock().expect("revoked").contains(token)
        {
            return Ok(Caller {
                app: format!("private:{token}"),
                private: true,
            });
        }
        match self.oauth.check(token) {
            TokenCheck::Active(_) => Ok(Caller {
                app: format!("oauth:{}", self.opts.client_id),
                private: false,
            }),
            TokenCheck::Expired(t) => Err(ApiErr::new(
                401,
                "EXPIRED_AUTHENTICATION",
                format!(
                    "The OAuth token used to make this call expired {} minute(s) ago.",
                    (now_ms() - t.expires_at) / 60_000
                ),
            )),
            TokenCheck::Unknown => Err(ApiErr::new(401, "INVALID_AUTHENTICATION", NO_CREDENTIALS)),
        }
    }

    /// Issues a code as if a user approved the app (tests and the demo).
    pub fn authorize(&self, redirect_uri: &str, scopes: &[&str]) -> String {
        self.oauth
            .issue_code(&self.opts.client_id, redirect_uri, scopes)
    }

    /// Expires every access token now (tests of refresh).
    pub fn expire_access_tokens(&self) {
        self.oauth.expire_access_tokens();
    }

    /// Revokes a private app's token, as rotating it or deleting the app
    /// in HubSpot does: calls with it get HubSpot's 401 from then on.
    pub fn revoke_token(&self, token: &str) {
        self.revoked
            .lock()
            .expect("revoked")
            .insert(token.to_string());
    }

    /// Every OAuth access token issued so far, expired or not (tests).
    pub fn access_tokens(&self) -> Vec<String> {
        self.oauth.access_tokens()
    }

    /// Revokes a refresh token, as an admin uninstalling the app would.
    pub fn revoke_refresh_token(&self, token: &str) -> bool {
        self.oauth.revoke_refresh_token(token)
    }
}

/// HubSpot's words for the kit's OAuth answers.
struct HubSpotOAuth {
    portal_id: u64,
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

impl OAuthDialect for HubSpotOAuth {
    fn granted(&self, g: &Granted) -> Response {
        reply(
            200,
            json!({
                "token_type": "bearer",
                "access_token": g.access_token,
                "refresh_token": g.refresh_token,
                "expires_in": g.expires_in.as_secs(),
                "hub_id": self.portal_id,
                "scopes": g.scopes,
            }),
        )
    }

    fn refused(&self, e: &OAuthError) -> Response {
        match e {
            OAuthError::InvalidClient => reply(
                400,
                json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id", "error": "invalid_client", "error_description": "missing or unknown client id", "correlationId": correlation()}),
            ),
            OAuthError::InvalidCode => oauth_error("BAD_AUTH_CODE", "missing or unknown auth code"),
            OAuthError::RedirectMismatch => oauth_error(
                "BAD_REDIRECT_URI",
                "redirect_uri does not match the one the code was issued for",
            ),
            OAuthError::InvalidRefreshToken => {
                oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
            }
            _ => oauth_error(
                "BAD_GRANT_TYPE",
                "grant_type must be authorization_code or refresh_token",
            ),
        }
    }

    fn authorize_refused(&self, e: &OAuthError) -> Response {
        let text = match e {
            OAuthError::InvalidClient => "unknown client_id".to_string(),
            OAuthError::MissingParameter(p) => format!("{p} is required"),
            other => other.to_string(),
        };
        (StatusCode::BAD_REQUEST, text).into_response()
    }

    fn revoked(&self, _known: bool) -> Response {
        empty(200)
    }
}

/// The kit's authorize, token and revoke endpoints at HubSpot's paths.
pub fn oauth_router(sb: &Arc<Sandbox>) -> Router {
    let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect();
    oauth::router(
        sb.oauth.clone(),
        HubSpotOAuth {
            portal_id: sb.opts.portal_id,
        },
        &OAuthRoutes {
            authorize: paths(&["/oauth/authorize"]),
            token: paths(&["/oauth/v1/token", "/oauth/v3/token", "/oauth/2026-03/token"]),
            revoke: paths(&["/oauth/v3/token/revoke"]),
            // HubSpot reads a form body only.
            ..OAuthRoutes::default()
        },
    )
}

/// HubSpot's own token endpoints: introspection and token information.
pub fn router() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/oauth/v3/token/introspect", post(introspect))
        .route("/oauth/v1/access-tokens/{token}", get(access_info))
        .route(
            "/oauth/v1/refresh-tokens/{token}",
            get(refresh_info).delete(refresh_delete),
        )
}

async fn introspect(State(sb): State<Arc<Sandbox>>, body: String) -> Response {
    let token = oauth::params(&body).remove("token").unwrap_or_default();
    let now = now_ms();
    if let TokenCheck::Active(t) = sb.oauth.check(&token) {
        return reply(
            200,
            json!({"active": true, "hub_id": sb.opts.portal_id, "user_id": 1, "app_id": sb.opts.app_id, "scopes": t.scopes, "expires_in": (t.expires_at - now) / 1000, "token_use": "access_token"}),
        );
    }
    if let Some(r) = sb.oauth.refresh_token(&token) {
        return reply(
            200,
            json!({"active": true, "hub_id": sb.opts.portal_id, "user_id": 1, "app_id": sb.opts.app_id, "scopes": r.scopes, "token_use": "refresh_token"}),
        );
    }
    reply(200, json!({"active": false}))
}

async fn access_info(State(sb): State<Arc<Sandbox>>, Path(token): Path<String>) -> Response {
    match sb.oauth.check(&token) {
        TokenCheck::Active(t) => reply(
            200,
            json!({"token": token, "hub_id": sb.opts.portal_id, "app_id": sb.opts.app_id, "scopes": t.scopes, "expires_in": (t.expires_at - now_ms()) / 1000, "token_type": "access", "user_id": 1}),
        ),
        _ => oauth_error("BAD_ACCESS_TOKEN", "missing or unknown access token"),
    }
}

async fn refresh_info(State(sb): State<Arc<Sandbox>>, Path(token): Path<String>) -> Response {
    match sb.oauth.refresh_token(&token) {
        Some(r) => reply(
            200,
            json!({"token": token, "hub_id": sb.opts.portal_id, "client_id": sb.opts.client_id, "scopes": r.scopes, "token_type": "refresh", "user_id": 1}),
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
