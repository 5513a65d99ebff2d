//! HubSpot CRM: the connector (`kind = "hubspot"`) and a local sandbox of
//! HubSpot's API for tests, the demo and offline rehearsals.

mod client;
mod connector;
pub mod sandbox;
pub mod webhook;

pub use client::{Auth, Settings, DEFAULT_BASE_URL};
pub use connector::{HubSpotConnector, COMPANY_FIELD};
