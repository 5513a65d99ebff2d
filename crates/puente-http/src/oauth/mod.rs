//! The OAuth 2.0 client every CRM connector shares (RFC 6749): the
//! authorization-code grant (an authorize URL carrying `state`, then the
//! code exchanged), the refresh-token grant and the client-credentials
//! grant. The `oauth2` crate speaks the protocol; every request it makes
//! goes through [`HttpClient`](crate::HttpClient), so it is pinned to the
//! token endpoint's origin, paid for by a governor lane and retried like
//! any other call.
//!
//! A vendor plugs in as a [`Provider`]: its endpoints (the token endpoint
//! may sit on an accounts domain that is not the API's), how the client
//! authenticates (form body or HTTP Basic), how long before expiry to
//! refresh, and how to read its refusals into a [`ConnectorError`] with a
//! hint. Extra fields of its token answers (Zoho's `api_domain`, Bitrix24's
//! `client_endpoint`) stay in [`TokenSet::extra`].
//!
//! An [`OAuthApp`] is one app registered with a vendor and makes single
//! grants. An [`OAuthSession`] keeps one connection's tokens: the access
//! token, refreshed before it expires; the newest refresh token, for
//! vendors that replace it on every refresh (Bitrix24); both kept through
//! a [`TokenCache`](puente_core::TokenCache), so a restart, or another
//! process sharing the store, carries on the chain.
//!
//! Tokens never reach a log, an error or `Debug` output: they are held as
//! [`Secret`]s, and a refusal's text is scrubbed of the secrets sent.

mod app;
mod session;
mod wire;

use std::fmt;
use std::time::Duration;

use puente_core::{ConnectorError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::Limit;

pub use app::{Authorization, OAuthApp};
pub use session::{Flow, OAuthSession};

/// How the app authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (HubSpot, Zoho,
    /// Bitrix24).
    Form,
    /// `Authorization: Basic`, each part form-encoded first.
    Basic,
}

/// The grants of RFC 6749 the client makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl Grant {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }

    /// What asking for it does, for messages ("… refused to refresh the
    /// OAuth token").
    pub fn doing(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "exchange the authorization code",
            Grant::RefreshToken => "refresh the OAuth token",
            Grant::ClientCredentials => "grant a token to the client credentials",
        }
    }
}

/// Reads a refused token request into the error the connector reports.
pub type ReadRefusal = fn(&Refusal<'_>) -> ConnectorError;

/// A vendor's authorization server, as the client needs to know it. Every
/// difference between vendors is one of these fields.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The vendor's name in messages ("HubSpot").
    pub name: String,
    /// Where a user approves the app; `None` when there is no such step
    /// (client credentials only).
    pub authorize_url: Option<String>,
    /// The token endpoint. On the vendor's accounts domain, which may not
    /// be the API's (Zoho: `accounts.zoho.eu`; Bitrix24: one central
    /// server for every portal).
    pub token_url: String,
    pub client_auth: ClientAuth,
    /// An access token is refreshed this long before it expires (and a
    /// stored one with less left is not used).
    pub refresh_margin: Duration,
    /// The lifetime assumed when a token answer has no `expires_in`.
    pub default_ttl: Duration,
    /// Token requests allowed to the token endpoint, unless the connector
    /// has them share one of its lanes ([`OAuthApp::with_transport`]).
    pub token_limit: Limit,
    /// How several scopes are joined (RFC 6749: a space; Zoho: a comma).
    pub scope_separator: &'static str,
    /// Extra parameters of the authorize URL (Zoho:
    /// `access_type=offline`, so the code gives a refresh token).
    pub authorize_params: Vec<(String, String)>,
    /// Reads the vendor's refusals ([`rfc6749_refusal`] by default).
    pub refusal: ReadRefusal,
}

impl Provider {
    /// A vendor with RFC 6749's defaults: client authentication in the
    /// form body, refresh five minutes before expiry, an hour when the
    /// answer does not say, 30 token requests a minute, refusals read as
    /// the RFC words them.
    pub fn new(name: impl Into<String>, token_url: impl Into<String>) -> Provider {
        Provider {
            name: name.into(),
            authorize_url: None,
            token_url: token_url.into(),
            client_auth: ClientAuth::Form,
            refresh_margin: Duration::from_secs(300),
            default_ttl: Duration::from_secs(3600),
            token_limit: Limit::per(30, Duration::from_secs(60)),
            scope_separator: " ",
            authorize_params: Vec::new(),
            refusal: rfc6749_refusal,
        }
    }
}

/// A token request the authorization server refused: a 4xx, or a 200
/// whose body names an `error` (Zoho answers refusals with 200).
pub struct Refusal<'a> {
    /// [`Provider::name`].
    pub vendor: &'a str,
    pub grant: Grant,
    pub status: u16,
    /// The answer's JSON (`Null` when it was not JSON).
    pub body: &'a J,
}

impl Refusal<'_> {
    /// RFC 6749's `error` code (`invalid_grant`…), empty when absent.
    pub fn error(&self) -> &str {
        self.body.get("error").and_then(J::as_str).unwrap_or("")
    }

    /// The vendor's explanation: `error_description`, else `message`.
    pub fn description(&self) -> &str {
        ["error_description", "message"]
            .iter()
            .find_map(|k| self.body.get(*k).and_then(J::as_str))
            .unwrap_or("")
    }
}

