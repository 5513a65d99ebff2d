//! `puente serve` end to end: the HubSpot sandbox and PostgreSQL kept in
//! sync by the running service, driven through its API and dashboard.

mod alerts;
mod api;
mod gradual;
mod setup;
mod shutdown;
mod webhook;
