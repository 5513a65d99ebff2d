//! An OAuth 2.0 authorization server (RFC 6749): the authorization-code
//! grant (an authorize redirect with `code` and `state`), the refresh-token
//! grant and the client-credentials grant; access tokens that expire;
//! refresh tokens that stay (HubSpot) or are replaced by every refresh, the
//! old one refused from then on (Bitrix24); revocation; and, for tests,
//! codes issued as if a user approved and every access token expired now.
//!
//! Clients authenticate with `client_id`/`client_secret` in the form body or
//! with HTTP Basic (RFC 6749 §2.3.1). The vendor chooses the paths
//! ([`OAuthRoutes`]), where else than a form body the token endpoint takes
//! its parameters ([`ParamSources`]: the query string, a multipart body),
//! and the JSON of answers and errors ([`OAuthDialect`]); [`Rfc6749`] is the
//! plain dialect of the RFC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequest, Multipart, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;

use crate::now_ms;

/// A registered client (an app).
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
    /// Redirect URIs the authorize step accepts; empty accepts any.
    pub redirect_uris: Vec<String>,
}

impl OAuthClient {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> OAuthClient {
        OAuthClient {
            id: id.into(),
            secret: secret.into(),
            redirect_uris: Vec::new(),
        }
    }
}

/// The grants of RFC 6749 the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    fn parse(s: &str) -> Option<GrantType> {
        [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// How the tokens a server issues begin (`oa-sandbox-…`), so they look like
/// the vendor's.
#[derive(Clone, Debug)]
pub struct TokenPrefixes {
    pub code: String,
    pub access: String,
    pub refresh: String,
}

/// How an authorization server behaves.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    pub clients: Vec<OAuthClient>,
    /// Lifetime of access tokens (`expires_in`).
    pub access_ttl: Duration,
    /// Replace the refresh token on every refresh, refusing the old one
    /// from then on (Bitrix24); otherwise it stays valid (HubSpot).
    pub rotate_refresh_tokens: bool,
    /// Grants the token endpoint accepts.
    pub grants: Vec<GrantType>,
    pub prefixes: TokenPrefixes,
}

impl OAuthConfig {
    /// One client, one-hour access tokens, refresh tokens that stay, every
    /// grant.
    pub fn new(client: OAuthClient) -> OAuthConfig {
        OAuthConfig {
            clients: vec![client],
            access_ttl: Duration::from_secs(3600),
            rotate_refresh_tokens: false,
            grants: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
            prefixes: TokenPrefixes {
                code: "code-".into(),
                access: "at-".into(),
                refresh: "rt-".into(),
            },
        }
    }
}

/// Why an authorize or token request is refused. [`OAuthError::code`] is
/// the RFC 6749 error code.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error("missing or unknown client id, or a wrong client secret")]
    InvalidClient,
    #[error("{0} is required")]
    MissingParameter(&'static str),
    #[error("grant_type {given:?} is not supported; use {}", allowed.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" or "))]
    UnsupportedGrant {
        given: String,
        allowed: Vec<GrantType>,
    },
    #[error("response_type {0:?} is not supported; use code")]
    UnsupportedResponseType(String),
    #[error("redirect_uri {0:?} is not registered for this client")]
    UnregisteredRedirect(String),
    #[error("missing or unknown authorization code")]
    InvalidCode,
    #[error("redirect_uri does not match the one the code was issued for")]
    RedirectMismatch,
    #[error("missing or unknown refresh token")]
    InvalidRefreshToken,
}

impl OAuthError {
    /// The `error` code RFC 6749 gives this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::MissingParameter(_) | OAuthError::UnregisteredRedirect(_) => {
                "invalid_request"
            }
            OAuthError::UnsupportedGrant { .. } => "unsupported_grant_type",
            OAuthError::UnsupportedResponseType(_) => "unsupported_response_type",
            OAuthError::InvalidCode
            | OAuthError::RedirectMismatch
            | OAuthError::InvalidRefreshToken => "invalid_grant",
        }
    }
}

/// What the token endpoint granted.
#[derive(Clone, Debug, PartialEq)]
pub struct Granted {
    pub grant: GrantType,
    pub client_id: String,
    pub access_token: String,
    /// None for client credentials.
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
    pub scopes: Vec<String>,
}

