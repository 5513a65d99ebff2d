//! The kit against real HTTP: servers on 127.0.0.1:0, reqwest as the
//! client, the `oauth2` crate as the OAuth client.

mod faults;
mod harness;
mod oauth;
mod persist;
mod webhooks;
