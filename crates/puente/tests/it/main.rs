//! The `puente` binary as users run it.

mod cli;
mod crash;
mod crash_hubspot;
