//! HubSpot CRM: the connector (`kind = "hubspot"`) and a local sandbox of
//! HubSpot's API for tests, the demo and offline rehearsals.

pub mod sandbox;
