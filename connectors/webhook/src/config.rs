//! `kind = "webhook"`: generic JSON webhooks kept in an inbox folder; the
//! connection's table, checked.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use puente_core::config::{ConnectContext, ConnectionConfig, ConnectorKind, Key, KeyType, Table};
use puente_core::{Connector, ConnectorError};

use crate::{WebhookAuth, WebhookConnector};

/// Generic JSON webhooks, as a connector kind.
pub struct WebhookKind;

/// The webhook kind, for the engine's list of connectors.
pub static KIND: WebhookKind = WebhookKind;

const KEYS: &[Key] = &[
    Key::new(
        "token",
        KeyType::Secret,
        "what senders present (Authorization: Bearer or X-Puente-Token), or the HMAC key when signature_header is set; 16 characters at least",
    )
    .required(),
    Key::new(
        "signature_header",
        KeyType::Text,
        "the header carrying the body's HMAC-SHA256 in hex (optionally sha256=…); without it, token is a bearer token",
    ),
    Key::new(
        "dir",
        KeyType::Path,
        "where the inbox files are kept, relative to the config file (default .puente/inbox/NAME)",
    ),
];

impl ConnectorKind for WebhookKind {
    fn names(&self) -> &'static [&'static str] {
        &["webhook"]
    }

    fn about(&self) -> &'static str {
        "JSON posted by another system (a PBX's calls, a form's leads), kept before it is acknowledged"
    }

    fn keys(&self) -> &'static [Key] {
        KEYS
    }

    fn configure(&self, _kind: &str, t: &mut Table<'_, '_>) -> Option<Arc<dyn ConnectionConfig>> {
        if !t.has("token") {
            let message = format!("{} has no token", t.label);
            t.err(
                None,
                message,
                Some("add token = { vault = \"NAME\" } (or { env = \"VAR\" }): senders must present it, or sign with it".into()),
            );
            return None;
        }
        let secret = t.secret("token")?;
        if secret.len() < 16 {
            let message = format!("{}.token is shorter than 16 characters", t.path);
            t.err(
                Some("token"),
                message,
                Some("use a long random token (puente secrets keygen makes one)".into()),
            );
        }
        let name = t.path.trim_start_matches("connections.").to_string();
        let dir = t
            .path("dir")
            .unwrap_or_else(|| t.base().join(".puente/inbox").join(name));
        Some(Arc::new(WebhookConfig {
            dir,
            auth: WebhookAuth {
                secret,
                signature_header: t.text("signature_header"),
            },
        }))
    }
}

/// A webhook connection's settings (`Debug` masks the token).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub dir: PathBuf,
    pub auth: WebhookAuth,
}

#[async_trait]
impl ConnectionConfig for WebhookConfig {
    fn kind(&self) -> &str {
        "webhook"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn connect(&self, _ctx: ConnectContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let c = WebhookConnector::new(self.dir.clone(), self.auth.clone());
        c.check().await?;
        Ok(Arc::new(c))
    }
}
