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
    /// The UTC day the quota was found spent (-1: not spent).
    spent_day: AtomicI64,
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
            spent_day: AtomicI64::new(-1),
        }
    }

    /// The quota shared by every client of one credential in this process
    /// (a daily quota belongs to the account, not to one sync).
    pub fn shared(base_url: &str, secret: &str, header: Option<&'static str>) -> Arc<Quota> {
        static R: OnceLock<super::governor::Registry<Quota>> = OnceLock::new();
        shared(&R, "daily", base_url, secret, || Quota::new(header))
    }

    pub fn spent(&self) -> bool {
        self.spent_day.load(Ordering::Relaxed) == today()
    }

    pub fn mark_spent(&self) {
        self.spent_day.store(today(), Ordering::Relaxed);
    }

    /// Reads what the server reports as left today.
    pub fn observe(&self, headers: &HeaderMap) {
        let left = self
            .header
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
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
        let other = Quota::shared("http://x", "token-q", None);
        assert!(!other.spent());
        other.mark_spent();
        assert!(Quota::shared("http://x", "token-q", None).spent());
    }
}
