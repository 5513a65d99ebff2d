//! The engine: opens connections and objects, runs syncs (read, plan,
//! apply, record), recovers from crashes through the intent journal, and
//! restores deleted records. Connectors and the state store are its edges;
//! the planner decides, the engine carries out.

pub mod compile;
pub mod config;
mod run;
pub mod schedule;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;

use puente_core::{Connector, ConnectorError, Object};
use puente_plan::SyncSpec;
use puente_state::{StateError, StateStore};
use tokio::sync::Mutex;

pub use config::{Config, Diagnostic, SyncDef};
pub use run::{
    BackfillStatus, Progress, ProgressFn, RestoreReport, RunOptions, SideCounts, SyncReport,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(Vec<Diagnostic>),
    #[error("connection {connection}: {source}{}", .source.hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Connector {
        connection: String,
        #[source]
        source: ConnectorError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Refused(String),
}

/// An opened sync: both objects and the compiled spec.
pub struct OpenSync {
    pub a: Arc<dyn Object>,
    pub b: Arc<dyn Object>,
    pub spec: SyncSpec,
    pub diagnostics: Vec<Diagnostic>,
}

pub struct Engine {
    pub config: Config,
    pub state: StateStore,
    connectors: Mutex<HashMap<String, Arc<dyn Connector>>>,
}

impl Engine {
    /// Opens the state store named by the config.
    pub async fn open(config: Config) -> Result<Engine, EngineError> {
        let state = StateStore::open(&config.state_url).await?;
        Ok(Engine {
            config,
            state,
            connectors: Mutex::new(HashMap::new()),
        })
    }

    /// The connector for a named connection, connecting on first use.
    pub async fn connector(&self, name: &str) -> Result<Arc<dyn Connector>, EngineError> {
        let mut cache = self.connectors.lock().await;
        if let Some(c) = cache.get(name) {
            return Ok(c.clone());
        }
        let def = self.config.connections.get(name).ok_or_else(|| {
            EngineError::Refused(format!("connection {name} is not defined in the config"))
        })?;
        let wrap = |source| EngineError::Connector {
            connection: name.to_string(),
            source,
        };
        let c: Arc<dyn Connector> = match def {
            config::ConnectionDef::Sql {
                url, lock_timeout, ..
            } => Arc::new(
                puente_sql::SqlConnector::connect_with(url, *lock_timeout)
                    .await
                    .map_err(wrap)?,
            ),
            config::ConnectionDef::HubSpot(settings) => {
                let mut settings = settings.clone();
                if let Some(key) = &self.config.secret_key {
                    settings.token_cache = Some(Arc::new(SealedToken {
                        state: self.state.clone(),
                        key: key.clone(),
                        name: format!("oauth:{name}"),
                    }));
                }
                Arc::new(puente_hubspot::HubSpotConnector::new(settings))
            }
            config::ConnectionDef::Webhook { dir, auth } => {
                let c = puente_webhook::WebhookConnector::new(dir.clone(), auth.clone());
                c.check().await.map_err(wrap)?;
                Arc::new(c)
            }
            config::ConnectionDef::Csv { dir } => {
                let c = puente_file::CsvConnector::new(dir.clone());
                c.check().await.map_err(wrap)?;
                Arc::new(c)
            }
        };
        cache.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// The connector for a connection if it is already open (nothing is
    /// connected to answer this).
    pub async fn connected(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.lock().await.get(name).cloned()
    }

    /// Opens both objects of a sync and compiles it against their schemas.
    pub async fn open_sync(&self, def: &SyncDef) -> Result<OpenSync, EngineError> {
        let mut objs = Vec::new();
        for ep in [&def.a, &def.b] {
            let c = self.connector(&ep.connection).await?;
            let o = c
                .open(&ep.spec)
                .await
                .map_err(|source| EngineError::Connector {
                    connection: ep.connection.clone(),
                    source,
                })?;
            objs.push(o);
        }
        let b = objs.pop().expect("two objects");
        let a = objs.pop().expect("two objects");
        let file = self.config.path.display().to_string();
        let (spec, diagnostics) = compile::compile(def, &file, a.schema(), b.schema());
        Ok(OpenSync {
            a,
            b,
            spec,
            diagnostics,
        })
    }

    /// Live checks of every sync: connections, objects, fields, picklists.
    pub async fn validate_live(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let file = self.config.path.display().to_string();
        for def in &self.config.syncs {
            match self.open_sync(def).await {
                Ok(o) => out.extend(o.diagnostics),
                Err(e) => out.push(Diagnostic {
                    file: file.clone(),
                    line: def.line,
                    message: format!("sync {}: {e}", def.name),
                    fix: None,
                    warning: false,
                }),
            }
        }
        out
    }
}

/// A connector's own token (OAuth access token) sealed in the state store,
/// so a restart does not need a fresh one.
struct SealedToken {
    state: StateStore,
    key: puente_state::SecretKey,
    name: String,
}

#[async_trait::async_trait]
impl puente_core::TokenCache for SealedToken {
    async fn load(&self) -> Option<String> {
        match self.state.secret(&self.name, &self.key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(secret = %self.name, "cached token unreadable, a new one will be fetched: {e}");
                None
            }
        }
    }

    async fn store(&self, value: &str) {
        if let Err(e) = self.state.put_secret(&self.name, value, &self.key).await {
            tracing::warn!(secret = %self.name, "could not cache the token: {e}");
        }
    }
}
