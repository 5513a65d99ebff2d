//! One connection's tokens, kept across refreshes, restarts and
//! processes.
//!
//! The set is stored through the connector's [`TokenCache`] (the engine
//! seals it in the state store's vault) with its lineage: a hash of the
//! client id and the configured refresh token it descends from. A stored
//! set of another lineage is ignored, so a re-authorization written into
//! the config wins over tokens descended from the one it replaced. Of two
//! sets of one lineage (this process's and the store's), the later one
//! holds the current refresh token: for a vendor that replaces it on every
//! refresh, the older one no longer works.

use std::fmt;
use std::sync::Arc;

use puente_core::{ConnectorError, TokenCache};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::app::Failed;
use super::{now_secs, OAuthApp, Secret, TokenSet};

/// How a connection obtains its tokens.
#[derive(Clone)]
pub enum Flow {
    /// The refresh token the account's authorization gave, as the config
    /// holds it: the root of the chain (a vendor that replaces refresh
    /// tokens moves on from it; the newest one is stored).
    RefreshToken(Secret),
    /// The client-credentials grant, with these scopes and the vendor's
    /// extra parameters.
    ClientCredentials {
        scopes: Vec<String>,
        params: Vec<(String, String)>,
    },
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flow::RefreshToken(_) => f.write_str("RefreshToken(***)"),
            Flow::ClientCredentials { scopes, .. } => f
                .debug_struct("ClientCredentials")
                .field("scopes", scopes)
                .finish_non_exhaustive(),
        }
    }
}

/// A connection's tokens: [`OAuthSession::access_token`] gives one with
/// more than the provider's refresh margin left, refreshing (once for all
/// callers in the process) when needed.
pub struct OAuthSession {
    app: OAuthApp,
    flow: Flow,
    /// The lineage of the sets this session obtains.
    lineage: String,
    cache: Option<Arc<dyn TokenCache>>,
    current: Mutex<Option<TokenSet>>,
}

impl fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSession")
            .field("app", &self.app)
            .field("flow", &self.flow)
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// A set as it is stored. Reads what the HubSpot connector stored before
/// the set held a refresh token (`owner`: the same lineage hash).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(alias = "owner")]
    lineage: String,
    access_token: Secret,
    expires_at: u64,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    extra: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    obtained_at_ms: u64,
}

