//! The HTTP client every CRM connector shares: a rate governor per API
//! credential (shared by every sync that uses it), retries with backoff and
//! jitter for 429 and 5xx, honouring any wait the server asks for, and
//! counters of what was sent.
//!
//! It knows no vendor: a connector tells it how to read a 429 (which wait,
//! or none at all for a daily quota) through [`RetryPolicy`], and how its
//! vendor does OAuth 2.0 through an [`oauth::Provider`].

pub mod governor;
pub mod oauth;
mod quota;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};

pub use governor::{Governor, Limit, ReportedBy};
pub use quota::Quota;

/// What went wrong with one request, after retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server could not be reached, or the connection broke.
    #[error("{route}: {message}")]
    Transport { route: String, message: String },
    /// A daily quota is spent: nothing more can be sent today.
    #[error("{route}: the daily API quota is spent ({message})")]
    QuotaSpent { route: String, message: String },
    /// A call to an address other than the connection's own: refused
    /// before anything is sent (credentials go only where the config says).
    #[error("{route}: refused to call {origin}, which is not this connection's address {allowed}")]
    Elsewhere {
        route: String,
        origin: String,
        allowed: String,
    },
}

/// An answer from the server (any status; retries are over).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How many attempts it took.
    pub attempts: u32,
}

/// How a connector wants 429s and the like treated.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff step for 5xx and transport errors; doubled each time,
    /// with full jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Reads a 429's body: `Wait(d)` to retry after `d` (unless the server
    /// sent `Retry-After`), `Quota` when a daily limit is spent (not retried).
    pub on_429: ReadThrottle,
}

/// Reads a 429's body.
pub type ReadThrottle = Arc<dyn Fn(&[u8]) -> Throttle + Send + Sync>;

/// What a 429 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttle {
    Wait(Duration),
    Quota,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
            on_429: Arc::new(|_| Throttle::Wait(Duration::from_secs(10))),
        }
    }
}

/// Counters of one client (all its lanes).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent (every attempt).
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub server_errors: AtomicU64,
    pub transport_errors: AtomicU64,
    pub retries: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub transport_errors: u64,
    pub retries: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// A request to send: how to build it again for each attempt.
pub struct Call<'a> {
    pub method: Method,
    pub url: String,
    /// The route template for logs (`/crm/v3/objects/{type}/batch/create`):
    /// never a full URL, which may carry ids or tokens.
    pub route: &'a str,
    /// Which governor lane pays for it.
    pub lane: &'a Governor,
    /// The daily quota it counts against, if the API has one.
    pub quota: Option<&'a Quota>,
    /// Whether sending it twice is harmless: a transport error or an
    /// unreadable answer is retried only then.
    pub idempotent: bool,
    pub build: &'a (dyn Fn(RequestBuilder) -> RequestBuilder + Send + Sync),
}

/// The shared client.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    /// The only origin (scheme, host, port) calls may go to.
    origin: String,
    pub policy: RetryPolicy,
    pub stats: Arc<Stats>,
}

/// `scheme://host:port` of a URL, or the text itself if it is not one.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

