//! HubSpot CRM: the connector (`kind = "hubspot"`). Its local sandbox is
//! the `puente-hubspot-sandbox` crate (connectors/hubspot/sandbox), which
//! this crate uses only in its tests.
//!
//! One file per role, the recipe every CRM connector follows:
//! - `config`: the kind's keys, their checks, and the [`Settings`] they give;
//! - `client`: HTTP calls (auth through puente-http's OAuth client, the
//!   governor's lanes, the daily quota) and HubSpot's error bodies turned
//!   into [`puente_core::ConnectorError`]s and per-record failures;
//! - `schema`: properties → [`puente_core::ObjectSchema`];
//! - `read`: list, search increments, reads by id (webhook-named ids
//!   first), merges, id listings, lookups;
//! - `write`: upsert, traced create, update, archive, associations;
//! - `push`: webhook signatures and `accept_push`;
//! - `connector`: the `Connector` and `Object` impls tying them together.

mod client;
pub mod config;
mod connector;
pub mod push;
mod read;
mod schema;
mod write;

pub use config::{Auth, HubSpotConfig, Settings, DEFAULT_BASE_URL, KIND};
pub use connector::HubSpotConnector;
/// The webhook verification under its earlier name (the fuzz target and the
/// engine's tests use it).
pub use push as webhook;
pub use schema::COMPANY_FIELD;

/// One value percent-encoded for a URL's path or query.
pub(crate) fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap_or_default()[1..].to_string()
}
