//! `kind = "hubspot"`: one HubSpot account, through a private app's token
//! or an OAuth app; the connection's table, checked, and the [`Settings`]
//! it gives.

use std::sync::Arc;

use async_trait::async_trait;
use puente_core::config::{ConnectContext, ConnectionConfig, ConnectorKind, Key, KeyType, Table};
use puente_core::{Connector, ConnectorError};

use crate::HubSpotConnector;

/// HubSpot, as a connector kind.
pub struct HubSpotKind;

/// The HubSpot kind, for the engine's list of connectors.
pub static KIND: HubSpotKind = HubSpotKind;

pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// How the connector authenticates.
#[derive(Clone)]
pub enum Auth {
    /// A private app's access token.
    Token(String),
    /// An OAuth app: tokens refreshed before they expire.
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        match self {
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::OAuth { client_id, .. } => write!(f, "OAuth {{ client_id: {client_id}, .. }}"),
        }
    }
}

/// Settings of one HubSpot connection.
#[derive(Clone)]
pub struct Settings {
    pub base_url: String,
    pub auth: Auth,
    /// The app's client secret, which signs webhooks.
    pub webhook_secret: Option<String>,
    /// Requests per 10 s to start from (corrected by HubSpot's headers).
    pub rate_limit_per_10s: u32,
    pub search_per_sec: u32,
    /// Where an OAuth app's token set (access token, its expiry, the
    /// current refresh token) outlives the process: the engine seals it in
    /// the state store's vault.
    pub token_cache: Option<Arc<dyn puente_core::TokenCache>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("rate_limit_per_10s", &self.rate_limit_per_10s)
            .field("search_per_sec", &self.search_per_sec)
            .field("token_cache", &self.token_cache.is_some())
            .finish()
    }
}

impl Settings {
    pub fn new(base_url: Option<String>, auth: Auth) -> Settings {
        Settings {
            base_url: base_url
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
                .trim_end_matches('/')
                .to_string(),
            auth,
            webhook_secret: None,
            rate_limit_per_10s: 100,
            search_per_sec: 5,
            token_cache: None,
        }
    }
}

const KEYS: &[Key] = &[
    Key::new(
        "token",
        KeyType::Secret,
        "a private app's access token (or use client_id, client_secret and refresh_token for an OAuth app)",
    ),
    Key::new(
        "client_id",
        KeyType::Text,
        "the OAuth app's client id",
    ),
    Key::new("client_secret", KeyType::Secret, "the OAuth app's client secret"),
    Key::new(
        "refresh_token",
        KeyType::Secret,
        "the refresh token the account's authorization gave",
    ),
    Key::new(
        "webhook_secret",
        KeyType::Secret,
        "the app's client secret, which signs HubSpot's webhooks (v3 signatures)",
    ),
    Key::new(
        "base_url",
        KeyType::Text,
        "the API's address (default https://api.hubapi.com; a sandbox's for rehearsals)",
    ),
    Key::new(
        "rate_limit_per_10s",
        KeyType::Integer,
        "requests per 10 seconds to start from (default 100; corrected by HubSpot's rate-limit headers)",
    ),
];

const OBJECT_KEYS: &[Key] = &[Key::new(
    "reconcile_secs",
    KeyType::Integer,
    "how often a full read reconciles what searches and webhooks missed (association changes among them); default 3600",
)];

impl ConnectorKind for HubSpotKind {
    fn names(&self) -> &'static [&'static str] {
        &["hubspot"]
    }

    fn about(&self) -> &'static str {
        "HubSpot CRM objects (contacts, companies, deals, tickets, products, custom objects)"
    }

    fn keys(&self) -> &'static [Key] {
        KEYS
    }

    fn object_keys(&self) -> &'static [Key] {
        OBJECT_KEYS
    }

    fn configure(&self, _kind: &str, t: &mut Table<'_, '_>) -> Option<Arc<dyn ConnectionConfig>> {
        let oauth = ["client_id", "client_secret", "refresh_token"];
        let auth = match (t.has("token"), oauth.map(|k| t.has(k))) {
            (true, [false, false, false]) => t.secret("token").map(Auth::Token),
            (false, [true, true, true]) => {
                let client_id = t.text("client_id");
                let client_secret = t.secret("client_secret");
                let refresh_token = t.secret("refresh_token");
                match (client_id, client_secret, refresh_token) {
                    (Some(client_id), Some(client_secret), Some(refresh_token)) => {
                        Some(Auth::OAuth {
                            client_id,
                            client_secret,
                            refresh_token,
                        })
                    }
                    _ => None,
                }
            }
            _ => {
                let message = format!(
                    "{} needs either token, or client_id + client_secret + refresh_token",
                    t.label
                );
                t.err(
                    None,
                    message,
                    Some("write token = { env = \"HUBSPOT_TOKEN\" } for a private app".into()),
                );
                None
            }
        };
        let base_url = t.text("base_url");
        if let Some(u) = &base_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                let message = format!(
                    "{}: base_url must start with https:// (or http:// for a local sandbox)",
                    t.label
                );
                t.err(Some("base_url"), message, None);
            }
        }
        let webhook_secret = t.secret("webhook_secret");
        let rate = t.integer("rate_limit_per_10s");
        let mut settings = Settings::new(base_url, auth?);
        settings.webhook_secret = webhook_secret;
        if let Some(n) = rate {
            settings.rate_limit_per_10s = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        Some(Arc::new(HubSpotConfig(settings)))
    }
}

/// A HubSpot connection's settings (`Debug` masks the secrets).
#[derive(Clone, Debug)]
pub struct HubSpotConfig(pub Settings);

#[async_trait]
impl ConnectionConfig for HubSpotConfig {
    fn kind(&self) -> &str {
        "hubspot"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn connect(&self, ctx: ConnectContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let mut settings = self.0.clone();
        settings.token_cache = ctx.tokens;
        Ok(Arc::new(HubSpotConnector::new(settings)))
    }
}
