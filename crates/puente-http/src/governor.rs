//! A sliding-window rate governor: at most `max` requests in any `window`,
//! shared by every user of one credential, corrected by what the server
//! reports about its own count.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// A rate limit: `max` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub fn per(max: u32, window: Duration) -> Limit {
        Limit { max, window }
    }
}

/// Headers a server uses to report its count (`X-HubSpot-RateLimit-Max`,
/// `-Remaining`, `-Interval-Milliseconds`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportedBy {
    pub max: &'static str,
    pub remaining: &'static str,
    pub interval_ms: &'static str,
}

#[derive(Debug)]
struct State {
    limit: Limit,
    /// Send times within the current window, oldest first.
    sent: VecDeque<Instant>,
    /// Nothing is sent before this instant (a 429 or a spent window).
    hold_until: Option<Instant>,
}

/// One lane of a rate limit, e.g. "HubSpot app token X, ten-secondly".
#[derive(Debug)]
pub struct Governor {
    state: Mutex<State>,
    headers: Option<ReportedBy>,
    /// Slack added to the window, so that requests sent exactly one window
    /// apart cannot arrive less than one window apart.
    margin: Duration,
}

pub(crate) type Registry<T> = Mutex<HashMap<String, Weak<T>>>;

/// The one `T` of a lane and credential in this process: made on first
/// use, dropped with its last user. `secret` is hashed; it is never kept.
pub(crate) fn shared<T>(
    registry: &'static OnceLock<Registry<T>>,
    lane: &str,
    base_url: &str,
    secret: &str,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let mut h = Sha256::new();
    for part in [lane, base_url, secret] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let key = format!("{:x}", h.finalize());
    let mut reg = registry
        .get_or_init(Default::default)
        .lock()
        .expect("registry");
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(t) = reg.get(&key).and_then(Weak::upgrade) {
        return t;
    }
    let t = Arc::new(make());
    reg.insert(key, Arc::downgrade(&t));
    t
}

impl Governor {
    pub fn new(limit: Limit, headers: Option<ReportedBy>) -> Governor {
        Governor {
            state: Mutex::new(State {
                limit,
                sent: VecDeque::new(),
                hold_until: None,
            }),
            headers,
            margin: Duration::from_millis(150),
        }
    }

    /// The governor shared by every client of the same lane and credential
    /// in this process.
    pub fn shared(
        lane: &str,
        base_url: &str,
        secret: &str,
        limit: Limit,
        headers: Option<ReportedBy>,
    ) -> Arc<Governor> {
        static R: OnceLock<Registry<Governor>> = OnceLock::new();
        shared(&R, lane, base_url, secret, || Governor::new(limit, headers))
    }

    pub fn limit(&self) -> Limit {
        self.state.lock().expect("governor").limit
    }

    /// Requests counted in the current window, and the limit.
    pub fn used(&self) -> (u32, Limit) {
        let s = self.state.lock().expect("governor");
        let now = Instant::now();
        let used = s
            .sent
            .iter()
            .filter(|t| now.duration_since(**t) < s.limit.window)
            .count();
        (used as u32, s.limit)
    }

    /// Waits until one more request fits in the window, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("governor");
                let now = Instant::now();
                let window = s.limit.window + self.margin;
                while s
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    s.sent.pop_front();
                }
                match s.hold_until {
                    Some(h) if h > now => Some(h - now),
                    _ => {
                        s.hold_until = None;
                        if (s.sent.len() as u32) < s.limit.max.max(1) {
                            s.sent.push_back(now);
                            None
                        } else {
                            let oldest = *s.sent.front().expect("window is full");
                            Some(window.saturating_sub(now.duration_since(oldest)))
                        }
                    }
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Sends nothing for `d` (after a 429).
    pub fn hold(&self, d: Duration) {
        let mut s = self.state.lock().expect("governor");
        let until = Instant::now() + d;
        if s.hold_until.is_none_or(|h| h < until) {
            s.hold_until = Some(until);
        }
    }

    /// Reads the server's own count from a response and trusts it when it
    /// is stricter than ours (another process using the same credential).
    pub fn observe(&self, headers: &HeaderMap) {
        let Some(names) = self.headers else { return };
        let num = |n: &str| -> Option<u64> { headers.get(n)?.to_str().ok()?.trim().parse().ok() };
        let (Some(max), Some(remaining)) = (num(names.max), num(names.remaining)) else {
            return;
        };
        let mut s = self.state.lock().expect("governor");
        if let Some(ms) = num(names.interval_ms).filter(|ms| *ms > 0) {
            s.limit.window = Duration::from_millis(ms);
        }
        if max > 0 && max as u32 != s.limit.max {
            s.limit.max = max as u32;
        }
        // Requests the server counted that we did not send: fill the window
        // with them, dated now, so we slow down instead of meeting a 429.
        let used_by_server = max.saturating_sub(remaining) as usize;
        let now = Instant::now();
        let window = s.limit.window;
        let ours = s
            .sent
            .iter()
            .filter(|t| now.duration_since(**t) < window)
            .count();
        if used_by_server > ours {
            for _ in ours..used_by_server {
                s.sent.push_back(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_any_window() {
        let g = Governor::new(Limit::per(5, Duration::from_secs(1)), None);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            g.acquire().await;
            times.push(Instant::now() - start);
        }
        for (i, t) in times.iter().enumerate().skip(5) {
            assert!(*t - times[i - 5] >= Duration::from_secs(1), "{times:?}");
        }
        // Two full windows (plus margins) for 12 requests at 5 per second.
        assert!(times[11] < Duration::from_millis(2500), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_delays_the_next_request() {
        let g = Governor::new(Limit::per(100, Duration::from_secs(10)), None);
        g.hold(Duration::from_secs(3));
        let start = Instant::now();
        g.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(3));
    }

    #[test]
    fn shared_governors_are_one_per_credential() {
        let l = Limit::per(10, Duration::from_secs(1));
        let a = Governor::shared("burst", "http://x", "token-1", l, None);
        let b = Governor::shared("burst", "http://x", "token-1", l, None);
        let c = Governor::shared("burst", "http://x", "token-2", l, None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
