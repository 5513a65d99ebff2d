//! What a sandbox has served, for tests and benchmarks: named counters, the
//! kit's own ([`REQUESTS`], [`RATE_LIMITED`], [`FAULTS`],
//! [`WEBHOOK_DELIVERIES`], [`WEBHOOK_FAILURES`]) and any a vendor declares
//! (`reads`, `searches`…).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests served (past auth, faults and rate limits).
pub const REQUESTS: &str = "requests";
/// Requests answered 429, by a rate window or an injected fault.
pub const RATE_LIMITED: &str = "rate_limited";
/// Injected faults.
pub const FAULTS: &str = "faults";
/// Webhook batches delivered (a 2xx answer).
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries";
/// Webhook attempts that failed (no answer, a timeout, a non-2xx).
pub const WEBHOOK_FAILURES: &str = "webhook_failures";

const KIT: [&str; 5] = [
    REQUESTS,
    RATE_LIMITED,
    FAULTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_FAILURES,
];

/// A fixed set of named counters, shared by the pieces of one sandbox.
#[derive(Debug)]
pub struct Counters {
    counters: Vec<(&'static str, AtomicU64)>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new(&[])
    }
}

impl Counters {
    /// The kit's counters and the vendor's `extra` ones.
    pub fn new(extra: &[&'static str]) -> Counters {
        let mut counters: Vec<(&'static str, AtomicU64)> = Vec::new();
        for name in KIT.iter().chain(extra) {
            if !counters.iter().any(|(n, _)| n == name) {
                counters.push((name, AtomicU64::new(0)));
            }
        }
        Counters { counters }
    }

    fn find(&self, name: &str) -> Option<&AtomicU64> {
        let found = self.counters.iter().find(|(n, _)| *n == name);
        debug_assert!(found.is_some(), "counter {name} was not declared");
        found.map(|(_, c)| c)
    }

    pub fn add(&self, name: &str, n: u64) {
        if let Some(c) = self.find(name) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn incr(&self, name: &str) {
        self.add(name, 1);
    }

    /// The count so far (0 for a name never declared).
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    /// Every counter by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counters
            .iter()
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sets every counter back to 0.
    pub fn reset(&self) {
        for (_, c) in &self.counters {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_kits_and_the_vendors_counters() {
        let c = Counters::new(&["searches", FAULTS]);
        c.incr(REQUESTS);
        c.add("searches", 3);
        assert_eq!(c.get(REQUESTS), 1);
        assert_eq!(c.get("searches"), 3);
        assert_eq!(
            c.snapshot().len(),
            6,
            "a kit name declared again is one counter"
        );
        c.reset();
        assert_eq!(c.snapshot().values().sum::<u64>(), 0);
    }
}
