//! The `puente` binary as users run it.

mod browser;
mod cli;
mod crash;
mod crash_hubspot;
mod crash_webhook;
mod secrets;
