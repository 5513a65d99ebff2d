//! HubSpot's API as the connector sees it: auth (private-app token or
//! OAuth with refresh), the shared rate governor (ten-secondly and search
//! lanes), retries, and HubSpot's error bodies turned into our errors.

use std::sync::Arc;
use std::time::Duration;

use puente_core::{ConnectorError, ErrorKind, Failure, FailureCategory};
use puente_http::governor::ReportedBy;
use puente_http::{Call, Governor, HttpClient, HttpError, Limit, Quota, RetryPolicy, Throttle};
use reqwest::Method;
use serde_json::Value as J;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// How the connector authenticates.
#[derive(Clone)]
pub enum Auth {
    /// A private app's access token.
    Token(String),
    /// An OAuth app: tokens refreshed before they expire.
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        match self {
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::OAuth { client_id, .. } => write!(f, "OAuth {{ client_id: {client_id}, .. }}"),
        }
    }
}

/// Settings of one HubSpot connection.
#[derive(Clone)]
pub struct Settings {
    pub base_url: String,
    pub auth: Auth,
    /// The app's client secret, which signs webhooks.
    pub webhook_secret: Option<String>,
    /// Requests per 10 s to start from (corrected by HubSpot's headers).
    pub rate_limit_per_10s: u32,
    pub search_per_sec: u32,
    /// Where OAuth access tokens outlive the process (sealed in the state
    /// store by the engine).
    pub token_cache: Option<Arc<dyn puente_core::TokenCache>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("rate_limit_per_10s", &self.rate_limit_per_10s)
            .field("search_per_sec", &self.search_per_sec)
            .field("token_cache", &self.token_cache.is_some())
            .finish()
    }
}

impl Settings {
    pub fn new(base_url: Option<String>, auth: Auth) -> Settings {
        Settings {
            base_url: base_url
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
                .trim_end_matches('/')
                .to_string(),
            auth,
            webhook_secret: None,
            rate_limit_per_10s: 100,
            search_per_sec: 5,
            token_cache: None,
        }
    }
}

const HEADERS: ReportedBy = ReportedBy {
    max: "x-hubspot-ratelimit-max",
    remaining: "x-hubspot-ratelimit-remaining",
    interval_ms: "x-hubspot-ratelimit-interval-milliseconds",
};

/// An answer: status and parsed JSON (`Null` when there was no body).
pub struct Answer {
    pub status: u16,
    pub body: J,
}

pub struct Client {
    pub settings: Settings,
    http: HttpClient,
    burst: Arc<Governor>,
    search: Arc<Governor>,
    /// The account's daily quota (reported on private-app calls).
    daily: Arc<Quota>,
    access: Mutex<Option<(String, Instant)>>,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        on_429: Arc::new(|body: &[u8]| {
            let v: J = serde_json::from_slice(body).unwrap_or(J::Null);
            match v.get("policyName").and_then(J::as_str) {
                Some("DAILY") => Throttle::Quota,
                Some("SECONDLY") => Throttle::Wait(Duration::from_secs(1)),
                _ => Throttle::Wait(Duration::from_secs(10)),
            }
        }),
        ..RetryPolicy::default()
    }
}

impl Client {
    pub fn new(settings: Settings) -> Client {
        // One governor per app credential, shared by every sync in the process.
        let key = match &settings.auth {
            Auth::Token(t) => t.clone(),
            Auth::OAuth {
                client_id,
                refresh_token,
                ..
            } => format!("{client_id}:{refresh_token}"),
        };
        let burst = Governor::shared(
            "ten_secondly",
            &settings.base_url,
            &key,
            Limit::per(settings.rate_limit_per_10s, Duration::from_secs(10)),
            Some(HEADERS),
        );
        let search = Governor::shared(
            "search",
            &settings.base_url,
            &key,
            Limit::per(settings.search_per_sec, Duration::from_secs(1)),
            None,
        );
        let daily = Quota::shared(
            &settings.base_url,
            &key,
            Some("x-hubspot-ratelimit-daily-remaining"),
            Some("x-hubspot-ratelimit-daily"),
        );
        let http = HttpClient::new(policy(), &settings.base_url);
        Client {
            settings,
            http,
            burst,
            search,
            daily,
            access: Mutex::new(None),
        }
    }

    /// Requests, 429s, the ten-secondly window and today's quota.
    pub fn usage(&self) -> puente_core::Usage {
        let st = self.http.stats.snapshot();
        let (used, limit) = self.burst.used();
        let daily = self.daily.usage();
        puente_core::Usage {
            requests: st.requests,
            rate_limited: st.rate_limited,
            server_errors: st.server_errors,
            window_max: Some(limit.max),
            window_used: Some(used),
            window_secs: Some(limit.window.as_secs_f64()),
            daily_used: daily.map(|d| d.0),
            daily_limit: daily.map(|d| d.1),
        }
    }

    pub fn stats(&self) -> puente_http::StatsSnapshot {
        self.http.stats.snapshot()
    }

