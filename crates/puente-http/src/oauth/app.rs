//! One app registered with a vendor: the grants, one request each.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};

use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    TokenUrl,
};
use puente_core::{ConnectorError, ErrorKind};
use serde_json::Value as J;

use super::wire::{ErrorBody, TokenAnswer, Transport, Via};
use super::{scrub, ClientAuth, Grant, Provider, Refusal, Secret, TokenSet};
use crate::{Governor, HttpClient, HttpError, Quota, RetryPolicy};

type Oauth2Client<HasAuthUrl, HasTokenUrl> = oauth2::Client<
    ErrorBody,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasTokenUrl,
>;

/// Why a grant failed: refused by the authorization server (the refresh
/// token may have been replaced meanwhile), or anything else.
pub(crate) enum Failed {
    Refused(ConnectorError),
    Other(ConnectorError),
}

impl From<Failed> for ConnectorError {
    fn from(f: Failed) -> ConnectorError {
        match f {
            Failed::Refused(e) | Failed::Other(e) => e,
        }
    }
}

/// An app registered with a vendor: its client id and secret, the
/// vendor's [`Provider`], and how its token requests travel.
#[derive(Clone)]
pub struct OAuthApp {
    provider: Arc<Provider>,
    client_id: String,
    client_secret: Secret,
    transport: Transport,
    /// The token endpoint's path, the route logged.
    route: String,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("vendor", &self.provider.name)
            .field("token_url", &self.provider.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

impl OAuthApp {
    /// An app whose token requests go through a client of their own,
    /// pinned to the token endpoint's origin, on a lane of
    /// [`Provider::token_limit`] shared by every user of this app and
    /// endpoint in the process.
    pub fn new(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> OAuthApp {
        let client_id = client_id.into();
        let http = HttpClient::new(RetryPolicy::default(), &provider.token_url);
        let lane = Governor::shared(
            "oauth",
            &provider.token_url,
            &client_id,
            provider.token_limit,
            None,
        );
        let route = url::Url::parse(&provider.token_url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| "/token".to_string());
        OAuthApp {
            provider: Arc::new(provider),
            client_id,
            client_secret,
            transport: Transport {
                http,
                lane,
                quota: None,
            },
            route,
        }
    }

    /// Token requests share the connector's client, lane and quota (the
    /// token endpoint on the API's own origin, as HubSpot's is). `http`
    /// must call the token endpoint's origin: any other is refused.
    pub fn with_transport(
        mut self,
        http: HttpClient,
        lane: Arc<Governor>,
        quota: Option<Arc<Quota>>,
    ) -> OAuthApp {
        self.transport = Transport { http, lane, quota };
        self
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn oauth2(&self) -> Result<Oauth2Client<EndpointNotSet, EndpointSet>, ConnectorError> {
        let token_url = TokenUrl::new(self.provider.token_url.clone()).map_err(|_| {
            ConnectorError::config(format!(
                "{}'s token URL {:?} is not a URL",
                self.provider.name, self.provider.token_url
            ))
        })?;
        Ok(oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.expose().to_string()))
            .set_auth_type(match self.provider.client_auth {
                ClientAuth::Form => AuthType::RequestBody,
                ClientAuth::Basic => AuthType::BasicAuth,
            })
            .set_token_uri(token_url))
    }

    fn redirect(&self, redirect_uri: &str) -> Result<RedirectUrl, ConnectorError> {
        RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
            ConnectorError::config(format!("redirect_uri {redirect_uri:?} is not a URL"))
        })
    }

    /// Several scopes as one, joined the vendor's way.
    fn scope(&self, scopes: &[impl AsRef<str>]) -> Option<Scope> {
        let joined: Vec<&str> = scopes.iter().map(AsRef::as_ref).collect();
        (!joined.is_empty()).then(|| Scope::new(joined.join(self.provider.scope_separator)))
    }

