//! `kind = "csv"`: a folder of CSV files; its table, checked.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use puente_core::config::{ConnectContext, ConnectionConfig, ConnectorKind, Key, KeyType, Table};
use puente_core::{Connector, ConnectorError};

use crate::CsvConnector;

/// CSV files, as a connector kind.
pub struct CsvKind;

/// The CSV kind, for the engine's list of connectors.
pub static KIND: CsvKind = CsvKind;

const KEYS: &[Key] = &[Key::new(
    "dir",
    KeyType::Path,
    "the folder holding the files, relative to the config file (default: the config file's folder)",
)];

const OBJECT_KEYS: &[Key] = &[Key::new(
    "delimiter",
    KeyType::OneOf(&[",", ";", "tab"]),
    "what separates the values of a line (default \",\")",
)];

impl ConnectorKind for CsvKind {
    fn names(&self) -> &'static [&'static str] {
        &["csv"]
    }

    fn about(&self) -> &'static str {
        "CSV files in a folder: an object is a file"
    }

    fn keys(&self) -> &'static [Key] {
        KEYS
    }

    fn object_keys(&self) -> &'static [Key] {
        OBJECT_KEYS
    }

    fn configure(&self, _kind: &str, t: &mut Table<'_, '_>) -> Option<Arc<dyn ConnectionConfig>> {
        let dir = t.path("dir").unwrap_or_else(|| t.base().join("."));
        Some(Arc::new(CsvConfig { dir }))
    }
}

/// A CSV connection's settings: its folder.
#[derive(Clone, Debug)]
pub struct CsvConfig {
    pub dir: PathBuf,
}

#[async_trait]
impl ConnectionConfig for CsvConfig {
    fn kind(&self) -> &str {
        "csv"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn connect(&self, _ctx: ConnectContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let c = CsvConnector::new(self.dir.clone());
        c.check().await?;
        Ok(Arc::new(c))
    }
}
