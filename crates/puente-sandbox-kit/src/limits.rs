//! Rate limits as CRMs apply them: sliding windows keyed by app or
//! credential (HubSpot's 100 per 10 s per app, a per-second lane for
//! search) and a daily quota that starts again each UTC day. The vendor
//! decides which keys, which headers, which 429 bodies.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Whether a request fits its window, and what is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub allowed: bool,
    /// The window's maximum.
    pub max: u32,
    /// Requests left in the window after this one (0 when refused).
    pub remaining: u32,
}

/// At most `max` requests per key within any `span` (a sliding window).
#[derive(Clone, Debug)]
pub struct Window {
    max: u32,
    span_ms: i64,
    hits: HashMap<String, VecDeque<i64>>,
}

impl Window {
    pub fn new(max: u32, span: Duration) -> Window {
        Window {
            max,
            span_ms: span.as_millis() as i64,
            hits: HashMap::new(),
        }
    }

    /// A per-second lane.
    pub fn per_second(max: u32) -> Window {
        Window::new(max, Duration::from_secs(1))
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn span(&self) -> Duration {
        Duration::from_millis(self.span_ms as u64)
    }

    /// Counts a request of `key` at `now` (ms) if it fits.
    pub fn admit(&mut self, key: &str, now: i64) -> Admission {
        let used = self.used(key, now);
        if used >= self.max {
            return Admission {
                allowed: false,
                max: self.max,
                remaining: 0,
            };
        }
        self.hits.entry(key.to_string()).or_default().push_back(now);
        Admission {
            allowed: true,
            max: self.max,
            remaining: self.max - used - 1,
        }
    }

    /// Requests of `key` within the window ending at `now`.
    pub fn used(&mut self, key: &str, now: i64) -> u32 {
        let Some(w) = self.hits.get_mut(key) else {
            return 0;
        };
        while w.front().is_some_and(|t| now - *t >= self.span_ms) {
            w.pop_front();
        }
        w.len() as u32
    }
}

/// At most `limit` requests per key per UTC day.
#[derive(Clone, Debug)]
pub struct DailyQuota {
    limit: u64,
    day: i64,
    used: HashMap<String, u64>,
}

const DAY_MS: i64 = 86_400_000;

impl DailyQuota {
    pub fn new(limit: u64) -> DailyQuota {
        DailyQuota {
            limit,
            day: i64::MIN,
            used: HashMap::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn roll(&mut self, now: i64) {
        let today = now.div_euclid(DAY_MS);
        if self.day != today {
            self.day = today;
            self.used.clear();
        }
    }

    /// Whether `key` has used today's quota.
    pub fn is_spent(&mut self, key: &str, now: i64) -> bool {
        self.remaining(key, now) == 0
    }

    /// Counts a request of `key`; what is left today.
    pub fn spend(&mut self, key: &str, now: i64) -> u64 {
        self.roll(now);
        *self.used.entry(key.to_string()).or_default() += 1;
        self.remaining(key, now)
    }

    /// What `key` has left today.
    pub fn remaining(&mut self, key: &str, now: i64) -> u64 {
        self.roll(now);
        self.limit
            .saturating_sub(self.used.get(key).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_slides_per_key() {
        let mut w = Window::new(2, Duration::from_secs(10));
        assert_eq!(w.admit("a", 0).remaining, 1);
        assert_eq!(w.admit("a", 5_000).remaining, 0);
        assert!(!w.admit("a", 9_999).allowed, "two in the last 10 s");
        assert!(
            w.admit("b", 9_999).allowed,
            "another key has its own window"
        );
        assert!(w.admit("a", 10_000).allowed, "the first left the window");
        assert!(!w.admit("a", 10_001).allowed);
    }

    #[test]
    fn a_daily_quota_starts_again_each_utc_day() {
        let mut q = DailyQuota::new(2);
        let noon = 10 * DAY_MS + DAY_MS / 2;
        assert_eq!(q.spend("acct", noon), 1);
        assert_eq!(q.spend("acct", noon), 0);
        assert!(q.is_spent("acct", noon + 1));
        assert!(!q.is_spent("other", noon + 1));
        assert!(!q.is_spent("acct", 11 * DAY_MS), "midnight UTC resets");
    }
}