/// The first 8 bytes of SHA-256 over the parts, in hex.
fn lineage(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0]);
        }
        h.update(p.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl OAuthSession {
    /// `cache`: where the set outlives the process. Without one, a vendor
    /// that replaces refresh tokens needs a new authorization after a
    /// restart (the configured refresh token is spent).
    pub fn new(app: OAuthApp, flow: Flow, cache: Option<Arc<dyn TokenCache>>) -> OAuthSession {
        let lineage = match &flow {
            Flow::RefreshToken(root) => lineage(&[app.client_id(), root.expose()]),
            Flow::ClientCredentials { scopes, params } => {
                let mut parts = vec!["client_credentials", app.client_id()];
                parts.extend(scopes.iter().map(String::as_str));
                parts.extend(params.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
                lineage(&parts)
            }
        };
        OAuthSession {
            app,
            flow,
            lineage,
            cache,
            current: Mutex::new(None),
        }
    }

    pub fn app(&self) -> &OAuthApp {
        &self.app
    }

    /// An access token with more than the refresh margin left.
    pub async fn access_token(&self) -> Result<Secret, ConnectorError> {
        Ok(self.obtain(None).await?.access_token)
    }

    /// The current set (for its extra fields: Zoho's `api_domain`).
    pub async fn token_set(&self) -> Result<TokenSet, ConnectorError> {
        self.obtain(None).await
    }

    /// The API refused `token` before it expired (revoked, or expired
    /// early): another one, refreshed unless another caller already did.
    pub async fn rejected(&self, token: &Secret) -> Result<Secret, ConnectorError> {
        Ok(self.obtain(Some(token)).await?.access_token)
    }

    fn usable(&self, set: &TokenSet, rejected: Option<&Secret>) -> bool {
        set.expires_at > now_secs() + self.app.provider().refresh_margin.as_secs()
            && !rejected.is_some_and(|r| set.access_token.same_as(r))
    }

    async fn obtain(&self, rejected: Option<&Secret>) -> Result<TokenSet, ConnectorError> {
        // Held across the refresh: one refresh at a time in the process.
        let mut current = self.current.lock().await;
        if let Some(set) = current.as_ref().filter(|s| self.usable(s, rejected)) {
            return Ok(set.clone());
        }
        // Another process may have refreshed since (and been given a new
        // refresh token): the store's set, if later than ours, is current.
        self.adopt_stored(&mut current).await;
        if let Some(set) = current.as_ref().filter(|s| self.usable(s, rejected)) {
            return Ok(set.clone());
        }
        let set = match &self.flow {
            Flow::ClientCredentials { scopes, params } => {
                self.app.client_credentials(scopes, params).await?
            }
            Flow::RefreshToken(root) => {
                let tried = current
                    .as_ref()
                    .and_then(|s| s.refresh_token.clone())
                    .unwrap_or_else(|| root.clone());
                match self.app.refresh_or_refusal(&tried).await {
                    Ok(set) => set,
                    Err(Failed::Other(e)) => return Err(e),
                    Err(Failed::Refused(e)) => {
                        // Another process sharing the store may have
                        // replaced the refresh token between our read and
                        // our request: read the store once more.
                        self.adopt_stored(&mut current).await;
                        let newer = current.as_ref().filter(|s| {
                            s.refresh_token.as_ref().is_some_and(|r| !r.same_as(&tried))
                        });
                        match newer {
                            Some(s) if self.usable(s, rejected) => return Ok(s.clone()),
                            Some(s) => {
                                tracing::info!(
                                    vendor = %self.app.provider().name,
                                    "the refresh token was replaced by another process; refreshing with the stored one"
                                );
                                let next = s.refresh_token.clone().expect("filtered on it");
                                self.app.refresh(&next).await?
                            }
                            None => return Err(e),
                        }
                    }
                }
            }
        };
        self.store(&set).await;
        *current = Some(set.clone());
        Ok(set)
    }

    /// Takes the stored set when it is of this lineage and later than
    /// `current`.
    async fn adopt_stored(&self, current: &mut Option<TokenSet>) {
        let Some(cache) = &self.cache else { return };
        let Some(text) = cache.load().await else {
            return;
        };
        let Ok(s) = serde_json::from_str::<Stored>(&text) else {
            tracing::warn!(vendor = %self.app.provider().name, "the stored token set is unreadable; a new one will be obtained");
            return;
        };
        if s.lineage != self.lineage {
            return;
        }
        if current
            .as_ref()
            .is_some_and(|c| c.obtained_at_ms > s.obtained_at_ms)
        {
            return;
        }
        *current = Some(TokenSet {
            access_token: s.access_token,
            expires_at: s.expires_at,
            refresh_token: s.refresh_token,
            scopes: s.scopes,
            extra: s.extra,
            obtained_at_ms: s.obtained_at_ms,
        });
    }

    async fn store(&self, set: &TokenSet) {
        let Some(cache) = &self.cache else { return };
        let s = Stored {
            lineage: self.lineage.clone(),
            access_token: set.access_token.clone(),
            expires_at: set.expires_at,
            refresh_token: set.refresh_token.clone(),
            scopes: set.scopes.clone(),
            extra: set.extra.clone(),
            obtained_at_ms: set.obtained_at_ms,
        };
        cache
            .store(&serde_json::to_string(&s).expect("a token set encodes"))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lineage_is_the_hash_hubspot_stored_as_owner() {
        // What the HubSpot connector wrote as `owner` before this module:
        // SHA-256 of client id, a zero byte, refresh token; 8 bytes, hex.
        let d = Sha256::new()
            .chain_update(b"app")
            .chain_update([0])
            .chain_update(b"rt-1")
            .finalize();
        let owner: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lineage(&["app", "rt-1"]), owner);
        assert_ne!(lineage(&["app", "rt-2"]), owner);
        let old = format!(r#"{{"access_token":"at","expires_at":1,"owner":"{owner}"}}"#);
        let s: Stored = serde_json::from_str(&old).unwrap();
        assert_eq!(s.lineage, owner);
        assert!(s.refresh_token.is_none());
    }
}