/// An issued access token.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessToken {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// When it expires (ms since the epoch).
    pub expires_at: i64,
}

/// An issued refresh token.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshToken {
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// What a presented access token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenCheck {
    Active(AccessToken),
    /// Issued here, expired at this time (ms).
    Expired(AccessToken),
    Unknown,
}

#[derive(Clone, Debug)]
struct Code {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
}

#[derive(Default)]
struct Tokens {
    codes: HashMap<String, Code>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
}

/// Request parameters (a query or a form body), the last value of a
/// repeated name winning.
pub type Params = HashMap<String, String>;

/// Parses a query string or a form body.
pub fn params(raw: &str) -> Params {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The server's codes and tokens.
pub struct OAuthServer {
    config: OAuthConfig,
    tokens: Mutex<Tokens>,
}

impl OAuthServer {
    pub fn new(config: OAuthConfig) -> OAuthServer {
        OAuthServer {
            config,
            tokens: Mutex::new(Tokens::default()),
        }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().expect("oauth tokens")
    }

    fn client(&self, id: &str) -> Option<&OAuthClient> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    /// The authorize step, as if the user approved at once: the URL to
    /// redirect to, with `code` (and `state` when given).
    pub fn authorize(&self, q: &Params) -> Result<String, OAuthError> {
        let client = q
            .get("client_id")
            .and_then(|id| self.client(id))
            .ok_or(OAuthError::InvalidClient)?;
        let redirect = q
            .get("redirect_uri")
            .ok_or(OAuthError::MissingParameter("redirect_uri"))?;
        if let Some(rt) = q.get("response_type").filter(|rt| *rt != "code") {
            return Err(OAuthError::UnsupportedResponseType(rt.clone()));
        }
        if !client.redirect_uris.is_empty() && !client.redirect_uris.contains(redirect) {
            return Err(OAuthError::UnregisteredRedirect(redirect.clone()));
        }
        let scopes: Vec<&str> = q
            .get("scope")
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default();
        let code = self.issue_code(&client.id, redirect, &scopes);
        let mut to = url::Url::parse(redirect)
            .map_err(|_| OAuthError::UnregisteredRedirect(redirect.clone()))?;
        to.query_pairs_mut().append_pair("code", &code);
        if let Some(state) = q.get("state") {
            to.query_pairs_mut().append_pair("state", state);
        }
        Ok(to.into())
    }

    /// Issues an authorization code as if a user approved `client_id`
    /// (tests and demos skip the browser).
    pub fn issue_code(&self, client_id: &str, redirect_uri: &str, scopes: &[&str]) -> String {
        let code = format!(
            "{}{}",
            self.config.prefixes.code,
            uuid::Uuid::new_v4().simple()
        );
        self.tokens().codes.insert(
            code.clone(),
            Code {
                client_id: client_id.to_string(),
                redirect_uri: redirect_uri.to_string(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            },
        );
        code
    }

    /// The client a token request authenticates as: the form's
    /// `client_id`/`client_secret`, else HTTP Basic.
    fn authenticate(&self, form: &Params, headers: &HeaderMap) -> Result<&OAuthClient, OAuthError> {
        let (id, secret) = match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => basic(headers).ok_or(OAuthError::InvalidClient)?,
        };
        self.client(&id)
            .filter(|c| c.secret == secret)
            .ok_or(OAuthError::InvalidClient)
    }

    /// The token endpoint: a form body and the request's headers (for HTTP
    /// Basic client authentication).
    pub fn token(&self, form: &Params, headers: &HeaderMap) -> Result<Granted, OAuthError> {
        let client = self.authenticate(form, headers)?.id.clone();
        let grant = form
            .get("grant_type")
            .ok_or(OAuthError::MissingParameter("grant_type"))?;
        let grant = GrantType::parse(grant)
            .filter(|g| self.config.grants.contains(g))
            .ok_or_else(|| OAuthError::UnsupportedGrant {
                given: grant.clone(),
                allowed: self.config.grants.clone(),
            })?;
        let mut t = self.tokens();
        let (scopes, refresh) = match grant {
            GrantType::AuthorizationCode => {
                // A code is good for one try, whatever its outcome.
                let code = form
                    .get("code")
                    .and_then(|c| t.codes.remove(c))
                    .filter(|c| c.client_id == client)
                    .ok_or(OAuthError::InvalidCode)?;
                if form.get("redirect_uri") != Some(&code.redirect_uri) {
                    return Err(OAuthError::RedirectMismatch);
                }
                let refresh = self.new_refresh(&mut t, &client, &code.scopes);
                (code.scopes, Some(refresh))
            }
            GrantType::RefreshToken => {
                let given = form
                    .get("refresh_token")
                    .ok_or(OAuthError::InvalidRefreshToken)?;
                let held = t
                    .refresh
                    .get(given)
                    .filter(|r| r.client_id == client)
                    .cloned()
                    .ok_or(OAuthError::InvalidRefreshToken)?;
                let refresh = if self.config.rotate_refresh_tokens {
                    t.refresh.remove(given);
                    self.new_refresh(&mut t, &client, &held.scopes)
                } else {
                    given.clone()
                };
                (held.scopes, Some(refresh))
            }
            GrantType::ClientCredentials => {
                let scopes = form
                    .get("scope")
                    .map(|s| s.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                (scopes, None)
            }
        };
        let access_token = format!(
            "{}{}",
            self.config.prefixes.access,
            uuid::Uuid::new_v4().simple()
        );
        t.access.insert(
            access_token.clone(),
            AccessToken {
                client_id: client.clone(),
                scopes: scopes.clone(),
                expires_at: now_ms() + self.config.access_ttl.as_millis() as i64,
            },
        );
        Ok(Granted {
            grant,
            client_id: client,
            access_token,
            refresh_token: refresh,
            expires_in: self.config.access_ttl,
            scopes,
        })
    }

    fn new_refresh(&self, t: &mut Tokens, client: &str, scopes: &[String]) -> String {
        let token = format!("{}{}", self.config.prefixes.refresh, uuid::Uuid::new_v4());
        t.refresh.insert(
            token.clone(),
            RefreshToken {
                client_id: client.to_string(),
                scopes: scopes.to_vec(),
            },
        );
        token
    }

    /// What an access token presented with a request is.
    pub fn check(&self, access_token: &str) -> TokenCheck {
        match self.tokens().access.get(access_token) {
            Some(t) if t.expires_at > now_ms() => TokenCheck::Active(t.clone()),
            Some(t) => TokenCheck::Expired(t.clone()),
            None => TokenCheck::Unknown,
        }
    }

    /// A refresh token still valid.
    pub fn refresh_token(&self, token: &str) -> Option<RefreshToken> {
        self.tokens().refresh.get(token).cloned()
    }

    /// Revokes an access or a refresh token; whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        let mut t = self.tokens();
        let refresh = t.refresh.remove(token).is_some();
        let access = t.access.remove(token).is_some();
        refresh || access
    }

    /// Revokes a refresh token only (an admin uninstalling the app).
    pub fn revoke_refresh_token(&self, token: &str) -> bool {
        self.tokens().refresh.remove(token).is_some()
    }

    /// Expires every access token now (tests of refresh).
    pub fn expire_access_tokens(&self) {
        let now = now_ms();
        for t in self.tokens().access.values_mut() {
            t.expires_at = now - 1;
        }
    }

    /// Every access token issued so far, expired or not.
    pub fn access_tokens(&self) -> Vec<String> {
        self.tokens().access.keys().cloned().collect()
    }
}

/// `client_id` and `client_secret` from an `Authorization: Basic` header,
/// each form-urlencoded before encoding (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// How a vendor words its OAuth answers.
pub trait OAuthDialect: Send + Sync + 'static {
    /// A token answer.
    fn granted(&self, granted: &Granted) -> Response;
    /// A refused token request.
    fn refused(&self, error: &OAuthError) -> Response;
    /// A refused authorize request (the user sees it in the browser).
    fn authorize_refused(&self, error: &OAuthError) -> Response {
        self.refused(error)
    }
    /// The answer to a revocation (RFC 7009: 200 whether or not the token
    /// was known).
    fn revoked(&self, _known: bool) -> Response {
        StatusCode::OK.into_response()
    }
}

