//! A local HubSpot: the CRM API (objects, batch, search, properties and
//! their legacy v1/v2 listings, associations, custom object schemas),
//! private-app and OAuth 2.0 auth, HubSpot's rate limits and their headers,
//! webhooks signed as HubSpot signs them, and fault injection. Code written
//! against api.hubapi.com works against it with only the base URL changed;
//! HubSpot's own Python and Node clients check that
//! (tests/it/official_clients.rs).
//!
//! The machinery every sandbox shares (serving, faults, persistence,
//! counters, rate windows, the OAuth server, webhook delivery) is
//! puente-sandbox-kit's; this crate holds what HubSpot does differently:
//! its paths, its answer and error bodies, its headers, its signatures.

// Handlers answer early with a ready `Response` as their error; boxing
// every early answer would buy nothing.
#![allow(clippy::result_large_err)]

mod api;
mod auth;
mod cli;
mod faults;
mod hooks;
mod legacy;
mod search;
mod seed;
pub mod store;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use puente_sandbox_kit::counters::{RATE_LIMITED, REQUESTS};
use puente_sandbox_kit::harness::Shutdown;
use puente_sandbox_kit::{
    Counters, DailyQuota, FaultInjector, OAuthServer, Persisted, Server, Window,
};
use serde_json::{json, Value as J};

pub use cli::{descriptor, HubspotArgs};
pub use hooks::sign_v3;
pub use puente_sandbox_kit::Faults;
pub use search::SearchCaps;
use store::{ApiErr, Ms, Store};

/// What can go wrong starting the sandbox or calling it through
/// [`Running`]'s helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Kit(#[from] puente_sandbox_kit::Error),
    #[error("{0}")]
    Flag(String),
    #[error("{method} {path}: {source}")]
    Unreachable {
        method: reqwest::Method,
        path: String,
        source: reqwest::Error,
    },
    #[error("{method} {path}: {status} {body}")]
    Status {
        method: reqwest::Method,
        path: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{0}")]
    Answer(String),
}

/// How a sandbox behaves.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Private-app tokens accepted as `Authorization: Bearer …`.
    pub tokens: Vec<String>,
    /// Requests per 10 s per app (private-app token or OAuth app).
    pub rate_limit_per_10s: u32,
    /// Requests per day for the account (private apps).
    pub daily_limit: u64,
    /// Search requests per second for the account.
    pub search_per_sec: u32,
    pub search: SearchCaps,
    /// How long a write takes to show in search results.
    pub search_lag: Duration,
    pub faults: Faults,
    /// Records to seed (contacts; companies and deals in proportion).
    pub seed: Option<u64>,
    /// Keep state in this JSON file (loaded at start, saved as it changes).
    pub state_file: Option<PathBuf>,
    pub portal_id: u64,
    /// The OAuth app (and the secret webhooks are signed with).
    pub client_id: String,
    pub client_secret: String,
    pub app_id: u64,
    /// The developer key for the webhooks settings API (`?hapikey=`).
    pub developer_key: String,
    /// Lifetime of OAuth access tokens.
    pub access_token_ttl: Duration,
    /// First wait before a failed webhook delivery is retried (doubles).
    pub webhook_retry_base: Duration,
    pub webhook_max_retries: u32,
    /// Reject companies with a domain another company holds (HubSpot's API
    /// does not; its UI and imports do).
    pub unique_company_domain: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            tokens: vec!["pat-sandbox-0000".to_string()],
            rate_limit_per_10s: 100,
            daily_limit: 250_000,
            search_per_sec: 5,
            search: SearchCaps::default(),
            search_lag: Duration::ZERO,
            faults: Faults::default(),
            seed: None,
            state_file: None,
            portal_id: 62_515,
            client_id: "sandbox-client-id".to_string(),
            client_secret: "sandbox-client-secret".to_string(),
            app_id: 1_234_567,
            developer_key: "sandbox-developer-key".to_string(),
            access_token_ttl: Duration::from_secs(1800),
            webhook_retry_base: Duration::from_secs(1),
            webhook_max_retries: 10,
            unique_company_domain: false,
        }
    }
}