    /// The URL to send a user to, to approve the app; it carries a random
    /// `state`, which [`Authorization::code_from`] checks on the way back.
    pub fn authorize(
        &self,
        redirect_uri: &str,
        scopes: &[&str],
    ) -> Result<Authorization, ConnectorError> {
        let Some(at) = &self.provider.authorize_url else {
            return Err(ConnectorError::config(format!(
                "{} has no authorize step for this app",
                self.provider.name
            )));
        };
        let auth_url = AuthUrl::new(at.clone()).map_err(|_| {
            ConnectorError::config(format!(
                "{}'s authorize URL {at:?} is not a URL",
                self.provider.name
            ))
        })?;
        let client = self
            .oauth2()?
            .set_auth_uri(auth_url)
            .set_redirect_uri(self.redirect(redirect_uri)?);
        let mut req = client.authorize_url(CsrfToken::new_random);
        if let Some(s) = self.scope(scopes) {
            req = req.add_scope(s);
        }
        for (k, v) in &self.provider.authorize_params {
            req = req.add_extra_param(k.as_str(), v.as_str());
        }
        let (url, state) = req.url();
        Ok(Authorization {
            url: url.to_string(),
            state: Secret::new(state.secret().as_str()),
        })
    }

    /// Exchanges the code the user's approval gave (RFC 6749 §4.1.3).
    /// `redirect_uri` must be the one the code was issued for, when the
    /// vendor asks for it.
    pub async fn exchange_code(
        &self,
        code: &Secret,
        redirect_uri: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        let client = self.oauth2()?;
        let redirect = redirect_uri.map(|r| self.redirect(r)).transpose()?;
        let grant = AuthorizationCode::new(code.expose().to_string());
        let mut req = client.exchange_code(grant);
        if let Some(r) = &redirect {
            req = req.set_redirect_uri(Cow::Borrowed(r));
        }
        let via = self.via();
        let result = req.request_async(&via).await;
        Ok(self.settle(
            Grant::AuthorizationCode,
            result,
            &via,
            None,
            &[code.expose()],
        )?)
    }

    /// Refreshes with `refresh_token` (RFC 6749 §6). The set holds the
    /// refresh token to use next: a new one when the vendor replaced it.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, ConnectorError> {
        Ok(self.refresh_or_refusal(refresh_token).await?)
    }

    pub(crate) async fn refresh_or_refusal(
        &self,
        refresh_token: &Secret,
    ) -> Result<TokenSet, Failed> {
        let client = self.oauth2().map_err(Failed::Other)?;
        let rt = RefreshToken::new(refresh_token.expose().to_string());
        let via = self.via();
        let result = client.exchange_refresh_token(&rt).request_async(&via).await;
        self.settle(
            Grant::RefreshToken,
            result,
            &via,
            Some(refresh_token),
            &[refresh_token.expose()],
        )
    }

    /// The client-credentials grant (RFC 6749 §4.4), with the vendor's
    /// extra parameters (Zoho: `soid`).
    pub async fn client_credentials(
        &self,
        scopes: &[String],
        params: &[(String, String)],
    ) -> Result<TokenSet, ConnectorError> {
        let client = self.oauth2()?;
        let mut req = client.exchange_client_credentials();
        if let Some(s) = self.scope(scopes) {
            req = req.add_scope(s);
        }
        for (k, v) in params {
            req = req.add_extra_param(k.as_str(), v.as_str());
        }
        let via = self.via();
        let result = req.request_async(&via).await;
        Ok(self.settle(Grant::ClientCredentials, result, &via, None, &[])?)
    }

    fn via(&self) -> Via<'_> {
        Via {
            transport: &self.transport,
            route: &self.route,
            answer: Mutex::new(None),
        }
    }

    /// A token answer as a set, or why there is none.
    fn settle(
        &self,
        grant: Grant,
        result: Result<TokenAnswer, RequestTokenError<HttpError, ErrorBody>>,
        via: &Via<'_>,
        refreshed_with: Option<&Secret>,
        sent: &[&str],
    ) -> Result<TokenSet, Failed> {
        let vendor = &self.provider.name;
        let e = match result {
            Ok(answer) => {
                let set = answer.into_set(self.provider.default_ttl, refreshed_with);
                tracing::debug!(
                    vendor = %vendor,
                    grant = grant.as_str(),
                    expires_in = set.expires_in(),
                    rotated = refreshed_with.is_some_and(|r| set.refresh_token.as_ref().is_some_and(|n| !n.same_as(r))),
                    "token granted"
                );
                return Ok(set);
            }
            Err(e) => e,
        };
        // What the `oauth2` crate could not read: JSON syntax, or a field
        // of ours named (never a value).
        let unreadable = match e {
            RequestTokenError::Request(e) => return Err(Failed::Other(transport(vendor, e))),
            RequestTokenError::Parse(e, _) => format!(": {}", scrub(&e.to_string(), sent)),
            RequestTokenError::Other(m) => format!(": {m}"),
            RequestTokenError::ServerResponse(_) => String::new(),
        };
        let Some((status, body)) = via.answer() else {
            return Err(Failed::Other(ConnectorError::internal(format!(
                "could not build the request to {} at {vendor}{unreadable}",
                grant.doing()
            ))));
        };
        let json: J = serde_json::from_slice(&body).unwrap_or(J::Null);
        let external = |message: String, hint: &str| {
            Failed::Other(ConnectorError::new(ErrorKind::External, message).with_hint(hint))
        };
        Err(match status {
            429 => external(
                format!("{vendor}'s token endpoint is still rate limited after retries"),
                "retried on the next run; another client may be refreshing the same app's tokens",
            ),
            s if s >= 500 => external(
                format!("{vendor}'s token endpoint failed with {s} after retries"),
                "retried on the next run",
            ),
            s @ 300..=399 => external(
                format!(
                    "{vendor}'s token endpoint answered {s}, a redirect, which is not followed"
                ),
                "check the token URL of the connection",
            ),
            s if (400..500).contains(&s) || json.get("error").is_some_and(|e| !e.is_null()) => {
                let e = (self.provider.refusal)(&Refusal {
                    vendor,
                    grant,
                    status,
                    body: &json,
                });
                let mut secrets = sent.to_vec();
                secrets.push(self.client_secret.expose());
                Failed::Refused(ConnectorError {
                    message: scrub(&e.message, &secrets),
                    hint: e.hint.map(|h| scrub(&h, &secrets)),
                    ..e
                })
            }
            s => external(
                format!(
                    "{vendor}'s answer ({s}) to the request to {} is unreadable{unreadable}",
                    grant.doing()
                ),
                "check the token URL of the connection; retried on the next run",
            ),
        })
    }
}