/// The RFC's own answers: `{access_token, token_type: "Bearer", expires_in,
/// refresh_token?, scope}`, and `{error, error_description}` with 400 (401
/// for a client that failed to authenticate).
pub struct Rfc6749;

impl OAuthDialect for Rfc6749 {
    fn granted(&self, g: &Granted) -> Response {
        let mut body = json!({
            "access_token": g.access_token,
            "token_type": "Bearer",
            "expires_in": g.expires_in.as_secs(),
            "scope": g.scopes.join(" "),
        });
        if let Some(r) = &g.refresh_token {
            body["refresh_token"] = json!(r);
        }
        ([("cache-control", "no-store")], Json(body)).into_response()
    }

    fn refused(&self, e: &OAuthError) -> Response {
        let status = match e {
            OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        (
            status,
            Json(json!({"error": e.code(), "error_description": e.to_string()})),
        )
            .into_response()
    }
}

/// Where a vendor serves the endpoints (several paths for one endpoint when
/// the vendor has versions of it).
#[derive(Clone, Debug, Default)]
pub struct OAuthRoutes {
    /// `GET`: the authorize redirect.
    pub authorize: Vec<String>,
    /// `POST`, a form body: the token endpoint.
    pub token: Vec<String>,
    /// `POST`, a form body with `token`: revocation.
    pub revoke: Vec<String>,
    /// Where else the token and revocation endpoints read parameters.
    pub params: ParamSources,
}

/// Where the token and revocation endpoints read their parameters besides
/// a form body (RFC 6749's one place, and the default): some vendors also
/// take them in the query string, and some official clients send a
/// `multipart/form-data` body.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParamSources {
    /// The query string too; a body's value wins over the query's.
    pub query: bool,
    /// A `multipart/form-data` body's fields, read as a form body's.
    pub multipart: bool,
}

