//! The `puente` binary as users run it.

mod browser;
mod cli;
mod crash;
mod crash_hubspot;
mod crash_webhook;
mod leases;
mod new_user;
mod secrets;
