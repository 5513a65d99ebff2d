//! `puente serve`: every enabled sync, always on, with the dashboard, the
//! API and webhook endpoints on one address.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use puente_engine::config::Config;
use puente_engine::Engine;
use puente_server::ServeOptions;

/// The address used when neither `--listen` nor `[serve] listen` names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7300";

/// The admin token: the config's, else `PUENTE_ADMIN_TOKEN`, else a fresh
/// one for this process (printed once, so the operator can sign in).
pub fn admin_token(cfg: &Config) -> Result<(String, bool)> {
    if let Some(t) = &cfg.serve.admin_token {
        return Ok((t.clone(), false));
    }
    match std::env::var("PUENTE_ADMIN_TOKEN") {
        Ok(t) if t.len() >= 16 => Ok((t, false)),
        Ok(t) if !t.is_empty() => anyhow::bail!(
            "PUENTE_ADMIN_TOKEN is {} characters long; an admin token needs at least 16\n  fix: use a longer token, or unset the variable to get a generated one",
            t.chars().count()
        ),
        _ => Ok((puente_server::new_token(), true)),
    }
}

pub fn options(cfg: &Config, token: String) -> ServeOptions {
    ServeOptions {
        admin_token: token,
        public_url: cfg.serve.public_url.clone(),
        alerts: cfg.serve.alerts.clone(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: letting passes in progress finish");
}

pub async fn run(cfg: Config, listen: Option<String>) -> Result<ExitCode> {
    let listen = listen
        .or_else(|| cfg.serve.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let (token, generated) = admin_token(&cfg)?;
    let opts = options(&cfg, token.clone());
    let engine = Arc::new(Engine::open(cfg).await?.with_command("puente serve"));
    let app = puente_server::app(engine.clone(), opts).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    outln!("puente serve: dashboard and API on http://{addr}/");
    outln!("  webhooks: POST http://{addr}/webhooks/<connection>");
    if generated {
        outln!("  admin token (this run only; set [serve] admin_token to keep one): {token}");
    }
    let syncs: Vec<_> = engine
        .config
        .syncs
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.name.as_str())
        .collect();
    outln!("  running: {}", syncs.join(", "));
    puente_server::serve(listener, app, shutdown_signal()).await?;
    engine.state.close().await;
    outln!("stopped");
    Ok(ExitCode::SUCCESS)
}