struct Endpoint {
    server: Arc<OAuthServer>,
    dialect: Box<dyn OAuthDialect>,
    sources: ParamSources,
}

/// The routes of `server`, answered in `dialect`.
pub fn router(
    server: Arc<OAuthServer>,
    dialect: impl OAuthDialect,
    routes: &OAuthRoutes,
) -> Router {
    let ep = Arc::new(Endpoint {
        server,
        dialect: Box::new(dialect),
        sources: routes.params,
    });
    let mut r = Router::new();
    for p in &routes.authorize {
        r = r.route(p, get(authorize));
    }
    for p in &routes.token {
        r = r.route(p, post(token));
    }
    for p in &routes.revoke {
        r = r.route(p, post(revoke));
    }
    r.with_state(ep)
}

/// A token or revocation request's parameters, from the places the vendor
/// reads them. A body that cannot be read gives none (the endpoint then
/// refuses for the first one missing).
async fn request_params(sources: ParamSources, req: Request) -> Params {
    let mut out = match (sources.query, req.uri().query()) {
        (true, Some(q)) => params(q),
        _ => Params::new(),
    };
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if sources.multipart && multipart {
        if let Ok(mut body) = Multipart::from_request(req, &()).await {
            while let Ok(Some(field)) = body.next_field().await {
                let Some(name) = field.name().map(str::to_string) else {
                    continue;
                };
                if let Ok(value) = field.text().await {
                    out.insert(name, value);
                }
            }
        }
        return out;
    }
    if let Ok(body) = String::from_request(req, &()).await {
        out.extend(params(&body));
    }
    out
}

async fn authorize(State(ep): State<Arc<Endpoint>>, RawQuery(q): RawQuery) -> Response {
    match ep.server.authorize(&params(q.as_deref().unwrap_or(""))) {
        Ok(to) => match axum::http::HeaderValue::from_str(&to) {
            Ok(v) => (StatusCode::FOUND, [("location", v)]).into_response(),
            Err(_) => ep
                .dialect
                .authorize_refused(&OAuthError::MissingParameter("redirect_uri")),
        },
        Err(e) => ep.dialect.authorize_refused(&e),
    }
}

async fn token(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
    let headers = req.headers().clone();
    let form = request_params(ep.sources, req).await;
    match ep.server.token(&form, &headers) {
        Ok(g) => ep.dialect.granted(&g),
        Err(e) => ep.dialect.refused(&e),
    }
}

async fn revoke(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
    let token = request_params(ep.sources, req)
        .await
        .remove("token")
        .unwrap_or_default();
    let known = ep.server.revoke(&token);
    ep.dialect.revoked(known)
}