    /// The bearer token to send, refreshing an OAuth token that is about to
    /// expire (HubSpot says: refresh on `expires_in`, not on a 401).
    async fn bearer(&self, force_refresh: bool) -> Result<String, ConnectorError> {
        let (client_id, client_secret, refresh_token) = match &self.settings.auth {
            Auth::Token(t) => return Ok(t.clone()),
            Auth::OAuth {
                client_id,
                client_secret,
                refresh_token,
            } => (client_id, client_secret, refresh_token),
        };
        let mut access = self.access.lock().await;
        // Whose token a cached one is: a changed app or refresh token (a
        // re-authorization, maybe of another account) must not reuse it.
        let owner = {
            use sha2::Digest;
            let d = sha2::Sha256::new()
                .chain_update(client_id.as_bytes())
                .chain_update([0])
                .chain_update(refresh_token.as_bytes())
                .finalize();
            hex::encode(&d[..8])
        };
        if access.is_none() && !force_refresh {
            if let Some(cache) = &self.settings.token_cache {
                *access = cached_token(cache.load().await.as_deref(), &owner);
            }
        }
        if let Some((t, exp)) = access.as_ref() {
            if !force_refresh && *exp > Instant::now() + Duration::from_secs(300) {
                return Ok(t.clone());
            }
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("refresh_token", refresh_token.as_str()),
        ];
        let body = serde_urlencoded::to_string(form).expect("form encodes");
        let build = move |r: reqwest::RequestBuilder| {
            r.header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
        };
        let resp = self
            .http
            .send(Call {
                method: Method::POST,
                url: format!("{}/oauth/v1/token", self.settings.base_url),
                route: "/oauth/v1/token",
                lane: &self.burst,
                quota: Some(&self.daily),
                idempotent: true,
                build: &build,
            })
            .await
            .map_err(transport)?;
        let v: J = serde_json::from_slice(&resp.body).unwrap_or(J::Null);
        if !resp.status.is_success() {
            let status = v.get("status").and_then(J::as_str).unwrap_or("");
            return Err(ConnectorError::new(
                ErrorKind::Auth,
                format!(
                    "HubSpot refused to refresh the OAuth token ({status}: {})",
                    v.get("message").and_then(J::as_str).unwrap_or("no message")
                ),
            )
            .with_hint(if status == "BAD_REFRESH_TOKEN" {
                "the refresh token was revoked (the app was uninstalled or re-authorized): authorize the app again and store the new refresh token"
            } else {
                "check client_id and client_secret of the connection"
            }));
        }
        let token = v
            .get("access_token")
            .and_then(J::as_str)
            .ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::External,
                    "HubSpot's token answer has no access_token",
                )
            })?
            .to_string();
        let ttl = v.get("expires_in").and_then(J::as_u64).unwrap_or(1800);
        *access = Some((token.clone(), Instant::now() + Duration::from_secs(ttl)));
        if let Some(cache) = &self.settings.token_cache {
            let entry = serde_json::json!({
                "access_token": token,
                "expires_at": unix_now() + ttl,
                "owner": owner,
            });
            cache.store(&entry.to_string()).await;
        }
        Ok(token)
    }

    /// Sends one API call. `route` is the template logged; `idempotent`
    /// says whether a lost answer may be retried.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        route: &'static str,
        body: Option<&J>,
        idempotent: bool,
    ) -> Result<Answer, ConnectorError> {
        let lane = if route.ends_with("/search") {
            &self.search
        } else {
            &self.burst
        };
        let mut refreshed = false;
        let mut unreadable = 0;
        loop {
            let token = self.bearer(false).await?;
            let payload = body.map(|b| serde_json::to_vec(b).expect("json encodes"));
            let build = move |r: reqwest::RequestBuilder| {
                let r = r.bearer_auth(&token).header("accept", "application/json");
                match &payload {
                    Some(p) => r.header("content-type", "application/json").body(p.clone()),
                    None => r,
                }
            };
            let resp = self
                .http
                .send(Call {
                    method: method.clone(),
                    url: format!("{}{path}", self.settings.base_url),
                    route,
                    lane,
                    quota: Some(&self.daily),
                    idempotent,
                    build: &build,
                })
                .await
                .map_err(transport)?;
            let status = resp.status.as_u16();
            let parsed: J = if resp.body.is_empty() {
                J::Null
            } else {
                match serde_json::from_slice(&resp.body) {
                    Ok(v) => v,
                    // A garbled answer to a call that may be repeated: ask again.
                    Err(_) if idempotent && unreadable < 3 => {
                        unreadable += 1;
                        continue;
                    }
                    Err(e) => {
                        return Err(ConnectorError::new(
                            ErrorKind::External,
                            format!("{route}: HubSpot answered {status} with a body that is not JSON ({e})"),
                        )
                        .with_hint("retried on the next run; a write may have happened, and is found again by its match key"))
                    }
                }
            };
            if status == 401 && !refreshed && matches!(self.settings.auth, Auth::OAuth { .. }) {
                self.bearer(true).await?;
                refreshed = true;
                continue;
            }
            return match status {
                401 => Err(ConnectorError::new(
                    ErrorKind::Auth,
                    format!("HubSpot rejected the credentials: {}", message(&parsed)),
                )
                .with_hint("renew the private-app token (or re-authorize the OAuth app) in the connection's secret")),
                403 => Err(ConnectorError::new(
                    ErrorKind::Auth,
                    format!("HubSpot denied {route}: {}", message(&parsed)),
                )
                .with_hint(format!(
                    "grant the app the scopes {}",
                    parsed
                        .pointer("/errors/0/context/requiredGranularScopes")
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "the call needs".into())
                ))),
                429 => Err(ConnectorError::new(ErrorKind::External, format!("{route}: rate limited after retries ({})", message(&parsed)))
                    .with_hint("another client is spending the same app's limit; lower its rate or give Puente its own app")),
                s if s >= 500 => Err(ConnectorError::new(ErrorKind::External, format!("{route}: HubSpot failed with {s} after retries ({})", message(&parsed)))
                    .with_hint("retried on the next run")),
                _ => Ok(Answer { status, body: parsed }),
            };
        }
    }
}

