//! What the `oauth2` crate needs from us: an HTTP client (ours, so a token
//! request is pinned, governed and retried like any call), and token and
//! error answers lenient enough for every vendor (Bitrix24 sends no
//! `token_type`; HubSpot's scopes are an array; extra fields are kept).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oauth2::basic::BasicTokenType;
use oauth2::{AccessToken, AsyncHttpClient, HttpRequest, HttpResponse, RefreshToken, Scope};
use reqwest::RequestBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};

use super::{now_ms, now_secs, Secret, TokenSet};
use crate::{Call, Governor, HttpClient, HttpError, Quota};

/// How token requests travel: the client (pinned to the token endpoint's
/// origin), the lane that pays for them, the daily quota they count
/// against.
#[derive(Clone)]
pub(crate) struct Transport {
    pub http: HttpClient,
    pub lane: Arc<Governor>,
    pub quota: Option<Arc<Quota>>,
}

/// One token request through [`HttpClient`]. Keeps the answer's status
/// and body, which the `oauth2` crate does not report for a refusal.
pub(crate) struct Via<'a> {
    pub transport: &'a Transport,
    /// The token endpoint's path, for logs (never a query).
    pub route: &'a str,
    pub answer: Mutex<Option<(u16, Bytes)>>,
}

impl Via<'_> {
    pub fn answer(&self) -> Option<(u16, Bytes)> {
        self.answer.lock().expect("answer").take()
    }
}

impl<'c> AsyncHttpClient<'c> for Via<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let headers = parts.headers;
            let build = move |r: RequestBuilder| {
                headers
                    .iter()
                    .fold(r, |r, (k, v)| r.header(k, v))
                    .body(body.clone())
            };
            let resp = self
                .transport
                .http
                .send(Call {
                    method: parts.method,
                    url: parts.uri.to_string(),
                    route: self.route,
                    lane: &self.transport.lane,
                    quota: self.transport.quota.as_deref(),
                    // A grant asked twice is harmless: a code is refused
                    // the second time, a refresh token kept or replaced.
                    idempotent: true,
                    build: &build,
                })
                .await?;
            *self.answer.lock().expect("answer") = Some((resp.status.as_u16(), resp.body.clone()));
            let mut out = oauth2::http::Response::builder().status(resp.status);
            for (k, v) in &resp.headers {
                out = out.header(k, v);
            }
            out.body(resp.body.to_vec())
                .map_err(|e| HttpError::Transport {
                    route: self.route.to_string(),
                    message: format!("the answer could not be read: {e}"),
                })
        })
    }
}

/// A token answer, read leniently: `token_type` may be missing (Bearer),
/// `expires_in` a number or a numeric string, `scope` a string (space- or
/// comma-separated) or a list; every other field is kept.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Map<String, J>", into = "Map<String, J>")]
pub(crate) struct TokenAnswer {
    access_token: AccessToken,
    token_type: BasicTokenType,
    expires_in: Option<u64>,
    refresh_token: Option<RefreshToken>,
    scopes: Option<Vec<Scope>>,
    extra: Map<String, J>,
}

impl TryFrom<Map<String, J>> for TokenAnswer {
    type Error = String;