impl SandboxOptions {
    /// Limits high enough never to throttle (trials and tests that measure
    /// something else than rate limiting).
    pub fn unthrottled() -> Self {
        SandboxOptions {
            rate_limit_per_10s: 100_000,
            search_per_sec: 10_000,
            ..SandboxOptions::default()
        }
    }
}

/// The counters HubSpot's sandbox keeps beyond the kit's.
const READS: &str = "reads";
const WRITES: &str = "writes";
const SEARCHES: &str = "searches";

/// What the sandbox has served, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub reads: u64,
    pub writes: u64,
    pub searches: u64,
    pub rate_limited: u64,
    pub faults: u64,
    pub webhook_deliveries: u64,
    pub webhook_failures: u64,
}

/// HubSpot's limits: the ten-secondly window per app, the search lane per
/// account, the account's daily quota.
struct Limits {
    burst: Window,
    search: Window,
    day: DailyQuota,
}

/// The daily quota is the account's, shared by its private apps.
const ACCOUNT: &str = "account";

/// One running sandbox's shared state.
pub struct Sandbox {
    pub opts: SandboxOptions,
    store: Arc<Persisted<Store>>,
    /// Writes not yet visible to search: (visible at, type, id).
    index: Mutex<SearchIndex>,
    limits: Mutex<Limits>,
    oauth: Arc<OAuthServer>,
    /// Private-app tokens rotated or deleted since the sandbox started.
    revoked: Mutex<HashSet<String>>,
    hooks: hooks::Hooks,
    faults: FaultInjector,
    counters: Arc<Counters>,
    /// The search lag now (starts as `opts.search_lag`).
    lag_ms: AtomicU64,
}

#[derive(Default)]
struct SearchIndex {
    pending: VecDeque<(Ms, String, u64)>,
    /// type → id → the record as search sees it.
    seen: std::collections::HashMap<String, BTreeMap<u64, store::Rec>>,
}

impl Sandbox {
    pub fn new(opts: SandboxOptions) -> Result<Arc<Sandbox>, Error> {
        let store = Persisted::open(opts.state_file.clone(), || Store::new(opts.portal_id))?;
        {
            let mut s = store.lock();
            s.unique_company_domain = opts.unique_company_domain;
            s.reindex();
            if let Some(n) = opts.seed {
                if s.types.values().all(|t| t.records.is_empty()) {
                    seed::seed(&mut s, n);
                }
            }
            s.changes.clear();
        }
        let counters = Arc::new(Counters::new(&[READS, WRITES, SEARCHES]));
        let sb = Arc::new(Sandbox {
            hooks: hooks::Hooks::new(&opts, counters.clone())?,
            store: Arc::new(store),
            index: Mutex::new(SearchIndex::default()),
            limits: Mutex::new(Limits {
                burst: Window::new(opts.rate_limit_per_10s, Duration::from_secs(10)),
                search: Window::per_second(opts.search_per_sec),
                day: DailyQuota::new(opts.daily_limit),
            }),
            oauth: Arc::new(OAuthServer::new(auth::oauth_config(&opts))),
            revoked: Mutex::new(HashSet::new()),
            faults: FaultInjector::new(
                opts.faults.clone(),
                opts.seed.unwrap_or(7),
                faults::HubSpotFaults,
                counters.clone(),
            ),
            counters,
            lag_ms: AtomicU64::new(0),
            opts,
        });
        sb.set_search_lag(sb.opts.search_lag);
        Ok(sb)
    }

