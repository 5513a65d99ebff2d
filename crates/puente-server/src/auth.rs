//! Who may use the API and the dashboard, and the headers every answer
//! carries.
//!
//! - The API takes the admin token as `Authorization: Bearer …`. Such a
//!   request carries no cookie, so a browser cannot be tricked into
//!   sending it: it needs no CSRF token.
//! - The dashboard's login form trades the token for a session cookie
//!   (`HttpOnly`, `SameSite=Strict`, `Secure` behind https, 12 hours).
//!   Every state-changing request made with that cookie must carry the
//!   session's CSRF token (a form field `csrf` or an `X-CSRF-Token`
//!   header), and an `Origin` header, when sent, must be this server's.
//! - Tokens are compared in constant time; sessions live in memory, so a
//!   restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use puente_core::secret_eq;
use rand::RngCore;
use serde::Deserialize;

use crate::api::ApiError;
use crate::App;

const COOKIE: &str = "puente_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Forms are small; a bigger body is refused before it is read.
const FORM_LIMIT: usize = 64 * 1024;

struct Session {
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    token: String,
    secure: bool,
    sessions: Mutex<HashMap<String, Session>>,
}

/// How a request proved itself, passed on to handlers.
#[derive(Clone, Debug)]
pub enum Caller {
    Bearer,
    Session { csrf: String },
}

impl Caller {
    /// The CSRF token forms must carry (empty for bearer callers).
    pub fn csrf(&self) -> &str {
        match self {
            Caller::Bearer => "",
            Caller::Session { csrf } => csrf,
        }
    }
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Auth {
    pub fn new(token: String, secure: bool) -> Auth {
        Auth {
            token,
            secure,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn token_ok(&self, t: &str) -> bool {
        !self.token.is_empty() && secret_eq(t, &self.token)
    }

    /// A new session (with its own CSRF token); returns its id.
    fn open_session(&self) -> String {
        let id = random_token();
        let mut s = self.sessions.lock().expect("sessions");
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        s.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn session(&self, id: &str) -> Option<String> {
        let s = self.sessions.lock().expect("sessions");
        s.iter()
            .find(|(k, v)| secret_eq(k, id) && v.expires > Instant::now())
            .map(|(_, v)| v.csrf.clone())
    }

    fn close_session(&self, id: &str) {
        self.sessions.lock().expect("sessions").remove(id);
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie is ASCII")
    }

    /// Who the request is from, if anyone.
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if let Some(t) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_ok(t.trim()).then_some(Caller::Bearer);
        }
        let id = cookie(headers, COOKIE)?;
        self.session(&id).map(|csrf| Caller::Session { csrf })
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The API answers 401; a page sends the browser to the login form.
fn unauthenticated(req: &Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/metrics" {
        ApiError::unauthenticated().into_response()
    } else {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Redirect::to(&format!("/login?next={}", crate::urlencode(next))).into_response()
    }
}

/// Whether an `Origin` (or, failing that, `Referer`) header names a site
/// other than this server.
fn cross_site(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match origin {
        None => false,
        Some(o) => {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .unwrap_or("");
            let o_host = rest.split('/').next().unwrap_or("");
            o_host != host
        }
    }
}

/// Checks a session's state-changing request: a same-site origin and the
/// session's CSRF token, from the `X-CSRF-Token` header or a form's `csrf`
/// field (the form body is read, bounded, and handed on unchanged).
async fn check_csrf(req: Request, csrf: &str) -> Result<Request, Response> {
    if cross_site(req.headers()) {
        return Err(ApiError::forbidden("the request came from another site").into_response());
    }
    let (ok, req) = match req.headers().get("x-csrf-token") {
        Some(t) => (t.to_str().is_ok_and(|t| secret_eq(t, csrf)), req),
        None => {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = to_bytes(body, FORM_LIMIT).await else {
                return Err(ApiError::too_large(FORM_LIMIT).into_response());
            };
            let ok = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|f| f.into_iter().find(|(k, _)| k == "csrf"))
                .is_some_and(|(_, v)| secret_eq(&v, csrf));
            (ok, Request::from_parts(parts, Body::from(bytes)))
        }
    };
    if ok {
        Ok(req)
    } else {
        Err(ApiError::forbidden(
            "the CSRF token is missing or wrong; reload the page and try again",
        )
        .into_response())
    }
}

/// Guards every route behind it: a valid bearer token or session, and for
/// a session's state-changing requests the CSRF token and a same-site origin.
pub async fn require(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some(caller) = app.auth.caller(req.headers()) else {
        return unauthenticated(&req);
    };
    let mut req = match &caller {
        Caller::Session { csrf } if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            match check_csrf(req, csrf).await {
                Ok(req) => req,
                Err(refused) => return refused,
            }
        }
        _ => req,
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Headers on every answer: no framing, no sniffing, no referrer to other
/// sites (same-site requests keep theirs, so the Origin check works), a strict
/// content security policy (the dashboard loads only its own files), and
/// no caching of anything that may hold customer data.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only a path on this server (never `//other.site` or a full URL).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

async fn login_page(
    State(app): State<App>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let html = crate::web::render(
        &app,
        "login.html",
        minijinja::context! {
            next => local_path(q.next.as_deref()),
            failed => q.failed.is_some(),
        },
    );
    Html(html).into_response()
}

async fn login(State(app): State<App>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let next = local_path(f.next.as_deref());
    if cross_site(&headers) {
        return ApiError::forbidden("the request came from another site").into_response();
    }
    if !app.auth.token_ok(f.token.trim()) {
        // A little friction against guessing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let q = serde_urlencoded::to_string([("next", next.as_str()), ("failed", "1")])
            .unwrap_or_default();
        return Redirect::to(&format!("/login?{q}")).into_response();
    }
    let id = app.auth.open_session();
    let mut res = Redirect::to(&next).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        app.auth.cookie(&id, SESSION_TTL.as_secs()),
    );
    res
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        app.auth.close_session(&id);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, app.auth.cookie("", 0));
    res
}

pub fn routes() -> Router<App> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/records?x=1")), "/records?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn an_origin_other_than_the_host_is_cross_site() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:7300".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:7300".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_site(&h));
    }
}
