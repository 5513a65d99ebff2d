//! HubSpot CRM: the connector (`kind = "hubspot"`). Its local sandbox is
//! the `puente-hubspot-sandbox` crate (connectors/hubspot/sandbox), which
//! this crate uses only in its tests.

mod client;
pub mod config;
mod connector;
pub mod webhook;

pub use client::{Auth, Settings, DEFAULT_BASE_URL};
pub use config::{HubSpotConfig, KIND};
pub use connector::{HubSpotConnector, COMPANY_FIELD};

/// One value percent-encoded for a URL's path or query.
pub(crate) fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap_or_default()[1..].to_string()
}