    /// Changes the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.faults.set(faults);
    }

    /// Changes how long writes take to reach search results.
    pub fn set_search_lag(&self, lag: Duration) {
        let store = self.store.lock();
        let mut idx = self.index.lock().expect("index");
        // Search starts from what exists now.
        idx.pending.clear();
        idx.seen.clear();
        for (name, t) in &store.types {
            idx.seen.insert(name.clone(), t.records.clone());
        }
        self.lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
    }

    fn lag(&self) -> i64 {
        self.lag_ms.load(Ordering::Relaxed) as i64
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.get(REQUESTS),
            reads: c.get(READS),
            writes: c.get(WRITES),
            searches: c.get(SEARCHES),
            rate_limited: c.get(RATE_LIMITED),
            faults: c.get(puente_sandbox_kit::counters::FAULTS),
            webhook_deliveries: c.get(puente_sandbox_kit::counters::WEBHOOK_DELIVERIES),
            webhook_failures: c.get(puente_sandbox_kit::counters::WEBHOOK_FAILURES),
        }
    }

    pub fn reset_stats(&self) {
        self.counters.reset();
    }

    /// Runs `f` on the store; the changes it makes reach search, webhook
    /// subscribers and the state file.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut s = self.store.lock();
        let out = f(&mut s);
        let changes = std::mem::take(&mut s.changes);
        if !changes.is_empty() {
            if self.lag() > 0 {
                let mut idx = self.index.lock().expect("index");
                let at = store::now_ms() + self.lag();
                for c in &changes {
                    idx.pending.push_back((at, c.ty.clone(), c.object_id));
                }
            }
            drop(s);
            self.hooks.publish(changes);
            self.store.changed();
        }
        out
    }

    /// Runs a search on what search can see (writes older than the lag).
    fn search(&self, ty: &str, body: &J, raw_len: usize) -> Result<J, ApiErr> {
        let s = self.store.lock();
        if self.lag() == 0 {
            return search::search(
                &s,
                ty,
                s.ty(ty).records.values(),
                body,
                raw_len,
                &self.opts.search,
            );
        }
        let mut idx = self.index.lock().expect("index");
        let now = store::now_ms();
        while idx.pending.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, t, id) = idx.pending.pop_front().expect("front");
            let current = s.types.get(&t).and_then(|d| d.records.get(&id)).cloned();
            let seen = idx.seen.entry(t).or_default();
            match current {
                Some(r) => {
                    seen.insert(id, r);
                }
                None => {
                    seen.remove(&id);
                }
            }
        }
        let empty = Default::default();
        let seen = idx.seen.get(ty).unwrap_or(&empty);
        search::search(&s, ty, seen.values(), body, raw_len, &self.opts.search)
    }

    /// The router of the whole API.
    pub fn router(self: &Arc<Sandbox>) -> Router {
        api::router(self.clone())
            .merge(legacy::router())
            .merge(auth::router())
            .merge(hooks::router(self.clone()))
            .with_state(self.clone())
            .merge(auth::oauth_router(self))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate))
    }

    /// Serves until `shutdown` resolves: webhook deliveries started, the
    /// state file saved as it changes and once more on the way out.
    pub async fn serve(
        self: Arc<Sandbox>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let saver = self.store.spawn_saver();
        self.hooks.start();
        let result = puente_sandbox_kit::harness::serve(listener, self.router(), shutdown).await;
        if let Some(t) = saver {
            t.abort();
        }
        self.store.save_or_log();
        result
    }
}

/// A sandbox running in this process (tests, the demo, benchmarks).
pub struct Running {
    pub sandbox: Arc<Sandbox>,
    pub url: String,
    server: Server,
}

impl Running {
    /// Starts a sandbox on a free port of 127.0.0.1.
    pub async fn start(opts: SandboxOptions) -> Result<Running, Error> {
        let listener = puente_sandbox_kit::harness::bind("127.0.0.1:0").await?;
        Running::on(listener, opts).await
    }

    pub async fn on(
        listener: tokio::net::TcpListener,
        opts: SandboxOptions,
    ) -> Result<Running, Error> {
        let sandbox = Sandbox::new(opts)?;
        let sb = sandbox.clone();
        let server = Server::spawn(listener, move |listener, shutdown: Shutdown| {
            sb.serve(listener, shutdown)
        })?;
        Ok(Running {
            sandbox,
            url: server.url().to_string(),
            server,
        })
    }

    pub fn token(&self) -> &str {
        &self.sandbox.opts.tokens[0]
    }

