//! A daily request quota: learned from a header that reports what is left,
//! or from a 429 the connector reads as a spent quota. Once spent, nothing
//! is sent until the next UTC day, so a spent quota costs no more calls.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::governor::shared;

#[derive(Debug)]
pub struct Quota {
    /// The header reporting the requests left today, when the server sends one.
    header: Option<&'static str>,
    /// The header reporting the day's whole quota, when the server sends one.
    limit_header: Option<&'static str>,
    /// The UTC day the quota was found spent (-1: not spent).
    spent_day: AtomicI64,
    /// The last reported remaining count and limit, and the day they were read (-1: never).
    left: AtomicI64,
    limit: AtomicI64,
    seen_day: AtomicI64,
}

fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs / 86_400) as i64
}

impl Quota {
    pub fn new(header: Option<&'static str>) -> Quota {
        Quota {
            header,
            limit_header: None,
            spent_day: AtomicI64::new(-1),
            left: AtomicI64::new(-1),
            limit: AtomicI64::new(-1),
            seen_day: AtomicI64::new(-1),
        }
    }

    /// Today's (used, limit), once the server has reported both today.
    pub fn usage(&self) -> Option<(u64, u64)> {
        if self.seen_day.load(Ordering::Relaxed) != today() {
            return None;
        }
        let (left, limit) = (
            self.left.load(Ordering::Relaxed),
            self.limit.load(Ordering::Relaxed),
        );
        (left >= 0 && limit > 0).then(|| ((limit - left).max(0) as u64, limit as u64))
    }

    /// The quota shared by every client of one credential in this process
    /// (a daily quota belongs to the account, not to one sync).
    pub fn shared(
        base_url: &str,
        secret: &str,
        header: Option<&'static str>,
        limit_header: Option<&'static str>,
    ) -> Arc<Quota> {
        static R: OnceLock<super::governor::Registry<Quota>> = OnceLock::new();
        shared(&R, "daily", base_url, secret, || Quota {
            limit_header,
            ..Quota::new(header)
        })
    }

    pub fn spent(&self) -> bool {
        self.spent_day.load(Ordering::Relaxed) == today()
    }

    pub fn mark_spent(&self) {
        self.spent_day.store(today(), Ordering::Relaxed);
    }

    /// Reads what the server reports as left today.
    pub fn observe(&self, headers: &HeaderMap) {
        let num = |h: Option<&'static str>| {
            h.and_then(|h| headers.get(h))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let left = num(self.header);
        if let Some(l) = left {
            self.left.store(l, Ordering::Relaxed);
            self.seen_day.store(today(), Ordering::Relaxed);
        }
        if let Some(l) = num(self.limit_header) {
            self.limit.store(l, Ordering::Relaxed);
        }
        if left == Some(0) {
            self.mark_spent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_left_marks_the_quota_spent_for_the_day() {
        let q = Quota::new(Some("x-left"));
        let mut h = HeaderMap::new();
        h.insert("x-left", "3".parse().unwrap());
        q.observe(&h);
        assert!(!q.spent());
        h.insert("x-left", "0".parse().unwrap());
        q.observe(&h);
        assert!(q.spent());
        assert_eq!(q.usage(), None, "no limit header was named");
        let counted = Quota::shared("http://x", "token-u", Some("x-left"), Some("x-max"));
        h.insert("x-left", "250".parse().unwrap());
        h.insert("x-max", "1000".parse().unwrap());
        counted.observe(&h);
        assert_eq!(counted.usage(), Some((750, 1000)));
        let other = Quota::shared("http://x", "token-q", None, None);
        assert!(!other.spent());
        other.mark_spent();
        assert!(Quota::shared("http://x", "token-q", None, None).spent());
    }
}