impl HttpClient {
    /// A client that calls `base_url`'s origin only. Redirects are not
    /// followed: a 3xx is returned as an answer, so no request (and no
    /// credential) is sent anywhere the config does not name.
    pub fn new(policy: RetryPolicy, base_url: &str) -> HttpClient {
        let inner = reqwest::Client::builder()
            .user_agent(concat!("puente/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(8)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the TLS backend is compiled in");
        HttpClient {
            inner,
            origin: origin(base_url),
            policy,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Sends a call through its lane, retrying 429s, 5xx and (for idempotent
    /// calls) transport errors. Any other status is returned as is.
    pub async fn send(&self, call: Call<'_>) -> Result<Response, HttpError> {
        let p = &self.policy;
        let target = origin(&call.url);
        if target != self.origin {
            return Err(HttpError::Elsewhere {
                route: call.route.to_string(),
                origin: target,
                allowed: self.origin.clone(),
            });
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if call.quota.is_some_and(Quota::spent) {
                return Err(HttpError::QuotaSpent {
                    route: call.route.to_string(),
                    message: "the server said so earlier today".into(),
                });
            }
            call.lane.acquire().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let req = (call.build)(
                self.inner
                    .request(call.method.clone(), &call.url)
                    .timeout(p.timeout),
            );
            let last = attempt >= p.attempts;
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    call.lane.observe(&headers);
                    if let Some(q) = call.quota {
                        q.observe(&headers);
                    }
                    match resp.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(describe(&e)),
            };
            let (status, headers, body) = match outcome {
                Ok(x) => x,
                Err(message) => {
                    self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                    if last || !call.idempotent {
                        return Err(HttpError::Transport {
                            route: call.route.to_string(),
                            message,
                        });
                    }
                    tracing::debug!(route = call.route, attempt, %message, "transport error, retrying");
                    self.pause(attempt, None).await;
                    continue;
                }
            };
            tracing::debug!(
                method = %call.method,
                route = call.route,
                status = status.as_u16(),
                attempt,
                ms = started.elapsed().as_millis() as u64,
                "answer"
            );
            let retry_after = retry_after(&headers);
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                match (p.on_429)(&body) {
                    Throttle::Quota => {
                        if let Some(q) = call.quota {
                            q.mark_spent();
                        }
                        return Err(HttpError::QuotaSpent {
                            route: call.route.to_string(),
                            message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                        });
                    }
                    Throttle::Wait(d) if !last => {
                        let wait = retry_after.unwrap_or(d);
                        tracing::debug!(
                            route = call.route,
                            attempt,
                            ?wait,
                            "rate limited, waiting"
                        );
                        call.lane.hold(wait);
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Throttle::Wait(_) => {}
                }
            } else if is_retryable(status) && !last {
                self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(route = call.route, attempt, %status, "server error, retrying");
                self.pause(attempt, retry_after).await;
                continue;
            } else if status.is_server_error() {
                self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Response {
                status,
                headers,
                body,
                attempts: attempt,
            });
        }
    }

    async fn pause(&self, attempt: u32, asked: Option<Duration>) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let d = asked.unwrap_or_else(|| backoff(&self.policy, attempt));
        tokio::time::sleep(d).await;
    }
}

/// Exponential backoff with full jitter: a random wait up to
/// `base · 2^(attempt-1)`, capped.
pub fn backoff(p: &RetryPolicy, attempt: u32) -> Duration {
    let ceiling = p
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(p.max_delay);
    let ms = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

fn is_retryable(s: StatusCode) -> bool {
    matches!(s.as_u16(), 423 | 477 | 500 | 502 | 503 | 504 | 520..=524)
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL; keep only the kind and cause.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..20 {
            let d = backoff(&p, attempt);
            assert!(d <= p.max_delay, "{attempt}: {d:?}");
        }
        assert!(backoff(&p, 1) <= p.base_delay);
    }

    #[tokio::test]
    async fn calls_go_to_the_configured_origin_only() {
        let c = HttpClient::new(RetryPolicy::default(), "http://127.0.0.1:9/api/");
        let lane = Governor::new(Limit::per(10, Duration::from_secs(1)), None);
        let build = |r: reqwest::RequestBuilder| r;
        for url in [
            "http://127.0.0.1:10/x",
            "https://127.0.0.1:9/x",
            "http://127.0.0.1:9@evil.example/x",
            "http://localhost:9/x",
        ] {
            let e = c
                .send(Call {
                    method: Method::GET,
                    url: url.to_string(),
                    route: "/x",
                    lane: &lane,
                    quota: None,
                    idempotent: true,
                    build: &build,
                })
                .await
                .unwrap_err();
            assert!(matches!(e, HttpError::Elsewhere { .. }), "{url}: {e}");
            assert!(e.to_string().contains("http://127.0.0.1:9"), "{e}");
        }
        assert_eq!(c.stats.snapshot().requests, 0, "nothing was sent");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