    /// One call as any HubSpot client would make it, with the first token.
    /// A 429 (the search limit is 5 a second) waits and retries; another
    /// error status is an error with HubSpot's body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let http = reqwest::Client::new();
        let unreachable = |source| Error::Unreachable {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        loop {
            let mut r = http
                .request(method.clone(), format!("{}{path}", self.url))
                .bearer_auth(self.token());
            if let Some(b) = &body {
                r = r.json(b);
            }
            let resp = r.send().await.map_err(unreachable)?;
            let status = resp.status();
            let text = resp.text().await.map_err(unreachable)?;
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                continue;
            }
            if !status.is_success() {
                return Err(Error::Status {
                    method,
                    path: path.to_string(),
                    status,
                    body: text,
                });
            }
            return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
        }
    }

    /// Installs the OAuth app as a user approving it would (an authorization
    /// code exchanged at the token endpoint); the token answer
    /// (`access_token`, `refresh_token`, `expires_in`).
    pub async fn install_app(&self, scopes: &[&str]) -> Result<serde_json::Value, Error> {
        let code = self.sandbox.authorize("http://localhost/cb", scopes);
        let o = &self.sandbox.opts;
        let path = "/oauth/v1/token";
        let unreachable = |source| Error::Unreachable {
            method: reqwest::Method::POST,
            path: path.to_string(),
            source,
        };
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", o.client_id.as_str()),
                ("client_secret", o.client_secret.as_str()),
                ("redirect_uri", "http://localhost/cb"),
                ("code", code.as_str()),
            ])
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }

    /// Creates records of an object type through the batch API, 100 a
    /// call; each item is a record's properties.
    pub async fn create_all(
        &self,
        ty: &str,
        properties: impl IntoIterator<Item = serde_json::Value>,
    ) -> Result<(), Error> {
        let inputs: Vec<serde_json::Value> = properties
            .into_iter()
            .map(|p| serde_json::json!({ "properties": p }))
            .collect();
        for chunk in inputs.chunks(100) {
            self.call(
                reqwest::Method::POST,
                &format!("/crm/v3/objects/{ty}/batch/create"),
                Some(serde_json::json!({ "inputs": chunk })),
            )
            .await?;
        }
        Ok(())
    }

    /// Every record of an object type (all pages), with these properties.
    pub async fn all(&self, ty: &str, properties: &str) -> Result<Vec<serde_json::Value>, Error> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let v = self
                .call(
                    reqwest::Method::GET,
                    &format!("/crm/v3/objects/{ty}?limit=100&properties={properties}{after}"),
                    None,
                )
                .await?;
            out.extend(v["results"].as_array().into_iter().flatten().cloned());
            match v.pointer("/paging/next/after").and_then(|a| a.as_str()) {
                Some(a) => after = format!("&after={a}"),
                None => return Ok(out),
            }
        }
    }

    /// The id of the contact with this e-mail.
    pub async fn contact_id(&self, email: &str) -> Result<String, Error> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/crm/v3/objects/contacts/{email}?idProperty=email"),
                None,
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Answer(format!("no id for {email}: {v}")))
    }

    /// Points the app's webhooks at `target_url` and subscribes to events:
    /// `(event type, property)` pairs, the property for `*.propertyChange`.
    pub async fn subscribe(
        &self,
        target_url: &str,
        events: &[(&str, Option<&str>)],
    ) -> Result<(), Error> {
        let app = self.sandbox.opts.app_id;
        let key = format!("?hapikey={}", self.sandbox.opts.developer_key);
        self.call(
            reqwest::Method::PUT,
            &format!("/webhooks/v3/{app}/settings{key}"),
            Some(serde_json::json!({ "targetUrl": target_url })),
        )
        .await?;
        for (event, property) in events {
            let mut sub = serde_json::json!({ "eventType": event, "active": true });
            if let Some(p) = property {
                sub["propertyName"] = serde_json::Value::from(*p);
            }
            self.call(
                reqwest::Method::POST,
                &format!("/webhooks/v3/{app}/subscriptions{key}"),
                Some(sub),
            )
            .await?;
        }
        Ok(())
    }

    /// Stops the server; the state file is saved before this returns.
    pub async fn stop(self) {
        let _ = self.server.stop().await;
    }
}

pub(crate) fn correlation() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A JSON answer.
pub(crate) fn reply(status: u16, body: J) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

pub(crate) fn error_reply(e: &ApiErr) -> Response {
    reply(e.status, e.body(&correlation()))
}

