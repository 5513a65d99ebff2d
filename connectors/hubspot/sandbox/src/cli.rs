//! `puente sandbox hubspot`: a local HubSpot for rehearsals and tests. The
//! binary lists this crate's [`descriptor`].

use std::path::PathBuf;
use std::time::Duration;

use puente_sandbox_kit::cli::Run;
use puente_sandbox_kit::{Descriptor, SandboxCommand};

use super::{Error, Faults, Running, SandboxOptions};

#[derive(clap::Args)]
pub struct HubspotArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// Private-app token to accept (repeat for several apps).
    #[arg(long = "token", default_value = "pat-sandbox-0000")]
    tokens: Vec<String>,
    /// Seed this many contacts (with companies and deals in proportion).
    #[arg(long)]
    seed: Option<u64>,
    /// Requests allowed per app, as N/10s.
    #[arg(long, default_value = "100/10s")]
    rate_limit: String,
    /// Requests allowed per day for the account.
    #[arg(long, default_value_t = 250_000)]
    daily_limit: u64,
    /// Search requests per second.
    #[arg(long, default_value_t = 5)]
    search_per_sec: u32,
    /// How long a write takes to appear in search results, in milliseconds.
    #[arg(long, default_value_t = 0)]
    search_lag_ms: u64,
    /// Faults to inject, e.g. "429=0.05,5xx=0.02,slow=0.05,slow_ms=1500,drop=0.01,malformed=0.01".
    #[arg(long, default_value = "")]
    faults: String,
    /// Keep the sandbox's data in this file (loaded at start, saved as it changes).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The OAuth app's client secret (also signs webhooks).
    #[arg(long, default_value = "sandbox-client-secret")]
    client_secret: String,
    /// Refuse a company whose domain another company holds (HubSpot's API does not).
    #[arg(long)]
    unique_company_domain: bool,
}

/// The HubSpot sandbox, as `puente sandbox` lists it.
pub fn descriptor() -> Descriptor {
    Descriptor::of::<HubspotArgs>()
}

impl SandboxCommand for HubspotArgs {
    const NAME: &'static str = "hubspot";
    const ABOUT: &'static str = "HubSpot's CRM API: objects, batch, search, properties, associations, OAuth, rate limits, webhooks, faults";

    fn run(self) -> Run {
        Box::pin(async move { run(self).await.map_err(Into::into) })
    }
}

/// Parses `N/10s` (HubSpot's unit) or a bare `N`.
fn per_10s(s: &str) -> Result<u32, Error> {
    let n = s.trim().trim_end_matches("/10s");
    n.parse().map_err(|_| {
        Error::Flag(format!(
            "--rate-limit {s:?}: write requests per 10 seconds, e.g. 100/10s"
        ))
    })
}

async fn run(a: HubspotArgs) -> Result<(), Error> {
    let opts = SandboxOptions {
        tokens: a.tokens,
        rate_limit_per_10s: per_10s(&a.rate_limit)?,
        daily_limit: a.daily_limit,
        search_per_sec: a.search_per_sec,
        search_lag: Duration::from_millis(a.search_lag_ms),
        faults: Faults::parse(&a.faults).map_err(|e| Error::Flag(format!("--faults: {e}")))?,
        seed: a.seed,
        state_file: a.state,
        client_secret: a.client_secret,
        unique_company_domain: a.unique_company_domain,
        ..SandboxOptions::default()
    };
    let listener = puente_sandbox_kit::harness::bind(&a.listen).await?;
    let running = Running::on(listener, opts).await?;
    let o = &running.sandbox.opts;
    println!("HubSpot sandbox on {}", running.url);
    println!("  private-app token: {}", o.tokens.join(", "));
    println!(
        "  OAuth: client_id {} · authorize at {}/oauth/authorize",
        o.client_id, running.url
    );
    println!(
        "  webhooks: app {} · developer key {} · PUT {}/webhooks/v3/{}/settings",
        o.app_id, o.developer_key, running.url, o.app_id
    );
    println!(
        "  limits: {}/10s per app, {}/day, search {}/s",
        o.rate_limit_per_10s, o.daily_limit, o.search_per_sec
    );
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.ok();
    running.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_is_read_per_10_seconds() {
        assert_eq!(per_10s("100/10s").unwrap(), 100);
        assert_eq!(per_10s(" 7 ").unwrap(), 7);
        let e = per_10s("5/min").unwrap_err().to_string();
        assert!(e.contains("e.g. 100/10s"), "{e}");
    }
}