    fn try_from(mut m: Map<String, J>) -> Result<TokenAnswer, String> {
        // Messages name fields, never values: a value may be a token.
        let access_token = match m.remove("access_token") {
            Some(J::String(s)) if !s.is_empty() => AccessToken::new(s),
            Some(_) => return Err("access_token is not a text".into()),
            None => return Err("no access_token".into()),
        };
        let token_type = match m.remove("token_type") {
            None | Some(J::Null) => BasicTokenType::Bearer,
            Some(J::String(s)) if s.eq_ignore_ascii_case("bearer") => BasicTokenType::Bearer,
            Some(J::String(s)) if s.eq_ignore_ascii_case("mac") => BasicTokenType::Mac,
            Some(J::String(s)) => BasicTokenType::Extension(s),
            Some(_) => return Err("token_type is not a text".into()),
        };
        let expires_in = match m.remove("expires_in") {
            None | Some(J::Null) => None,
            Some(J::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
            Some(J::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        let refresh_token = match m.remove("refresh_token") {
            Some(J::String(s)) if !s.is_empty() => Some(RefreshToken::new(s)),
            _ => None,
        };
        let scopes = match m.remove("scope") {
            Some(J::String(s)) => Some(
                s.split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Scope::new(s.to_string()))
                    .collect(),
            ),
            Some(J::Array(a)) => Some(
                a.iter()
                    .filter_map(J::as_str)
                    .map(|s| Scope::new(s.to_string()))
                    .collect(),
            ),
            _ => None,
        };
        Ok(TokenAnswer {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scopes,
            extra: m,
        })
    }
}

impl From<TokenAnswer> for Map<String, J> {
    fn from(a: TokenAnswer) -> Map<String, J> {
        let mut m = a.extra;
        m.insert(
            "access_token".into(),
            J::from(a.access_token.secret().as_str()),
        );
        m.insert("token_type".into(), J::from(a.token_type.as_ref()));
        if let Some(e) = a.expires_in {
            m.insert("expires_in".into(), J::from(e));
        }
        if let Some(r) = a.refresh_token {
            m.insert("refresh_token".into(), J::from(r.secret().as_str()));
        }
        if let Some(s) = a.scopes {
            let s: Vec<&str> = s.iter().map(|s| s.as_str()).collect();
            m.insert("scope".into(), J::from(s.join(" ")));
        }
        m
    }
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl oauth2::TokenResponse for TokenAnswer {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

impl TokenAnswer {
    /// The set this answer gives; `refreshed_with` stays the refresh token
    /// when the answer has none (vendors that keep it).
    pub fn into_set(self, default_ttl: Duration, refreshed_with: Option<&Secret>) -> TokenSet {
        let ttl = self.expires_in.unwrap_or(default_ttl.as_secs());
        TokenSet {
            access_token: Secret::new(self.access_token.secret().as_str()),
            expires_at: now_secs() + ttl,
            refresh_token: self
                .refresh_token
                .map(|r| Secret::new(r.secret().as_str()))
                .or_else(|| refreshed_with.cloned()),
            scopes: self
                .scopes
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.to_string())
                .collect(),
            extra: self.extra,
            obtained_at_ms: now_ms(),
        }
    }
}

/// Any refusal body: the client reads the status and body it kept
/// ([`Via::answer`]) rather than this.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ErrorBody(J);

impl std::fmt::Debug for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorBody(..)")
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token endpoint refused the request")
    }
}

impl oauth2::ErrorResponse for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::TokenResponse;

    fn answer(v: J) -> Result<TokenAnswer, String> {
        TokenAnswer::try_from(v.as_object().cloned().unwrap())
    }

    #[test]
    fn token_answers_of_every_vendor_are_read() {
        // Bitrix24: no token_type, scope with commas, its own fields.
        let a = answer(serde_json::json!({
            "access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600,
            "expires": 1_700_000_000, "scope": "crm,user", "member_id": "m1",
            "client_endpoint": "https://x.bitrix24.com/rest/"
        }))
        .unwrap();
        assert_eq!(a.token_type(), &BasicTokenType::Bearer);
        let set = a.into_set(Duration::from_secs(60), None);
        assert_eq!(set.scopes, ["crm", "user"]);
        assert_eq!(set.refresh_token.as_ref().unwrap().expose(), "rt-1");
        assert!(set.extra.contains_key("member_id") && set.extra.contains_key("expires"));
        assert!((3599..=3600).contains(&set.expires_in()));
        // HubSpot: lower-case bearer, scopes as an extra list.
        let a = answer(serde_json::json!({
            "token_type": "bearer", "access_token": "at-2", "expires_in": "1800",
            "hub_id": 62515, "scopes": ["crm.objects.contacts.read"]
        }))
        .unwrap();
        let kept = Secret::new("rt-kept");
        let set = a.into_set(Duration::from_secs(60), Some(&kept));
        assert_eq!(set.refresh_token.unwrap().expose(), "rt-kept");
        assert_eq!(set.extra["hub_id"], 62515);
        // Zoho: an error with status 200, and no access token.
        let e = answer(serde_json::json!({"error": "invalid_code"})).unwrap_err();
        assert_eq!(e, "no access_token");
        // The answer, written back, is read the same.
        let a = answer(serde_json::json!({"access_token": "at-3", "api_domain": "https://www.zohoapis.eu", "scope": "a b"})).unwrap();
        let again = answer(J::Object(a.clone().into())).unwrap();
        assert_eq!(again.extra["api_domain"], "https://www.zohoapis.eu");
        assert!(!format!("{again:?}").contains("at-3"));
    }
}