/// What HubSpot answers on a path it does not serve: a 404 with its JSON
/// error body, no category (as captured from api.hubapi.com).
pub(crate) async fn not_found() -> Response {
    reply(
        404,
        json!({
            "status": "error",
            "message": "resource not found",
            "correlationId": correlation(),
        }),
    )
}

/// The path of everything `gate` lets through without a token.
fn is_open_path(path: &str) -> bool {
    path.starts_with("/oauth/") || path.starts_with("/_sandbox") || path.starts_with("/webhooks/")
}

fn classify(method: &Method, path: &str) -> &'static str {
    if path.ends_with("/search") {
        SEARCHES
    } else if *method == Method::GET || path.ends_with("/batch/read") {
        READS
    } else {
        WRITES
    }
}

/// Every API request passes here: correlation id, auth, faults, rate
/// limits and their headers.
async fn gate(State(sb): State<Arc<Sandbox>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if is_open_path(&path) {
        let mut r = next.run(req).await;
        stamp(&mut r);
        return r;
    }
    let caller = match sb.authenticate(req.headers()) {
        Ok(c) => c,
        Err(e) => {
            let mut r = error_reply(&e);
            stamp(&mut r);
            return r;
        }
    };
    let class = classify(&method, &path);
    // Faults decided before the request is served.
    let fault = sb.faults.roll();
    if let Some(f) = fault {
        if let Some(mut r) = sb.faults.before(f) {
            stamp(&mut r);
            return r;
        }
        if let Some(d) = FaultInjector::delay(f) {
            tokio::time::sleep(d).await;
        }
    }
    let headers = match sb.admit(&caller, class) {
        Ok(h) => h,
        Err(mut r) => {
            sb.counters.incr(RATE_LIMITED);
            stamp(&mut r);
            return r;
        }
    };
    sb.counters.incr(REQUESTS);
    sb.counters.incr(class);
    let mut r = next.run(req).await;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    stamp(&mut r);
    match fault {
        // Broken on the way out: the write did happen.
        Some(f) => sb.faults.after(f, r).await,
        None => r,
    }
}

fn stamp(r: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(&correlation()) {
        r.headers_mut().insert("x-hubspot-correlation-id", v);
    }
}

impl Sandbox {
    /// Counts a request against the caller's limits, or answers 429.
    fn admit(
        &self,
        caller: &auth::Caller,
        class: &str,
    ) -> Result<Vec<(&'static str, String)>, Response> {
        let now = store::now_ms();
        let mut l = self.limits.lock().expect("limits");
        let private = caller.private;
        if private && l.day.is_spent(ACCOUNT, now) {
            return Err(too_many("You have reached your daily limit.", "DAILY", &[]));
        }
        if class == SEARCHES {
            if !l.search.admit(ACCOUNT, now).allowed {
                return Err(too_many(
                    "You have reached your secondly limit.",
                    "SECONDLY",
                    &[],
                ));
            }
            l.day.spend(ACCOUNT, now);
            return Ok(vec![]);
        }
        let a = l.burst.admit(&caller.app, now);
        let mut headers = vec![
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                "10000".to_string(),
            ),
            ("x-hubspot-ratelimit-max", a.max.to_string()),
            ("x-hubspot-ratelimit-remaining", a.remaining.to_string()),
        ];
        if !a.allowed {
            return Err(too_many(
                "You have reached your ten_secondly_rolling limit.",
                "TEN_SECONDLY_ROLLING",
                &headers,
            ));
        }
        let left = l.day.spend(ACCOUNT, now);
        if private {
            headers.push((
                "x-hubspot-ratelimit-daily",
                self.opts.daily_limit.to_string(),
            ));
            headers.push(("x-hubspot-ratelimit-daily-remaining", left.to_string()));
        }
        Ok(headers)
    }
}

pub(crate) fn too_many(
    message: &str,
    policy: &str,
    headers: &[(&'static str, String)],
) -> Response {
    let mut r = reply(
        429,
        json!({
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation(),
            "policyName": policy,
            "requestId": correlation(),
        }),
    );
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

pub(crate) fn empty(status: u16) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    r
}
