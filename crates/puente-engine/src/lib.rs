//! The engine: opens connections and objects, runs syncs (read, plan,
//! apply, record), recovers from crashes through the intent journal, and
//! restores deleted records. Connectors and the state store are its edges;
//! the planner decides, the engine carries out.

pub mod compile;
pub mod config;
pub mod connectors;
mod lease;
mod pass;
mod report;
mod restore;
pub mod schedule;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;

use puente_core::{Connector, ConnectorError, Object};
use puente_plan::SyncSpec;
use puente_state::{StateError, StateStore};
use tokio::sync::Mutex;

pub use config::{Config, Diagnostic, SyncDef};
pub use lease::this_process;
pub use pass::BackfillStatus;
pub use report::{Progress, ProgressFn, RestoreReport, RunOptions, SideCounts, SyncReport};

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
    /// Another pass of the sync is running (here or in another process).
    #[error("sync {sync} is busy: a pass is running in {holder}; it ends when that pass does, or, if that process died, when its lease lapses (by {})", short_time(&holder.expires_at))]
    Busy {
        sync: String,
        holder: Box<puente_state::LeaseRow>,
    },
}

/// An RFC 3339 time as `HH:MM:SS UTC`.
fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
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
    /// This process, as the leases it takes name it.
    pub holder: puente_state::Holder,
    connectors: Mutex<HashMap<String, Arc<dyn Connector>>>,
}

impl Engine {
    /// Opens the state store named by the config.
    pub async fn open(config: Config) -> Result<Engine, EngineError> {
        let state = StateStore::open(&config.state_url).await?;
        Ok(Engine {
            config,
            state,
            holder: this_process("puente"),
            connectors: Mutex::new(HashMap::new()),
        })
    }

    /// Names what this process runs passes as (`puente sync`, `puente
    /// serve`), for whoever finds a sync busy.
    pub fn with_command(mut self, command: &str) -> Engine {
        self.holder.command = command.to_string();
        self
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
        let tokens = self.config.secret_key.as_ref().map(|key| {
            Arc::new(SealedToken {
                state: self.state.clone(),
                key: key.clone(),
                name: format!("oauth:{name}"),
            }) as Arc<dyn puente_core::TokenCache>
        });
        let ctx = puente_core::config::ConnectContext {
            connection: name.to_string(),
            tokens,
        };
        let c = def
            .settings
            .connect(ctx)
            .await
            .map_err(|source| EngineError::Connector {
                connection: name.to_string(),
                source,
            })?;
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
        let a = self.open_endpoint(&def.a).await?;
        let b = self.open_endpoint(&def.b).await?;
        let file = self.config.path.display().to_string();
        let (spec, diagnostics) = compile::compile(def, &file, a.schema(), b.schema());
        Ok(OpenSync {
            a,
            b,
            spec,
            diagnostics,
        })
    }

    /// Opens one side's object (discovering its schema).
    async fn open_endpoint(
        &self,
        ep: &config::EndpointDef,
    ) -> Result<Arc<dyn Object>, EngineError> {
        let c = self.connector(&ep.connection).await?;
        c.open(&ep.spec)
            .await
            .map_err(|source| EngineError::Connector {
                connection: ep.connection.clone(),
                source,
            })
    }

    /// Live checks of every sync: connections, objects, fields, picklists.
    /// A side that cannot be opened is reported at its own line.
    pub async fn validate_live(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let file = self.config.path.display().to_string();
        for def in &self.config.syncs {
            let mut opened = true;
            for (side, ep) in [("a", &def.a), ("b", &def.b)] {
                if let Err(e) = self.open_endpoint(ep).await {
                    opened = false;
                    out.push(Diagnostic {
                        file: file.clone(),
                        line: ep.line,
                        message: format!("sync {}: {side}: {e}", def.name),
                        fix: None,
                        warning: false,
                    });
                }
            }
            if !opened {
                continue;
            }
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

/// A connector's own tokens (an OAuth token set: access token, expiry,
/// current refresh token) sealed in the state store, so a restart, or
/// another process on the same store, carries on with them.
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
