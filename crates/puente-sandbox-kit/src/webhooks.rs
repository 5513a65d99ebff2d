//! Webhook delivery as CRMs do it: events queued per subscriber, gathered
//! into batches (up to `max_batch`, for at most `gather` after the first),
//! each batch POSTed to the subscriber's current URL with the headers the
//! vendor's signer computes, and retried on any failure (no answer, a
//! timeout, a non-2xx) with exponential backoff and an increasing attempt
//! number, up to `max_retries` retries. Deliveries and failures are
//! counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::counters::{Counters, WEBHOOK_DELIVERIES, WEBHOOK_FAILURES};
use crate::Error;

/// What a vendor decides about its deliveries.
pub trait Delivery: Send + Sync + 'static {
    /// Where `subscriber`'s events go now; `None` drops them (the
    /// subscription is gone).
    fn target(&self, subscriber: &str) -> Option<String>;
    /// The body of one attempt at a batch (`attempt` is 0 the first time).
    fn body(&self, events: &[Value], attempt: u32) -> Vec<u8>;
    /// The headers of that request: its content type and signatures.
    fn sign(&self, target: &str, body: &[u8], attempt: u32) -> Vec<(String, String)>;
}

/// Batching, timeouts and retries.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Events in one request at most.
    pub max_batch: usize,
    /// How long the first event of a batch waits for others.
    pub gather: Duration,
    /// An answer slower than this is a failure.
    pub timeout: Duration,
    /// The wait before the first retry; it doubles with each retry (±12.5 %).
    pub retry_base: Duration,
    /// Retries after the first attempt, at most.
    pub max_retries: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            max_batch: 100,
            gather: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            max_retries: 10,
        }
    }
}

struct Shared {
    delivery: Box<dyn Delivery>,
    options: DeliveryOptions,
    counters: Arc<Counters>,
    http: reqwest::Client,
}

type Queued = (String, Value);

/// The delivery queue of one sandbox.
pub struct Deliveries {
    tx: mpsc::UnboundedSender<Queued>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    shared: Arc<Shared>,
}

impl Deliveries {
    pub fn new(
        delivery: impl Delivery,
        options: DeliveryOptions,
        counters: Arc<Counters>,
    ) -> Result<Deliveries, Error> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(Error::HttpClient)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Deliveries {
            tx,
            rx: Mutex::new(Some(rx)),
            shared: Arc::new(Shared {
                delivery: Box::new(delivery),
                options,
                counters,
                http,
            }),
        })
    }

    /// Queues an event for `subscriber`. Events queued before
    /// [`start`](Self::start) wait for it.
    pub fn enqueue(&self, subscriber: &str, event: Value) {
        // The receiver lives as long as the queue: sending cannot fail.
        let _ = self.tx.send((subscriber.to_string(), event));
    }

    /// Starts delivering (once; later calls do nothing). Needs a tokio
    /// runtime.
    pub fn start(&self) {
        let Some(rx) = self.rx.lock().expect("deliveries").take() else {
            return;
        };
        tokio::spawn(dispatch(rx, self.shared.clone()));
    }
}

/// Gathers each subscriber's events into batches and sends each batch off.
async fn dispatch(mut rx: mpsc::UnboundedReceiver<Queued>, shared: Arc<Shared>) {
    // subscriber → (send by, events), in arrival order of the first event.
    let mut pending: Vec<(String, Instant, Vec<Value>)> = Vec::new();
    loop {
        let next = pending.iter().map(|(_, by, _)| *by).min();
        let got = match next {
            Some(by) => tokio::time::timeout_at(by, rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        match got {
            Some(Some((subscriber, event))) => {
                let i = match pending.iter().position(|(s, _, _)| *s == subscriber) {
                    Some(i) => i,
                    None => {
                        let by = Instant::now() + shared.options.gather;
                        pending.push((subscriber, by, Vec::new()));
                        pending.len() - 1
                    }
                };
                pending[i].2.push(event);
                if pending[i].2.len() >= shared.options.max_batch {
                    let (subscriber, _, batch) = pending.remove(i);
                    tokio::spawn(deliver(shared.clone(), subscriber, batch));
                }
            }
            // The queue is gone: send what is gathered, then stop.
            Some(None) => {
                for (subscriber, _, batch) in pending.drain(..) {
                    tokio::spawn(deliver(shared.clone(), subscriber, batch));
                }
                return;
            }
            // A batch's time is up.
            None => {
                let now = Instant::now();
                let (due, rest): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|(_, by, _)| *by <= now);
                pending = rest;
                for (subscriber, _, batch) in due {
                    tokio::spawn(deliver(shared.clone(), subscriber, batch));
                }
            }
        }
    }
}

/// Sends one batch until it is taken or the retries run out.
async fn deliver(shared: Arc<Shared>, subscriber: String, batch: Vec<Value>) {
    let o = &shared.options;
    let mut attempt = 0u32;
    loop {
        let Some(target) = shared.delivery.target(&subscriber) else {
            return;
        };
        let body = shared.delivery.body(&batch, attempt);
        let mut req = shared.http.post(&target);
        for (k, v) in shared.delivery.sign(&target, &body, attempt) {
            req = req.header(k, v);
        }
        let sent = req.body(body).send().await;
        if matches!(&sent, Ok(r) if r.status().is_success()) {
            shared.counters.incr(WEBHOOK_DELIVERIES);
            return;
        }
        shared.counters.incr(WEBHOOK_FAILURES);
        attempt += 1;
        if attempt > o.max_retries {
            tracing::warn!(
                subscriber,
                events = batch.len(),
                "webhook delivery given up after retries"
            );
            return;
        }
        tokio::time::sleep(backoff(o.retry_base, attempt)).await;
    }
}

/// The wait before retry number `attempt` (1 for the first): the base,
/// doubled for each earlier retry, within ±12.5 %.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let wait = base.saturating_mul(1 << attempt.saturating_sub(1).min(12));
    let jitter = rand::random::<f64>() * 0.25 + 0.875;
    wait.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter() {
        let base = Duration::from_millis(100);
        for (attempt, mid) in [(1, 100.0), (2, 200.0), (3, 400.0), (40, 409_600.0)] {
            let ms = backoff(base, attempt).as_secs_f64() * 1000.0;
            assert!(
                (mid * 0.875..=mid * 1.125).contains(&ms),
                "attempt {attempt}: {ms} ms"
            );
        }
    }
}
