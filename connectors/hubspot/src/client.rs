//! HubSpot's API as the connector sees it: auth (a private app's token,
//! or an OAuth app's tokens through puente-http's OAuth client, refreshed
//! before they expire), the shared rate governor (ten-secondly and search
//! lanes) and the account's daily quota, retries, and HubSpot's error
//! bodies turned into our errors and per-record failures with hints.

use std::sync::Arc;
use std::time::Duration;

use puente_core::{ConnectorError, ErrorKind, Failure, FailureCategory};
use puente_http::governor::ReportedBy;
use puente_http::oauth::{Flow, OAuthApp, OAuthSession, Provider, Refusal, Secret};
use puente_http::{Call, Governor, HttpClient, HttpError, Limit, Quota, RetryPolicy, Throttle};
use reqwest::Method;
use serde_json::Value as J;

use crate::config::{Auth, Settings, DEFAULT_BASE_URL};

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

impl Answer {
    /// The body of a successful answer; a 4xx or 5xx as an error naming
    /// what was being done to which object (`listing contacts`).
    pub(crate) fn ok(self, what: &str, object: &str) -> Result<J, ConnectorError> {
        if self.status >= 400 {
            return Err(ConnectorError::new(
                ErrorKind::External,
                format!(
                    "{what} {object}: HubSpot answered {} ({})",
                    self.status,
                    message(&self.body)
                ),
            ));
        }
        Ok(self.body)
    }
}

/// What the connector authenticates with.
enum Credential {
    /// A private app's access token.
    Token(Secret),
    /// An OAuth app's tokens.
    OAuth(Box<OAuthSession>),
}

pub struct Client {
    pub settings: Settings,
    http: HttpClient,
    burst: Arc<Governor>,
    search: Arc<Governor>,
    /// The account's daily quota (reported on private-app calls).
    daily: Arc<Quota>,
    auth: Credential,
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

/// HubSpot's authorization server: the token endpoint on the API's own
/// origin, client id and secret in the form body, access tokens of 30
/// minutes refreshed 5 minutes before they expire (HubSpot: refresh on
/// `expires_in`, not on a 401), its refusals read by [`refusal`].
fn provider(base_url: &str) -> Provider {
    let mut p = Provider::new("HubSpot", format!("{base_url}/oauth/v1/token"));
    p.authorize_url = Some(if base_url == DEFAULT_BASE_URL {
        "https://app.hubspot.com/oauth/authorize".to_string()
    } else {
        format!("{base_url}/oauth/authorize")
    });
    p.refresh_margin = Duration::from_secs(300);
    p.default_ttl = Duration::from_secs(1800);
    p.refusal = refusal;
    p
}

/// HubSpot's refusal of a token request: its `status` (`BAD_REFRESH_TOKEN`,
/// `BAD_CLIENT_ID`…) and `message`.
fn refusal(r: &Refusal<'_>) -> ConnectorError {
    let status = r.body.get("status").and_then(J::as_str).unwrap_or("");
    ConnectorError::new(
        ErrorKind::Auth,
        format!(
            "HubSpot refused to {} ({status}: {})",
            r.grant.doing(),
            r.body
                .get("message")
                .and_then(J::as_str)
                .unwrap_or("no message")
        ),
    )
    .with_hint(match status {
        "BAD_REFRESH_TOKEN" => "the refresh token was revoked (the app was uninstalled or re-authorized): authorize the app again and store the new refresh token",
        "BAD_AUTH_CODE" | "BAD_REDIRECT_URI" => "authorize the app again: a code is good for one exchange, with the redirect_uri it was issued for",
        _ => "check client_id and client_secret of the connection",
    })
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
        let auth = match &settings.auth {
            Auth::Token(t) => Credential::Token(Secret::new(t.as_str())),
            Auth::OAuth {
                client_id,
                client_secret,
                refresh_token,
            } => {
                // Token requests share the API's client, ten-secondly lane
                // and daily quota: HubSpot counts them like any call.
                let app = OAuthApp::new(
                    provider(&settings.base_url),
                    client_id.as_str(),
                    Secret::new(client_secret.as_str()),
                )
                .with_transport(http.clone(), burst.clone(), Some(daily.clone()));
                Credential::OAuth(Box::new(OAuthSession::new(
                    app,
                    Flow::RefreshToken(Secret::new(refresh_token.as_str())),
                    settings.token_cache.clone(),
                )))
            }
        };
        Client {
            settings,
            http,
            burst,
            search,
            daily,
            auth,
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

    /// The bearer token to send: an OAuth app's is refreshed before it
    /// expires.
    async fn bearer(&self) -> Result<Secret, ConnectorError> {
        match &self.auth {
            Credential::Token(t) => Ok(t.clone()),
            Credential::OAuth(session) => session.access_token().await,
        }
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
            let token = self.bearer().await?;
            let bearer = token.expose().to_string();
            let payload = body.map(|b| serde_json::to_vec(b).expect("json encodes"));
            let build = move |r: reqwest::RequestBuilder| {
                let r = r.bearer_auth(&bearer).header("accept", "application/json");
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
            if let (401, false, Credential::OAuth(session)) = (status, refreshed, &self.auth) {
                session.rejected(&token).await?;
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

#[cfg(test)]
mod tests {
    use puente_http::oauth::Grant;

    use super::*;

    fn refused(grant: Grant, body: J) -> ConnectorError {
        refusal(&Refusal {
            vendor: "HubSpot",
            grant,
            status: 400,
            body: &body,
        })
    }

    #[test]
    fn hubspot_refusals_say_what_to_do() {
        let e = refused(
            Grant::RefreshToken,
            serde_json::json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token", "error": "invalid_grant"}),
        );
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(
            e.message,
            "HubSpot refused to refresh the OAuth token (BAD_REFRESH_TOKEN: missing or unknown refresh token)"
        );
        assert!(e.hint.unwrap().contains("authorize the app again"));
        let e = refused(
            Grant::AuthorizationCode,
            serde_json::json!({"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"}),
        );
        assert!(e
            .message
            .starts_with("HubSpot refused to exchange the authorization code"));
        assert!(e.hint.unwrap().contains("a code is good for one exchange"));
        let e = refused(
            Grant::RefreshToken,
            serde_json::json!({"status": "BAD_CLIENT_ID"}),
        );
        assert!(e.message.ends_with("(BAD_CLIENT_ID: no message)"), "{e}");
        assert!(e.hint.unwrap().contains("client_secret"));
    }
}
