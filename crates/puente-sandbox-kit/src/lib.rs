//! What every vendor sandbox shares, so that a vendor's sandbox crate holds
//! only what that vendor does differently (as sqlx keeps one core and a
//! module per database):
//!
//! - [`harness`]: serve an axum [`Router`](axum::Router) on a bound listener;
//!   a [`Server`] handle that knows its address and stops on drop;
//! - [`faults`]: the `--faults` spec, seeded dice, a middleware (the vendor
//!   words its 429 and 5xx answers);
//! - [`persist`]: state loaded from a JSON file at start and saved, debounced,
//!   as it changes;
//! - [`counters`]: what a sandbox has served;
//! - [`limits`]: sliding windows keyed by app or credential, a per-second
//!   lane, a daily quota (the vendor decides headers and bodies);
//! - [`oauth`]: an OAuth 2.0 authorization server (authorization code,
//!   refresh token, client credentials; refresh tokens that stay or rotate);
//!   the vendor chooses its paths and the JSON of its answers;
//! - [`webhooks`]: signed deliveries, batched per subscriber, retried with
//!   backoff and an increasing attempt number;
//! - [`cli`]: the descriptor a sandbox crate exposes so `puente sandbox
//!   <kind>` can list it.
//!
//! Knows no vendor.

pub mod cli;
pub mod counters;
pub mod faults;
pub mod harness;
pub mod limits;
pub mod oauth;
pub mod persist;
pub mod webhooks;

use std::path::PathBuf;

pub use cli::{Descriptor, SandboxCommand};
pub use counters::Counters;
pub use faults::{Fault, FaultAnswers, FaultInjector, Faults};
pub use harness::Server;
pub use limits::{Admission, DailyQuota, Window};
pub use oauth::{OAuthConfig, OAuthServer};
pub use persist::Persisted;
pub use webhooks::{Deliveries, Delivery, DeliveryOptions};

/// What can go wrong while a sandbox starts or keeps its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot listen on {addr}: {source}; pick a free address or port")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the listener has no local address: {0}")]
    NoAddress(std::io::Error),
    #[error("cannot read the state file {}: {source}; check its permissions or pick another file", path.display())]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a sandbox state file ({source}); move it away or pick another --state", path.display())]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot save the state file {}: {source}; check that its folder exists and is writable", path.display())]
    SaveState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox's state does not serialise to JSON: {0}")]
    Serialise(serde_json::Error),
    #[error("cannot build the webhook client: {0}")]
    HttpClient(reqwest::Error),
}

/// Milliseconds since the Unix epoch, the clock every piece of the kit reads.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