/// A token request that did not get an answer.
fn transport(vendor: &str, e: HttpError) -> ConnectorError {
    match e {
        HttpError::QuotaSpent { .. } => ConnectorError::new(ErrorKind::External, e.to_string())
            .with_hint(format!(
                "{vendor}'s daily API quota is spent; calls resume when it resets"
            )),
        _ => ConnectorError::new(ErrorKind::Unreachable, e.to_string()).with_hint(format!(
            "check the token URL and the network to {vendor}; retried on the next run"
        )),
    }
}

/// An authorize URL and the `state` it carries.
pub struct Authorization {
    /// Where to send the user.
    pub url: String,
    state: Secret,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// The `state` the vendor must send back.
    pub fn state(&self) -> &Secret {
        &self.state
    }

    /// The code in the URL the vendor sent the user back to, once its
    /// `state` is checked (in constant time): a redirect with another state
    /// was not caused by this authorization (RFC 6749 §10.12).
    pub fn code_from(&self, redirected_to: &str) -> Result<Secret, ConnectorError> {
        let url = url::Url::parse(redirected_to).map_err(|_| {
            ConnectorError::new(
                ErrorKind::Auth,
                "the redirect back from the vendor is not a URL",
            )
        })?;
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let state = q.get("state").map(|s| Secret::new(s.as_str()));
        if !state.is_some_and(|s| s.same_as(&self.state)) {
            return Err(ConnectorError::new(
                ErrorKind::Auth,
                "the redirect's state is not the one this authorization sent: a forged or stale redirect",
            )
            .with_hint("start the authorization again"));
        }
        if let Some(e) = q.get("error") {
            return Err(ConnectorError::new(
                ErrorKind::Auth,
                format!("the app was not authorized ({e})"),
            )
            .with_hint(
                "approve the app's access when the vendor asks, or check the scopes it asks for",
            ));
        }
        q.get("code")
            .filter(|c| !c.is_empty())
            .map(|c| Secret::new(c.as_str()))
            .ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::Auth,
                    "the redirect back from the vendor has no code",
                )
                .with_hint("start the authorization again")
            })
    }
}