fn transport(e: HttpError) -> ConnectorError {
    match e {
        HttpError::QuotaSpent { .. } => ConnectorError::new(ErrorKind::External, e.to_string()).with_hint(
            "HubSpot's daily API quota is spent; syncing resumes after midnight in the account's time zone. Lower the sync frequency or buy the API limit increase",
        ),
        _ => ConnectorError::new(ErrorKind::Unreachable, e.to_string())
            .with_hint("check base_url and the network; retried on the next run"),
    }
}

/// The entries of a list in an answer (`results`, `errors`, `to`); none
/// when it is absent.
pub(crate) fn entries<'a>(v: &'a J, key: &str) -> impl Iterator<Item = &'a J> {
    v.get(key).and_then(J::as_array).into_iter().flatten()
}

/// The strings of a list at a JSON pointer (`/context/ids`).
pub(crate) fn strings<'a>(v: &'a J, pointer: &str) -> impl Iterator<Item = &'a str> {
    v.pointer(pointer)
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .filter_map(J::as_str)
}

pub fn message(v: &J) -> String {
    v.get("message")
        .and_then(J::as_str)
        .unwrap_or("no message")
        .to_string()
}

/// A per-record failure from one of HubSpot's error entries.
pub fn failure(e: &J, record: &str) -> Failure {
    let category = e.get("category").and_then(J::as_str).unwrap_or("");
    let code = e
        .pointer("/errors/0/code")
        .and_then(J::as_str)
        .unwrap_or("");
    let prop = e
        .pointer("/errors/0/context/propertyName/0")
        .and_then(J::as_str)
        .map(|p| format!(" (field {p})"))
        .unwrap_or_default();
    let detail = e
        .pointer("/errors/0/message")
        .and_then(J::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| message(e));
    let msg = format!("HubSpot refused {record}{prop}: {detail}");
    match category {
        "VALIDATION_ERROR" => {
            let hint = match code {
                "INVALID_OPTION" => "add the value to the HubSpot property's options, or map it with a value map",
                "PROPERTY_DOESNT_EXIST" => "create the property in HubSpot, or fix the field name in the mapping",
                "READ_ONLY_VALUE" => "HubSpot computes this property: map it one way, from HubSpot only",
                "INVALID_EMAIL" => "fix the e-mail address in the source record",
                "REQUIRED_FIELD" => "map a value for the required HubSpot property (deals: dealname, pipeline, dealstage)",
                _ => "fix the value in the source record; the record is retried on its next change",
            };
            Failure::new(FailureCategory::Validation, msg).with_hint(hint)
        }
        "CONFLICT" | "OBJECT_ALREADY_EXISTS" => Failure::new(FailureCategory::Duplicate, msg).with_hint(
            "HubSpot already holds a record with this unique value (its id is in the message): match on that field so Puente links the two, or merge them",
        ),
        "OBJECT_NOT_FOUND" => Failure::new(FailureCategory::NotFound, msg),
        "RATE_LIMITS" | "RATE_LIMIT" => Failure::new(FailureCategory::RateLimited, msg),
        "MISSING_SCOPES" => Failure::new(FailureCategory::Permission, msg),
        "INVALID_AUTHENTICATION" | "EXPIRED_AUTHENTICATION" => Failure::new(FailureCategory::Auth, msg),
        _ => Failure::new(FailureCategory::Server, msg),
    }
}

fn unix_now() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// A cached access token of `owner`'s, if it has more than five minutes
/// left.
fn cached_token(cached: Option<&str>, owner: &str) -> Option<(String, Instant)> {
    let v: J = serde_json::from_str(cached?).ok()?;
    if v.get("owner").and_then(J::as_str) != Some(owner) {
        return None;
    }
    let token = v.get("access_token").and_then(J::as_str)?;
    let left = v
        .get("expires_at")
        .and_then(J::as_u64)?
        .checked_sub(unix_now())?;
    (left > 300).then(|| {
        (
            token.to_string(),
            Instant::now() + Duration::from_secs(left),
        )
    })
}