impl fmt::Debug for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("vendor", &self.vendor)
            .field("grant", &self.grant)
            .field("status", &self.status)
            .field("error", &self.error())
            .finish()
    }
}

/// A refusal as RFC 6749 words it: the `error` code decides the hint.
pub fn rfc6749_refusal(r: &Refusal<'_>) -> ConnectorError {
    let detail = match (r.error(), r.description()) {
        ("", "") => format!("status {}", r.status),
        (e, "") | ("", e) => e.to_string(),
        (e, d) => format!("{e}: {d}"),
    };
    let hint = match (r.error(), r.grant) {
        ("invalid_grant", Grant::RefreshToken) => {
            "the refresh token was revoked or has expired (the app was uninstalled, or authorized again elsewhere): authorize the app again and store the new refresh token"
        }
        ("invalid_grant", Grant::AuthorizationCode) => {
            "the code was used already, has expired, or was issued for another redirect_uri: authorize the app again"
        }
        ("invalid_client" | "unauthorized_client", _) => {
            "check client_id and client_secret of the connection"
        }
        ("invalid_scope", _) => "ask only for scopes the app was granted",
        ("unsupported_grant_type", _) => {
            "the app may not use this grant: allow it in the app's settings at the vendor"
        }
        _ => "check client_id and client_secret of the connection, or authorize the app again",
    };
    ConnectorError::new(
        ErrorKind::Auth,
        format!("{} refused to {} ({detail})", r.vendor, r.grant.doing()),
    )
    .with_hint(hint)
}

/// A credential: its `Debug` shows `***`, and only [`Secret::expose`]
/// gives the text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether two secrets are equal, compared in constant time.
    pub fn same_as(&self, other: &Secret) -> bool {
        puente_core::secret_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a grant gave: the access token and its expiry, the refresh token
/// to use next, and the rest of the vendor's answer.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    /// When the access token expires (seconds since the epoch).
    pub expires_at: u64,
    /// The refresh token to use next: for a vendor that replaces it on
    /// every refresh, the newest one; otherwise the one refreshed with.
    pub refresh_token: Option<Secret>,
    pub scopes: Vec<String>,
    /// The token answer's other fields (Zoho's `api_domain`, HubSpot's
    /// `hub_id`, Bitrix24's `client_endpoint` and `member_id`).
    pub extra: serde_json::Map<String, J>,
    /// When it was obtained (ms since the epoch): of two sets of one
    /// connection, the later one holds the current refresh token.
    pub obtained_at_ms: u64,
}

impl TokenSet {
    /// Seconds the access token has left (0 once expired).
    pub fn expires_in(&self) -> u64 {
        self.expires_at.saturating_sub(now_secs())
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The extra fields' names only: a vendor may put a credential
        // there (an `id_token`).
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token)
            .field("scopes", &self.scopes)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

/// `text` with every secret in `secrets` replaced by `***` (a vendor may
/// echo what it was sent).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(*s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(grant: Grant, status: u16, body: J) -> ConnectorError {
        rfc6749_refusal(&Refusal {
            vendor: "Acme",
            grant,
            status,
            body: &body,
        })
    }

    #[test]
    fn refusals_read_as_the_rfc_words_them() {
        let e = refusal(
            Grant::RefreshToken,
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "unknown refresh token"}),
        );
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(
            e.message,
            "Acme refused to refresh the OAuth token (invalid_grant: unknown refresh token)"
        );
        assert!(e.hint.unwrap().contains("authorize the app again"));
        let e = refusal(
            Grant::ClientCredentials,
            401,
            serde_json::json!({"error": "invalid_client"}),
        );
        assert_eq!(
            e.message,
            "Acme refused to grant a token to the client credentials (invalid_client)"
        );
        assert!(e.hint.unwrap().contains("client_secret"));
        let e = refusal(Grant::AuthorizationCode, 400, J::Null);
        assert!(e.message.ends_with("(status 400)"), "{}", e.message);
    }

    #[test]
    fn secrets_are_masked_and_scrubbed() {
        let s = Secret::new("at-123456");
        assert_eq!(format!("{s:?}"), "***");
        let set = TokenSet {
            access_token: s.clone(),
            expires_at: now_secs() + 60,
            refresh_token: Some(Secret::new("rt-abcdef")),
            scopes: vec!["crm".into()],
            extra: serde_json::json!({"id_token": "jwt-secret"})
                .as_object()
                .cloned()
                .unwrap(),
            obtained_at_ms: now_ms(),
        };
        let shown = format!("{set:?}");
        for secret in ["at-123456", "rt-abcdef", "jwt-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!((59..=60).contains(&set.expires_in()));
        assert_eq!(
            scrub("token rt-abcdef is unknown", &["rt-abcdef", ""]),
            "token *** is unknown"
        );
        assert!(s.same_as(&Secret::new("at-123456")));
        assert!(!s.same_as(&Secret::new("at-123457")));
    }
}
