//! The kit's authorization server driven by the `oauth2` crate, a client
//! written against RFC 6749 by others: the authorization-code grant through
//! the authorize redirect, refresh (kept and rotated), client credentials,
//! expiry, revocation, and the refusals a client must be able to read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use puente_sandbox_kit::oauth::{
    self, OAuthClient, OAuthRoutes, ParamSources, Rfc6749, TokenCheck,
};
use puente_sandbox_kit::{OAuthConfig, OAuthServer, Server};

const REDIRECT: &str = "http://localhost/callback";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

struct Setup {
    server: Server,
    oauth: Arc<OAuthServer>,
    http: reqwest::Client,
}

/// A protected resource: 200 for an active bearer token, 401 otherwise.
async fn me(State(oauth): State<Arc<OAuthServer>>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match oauth.check(token) {
        TokenCheck::Active(_) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn setup(rotate: bool) -> Setup {
    setup_reading(rotate, ParamSources::default()).await
}

/// A server whose token and revocation endpoints also read `params`.
async fn setup_reading(rotate: bool, params: ParamSources) -> Setup {
    let mut config = OAuthConfig::new(OAuthClient::new("app-1", "s3cret/+&="));
    config.rotate_refresh_tokens = rotate;
    config.access_ttl = Duration::from_secs(600);
    let oauth = Arc::new(OAuthServer::new(config));
    let app = oauth::router(
        oauth.clone(),
        Rfc6749,
        &OAuthRoutes {
            authorize: vec!["/oauth/authorize".into()],
            token: vec!["/oauth/token".into()],
            revoke: vec!["/oauth/revoke".into()],
            params,
        },
    )
    .merge(
        Router::new()
            .route("/me", get(me))
            .with_state(oauth.clone()),
    );
    Setup {
        server: Server::local(app).await.unwrap(),
        oauth,
        // Redirects are read, not followed (the authorize step).
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

impl Setup {
    fn client(&self, secret: &str) -> Client {
        let url = self.server.url();
        BasicClient::new(ClientId::new("app-1".into()))
            .set_client_secret(ClientSecret::new(secret.into()))
            .set_auth_uri(AuthUrl::new(format!("{url}/oauth/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(format!("{url}/oauth/token")).unwrap())
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    }

    /// The authorize step as a browser takes it: the code from the redirect,
    /// after checking the state came back.
    async fn code(&self, client: &Client) -> String {
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("crm.read".into()))
            .add_scope(Scope::new("crm.write".into()))
            .url();
        let r = self.http.get(url.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(to.as_str().starts_with(REDIRECT), "{to}");
        let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
        assert_eq!(q["state"], *state.secret(), "the state comes back");
        q["code"].clone()
    }

    async fn install(&self, client: &Client) -> BasicTokenResponse {
        let code = self.code(client).await;
        client
            .exchange_code(AuthorizationCode::new(code))
            .request_async(&self.http)
            .await
            .unwrap()
    }

    async fn me(&self, token: &str) -> u16 {
        self.http
            .get(format!("{}/me", self.server.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn refused<RE: std::error::Error>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> BasicErrorResponseType {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().clone(),
        other => panic!("expected an OAuth error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn the_authorization_code_grant_with_basic_auth_and_a_kept_refresh_token() {
    let s = setup(false).await;
    let client = s.client("s3cret/+&=");
    let t = s.install(&client).await;
    assert_eq!(t.expires_in(), Some(Duration::from_secs(600)));
    let scopes: Vec<&str> = t.scopes().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["crm.read", "crm.write"]);
    assert_eq!(s.me(t.access_token().secret()).await, 200);

    // Expired access tokens are refused; a refresh gives a working one and
    // the same refresh token, which keeps working.
    s.oauth.expire_access_tokens();
    assert_eq!(s.me(t.access_token().secret()).await, 401);
    let rt = t.refresh_token().unwrap().clone();
    for _ in 0..2 {
        let r = client
            .exchange_refresh_token(&rt)
            .request_async(&s.http)
            .await
            .unwrap();
        assert_eq!(r.refresh_token().unwrap().secret(), rt.secret());
        assert_eq!(s.me(r.access_token().secret()).await, 200);
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_old_one_which_is_refused() {
    let s = setup(true).await;
    let client = s.client("s3cret/+&=").set_auth_type(AuthType::RequestBody);
    let t = s.install(&client).await;
    let first = t.refresh_token().unwrap().clone();
    let r = client
        .exchange_refresh_token(&first)
        .request_async(&s.http)
        .await
        .unwrap();
    let second = r.refresh_token().unwrap().clone();
    assert_ne!(second.secret(), first.secret());
    assert_eq!(s.me(r.access_token().secret()).await, 200);
    let e = client
        .exchange_refresh_token(&first)
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::InvalidGrant);
    client
        .exchange_refresh_token(&second)
        .request_async(&s.http)
        .await
        .unwrap();
}

#[tokio::test]
async fn client_credentials_give_an_access_token_and_no_refresh_token() {
    let s = setup(false).await;
    let t = s
        .client("s3cret/+&=")
        .exchange_client_credentials()
        .add_scope(Scope::new("crm.read".into()))
        .request_async(&s.http)
        .await
        .unwrap();
    assert!(t.refresh_token().is_none());
    assert_eq!(s.me(t.access_token().secret()).await, 200);
}

#[tokio::test]
async fn refusals_carry_the_rfc_codes() {
    let s = setup(false).await;
    let e = s
        .client("wrong")
        .exchange_client_credentials()
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::InvalidClient);

    // A code is good once.
    let client = s.client("s3cret/+&=");
    let code = s.code(&client).await;
    client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .request_async(&s.http)
        .await
        .unwrap();
    let e = client
        .exchange_code(AuthorizationCode::new(code))
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::InvalidGrant);

    let e = client
        .exchange_refresh_token(&RefreshToken::new("rt-made-up".into()))
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::InvalidGrant);

    // Grants the server does not take.
    let e = client
        .exchange_password(
            &oauth2::ResourceOwnerUsername::new("u".into()),
            &oauth2::ResourceOwnerPassword::new("p".into()),
        )
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::UnsupportedGrantType);

    // An unknown client never gets a code.
    let r = s
        .http
        .get(format!(
            "{}/oauth/authorize?client_id=nobody&redirect_uri={REDIRECT}",
            s.server.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let s = setup(false).await;
    let client = s.client("s3cret/+&=");
    let t = s.install(&client).await;
    let revoke = |token: String| {
        let http = s.http.clone();
        let url = format!("{}/oauth/revoke", s.server.url());
        async move {
            http.post(url)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(revoke(t.access_token().secret().clone()).await, 200);
    assert_eq!(s.me(t.access_token().secret()).await, 401);
    assert_eq!(
        revoke(t.refresh_token().unwrap().secret().clone()).await,
        200
    );
    let e = client
        .exchange_refresh_token(t.refresh_token().unwrap())
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(refused(e), BasicErrorResponseType::InvalidGrant);
    assert_eq!(revoke("never-issued".into()).await, 200, "RFC 7009");
}

/// A refresh token issued through the code grant, for the tests below that
/// send their token requests by hand.
async fn refresh_token(s: &Setup) -> String {
    let client = s.client("s3cret/+&=");
    s.install(&client)
        .await
        .refresh_token()
        .unwrap()
        .secret()
        .clone()
}

fn refresh_fields(rt: &str) -> [(&'static str, String); 4] {
    [
        ("client_id", "app-1".to_string()),
        ("client_secret", "s3cret/+&=".to_string()),
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", rt.to_string()),
    ]
}

/// The refresh request's fields as a multipart/form-data body.
fn multipart(rt: &str) -> reqwest::multipart::Form {
    refresh_fields(rt)
        .into_iter()
        .fold(reqwest::multipart::Form::new(), |form, (k, v)| {
            form.text(k, v)
        })
}

/// The JSON answer of a token request.
async fn answer(r: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_multipart_body_and_the_query_string_are_read_where_the_vendor_reads_them() {
    let s = setup_reading(
        false,
        ParamSources {
            query: true,
            multipart: true,
        },
    )
    .await;
    let rt = refresh_token(&s).await;
    let url = format!("{}/oauth/token", s.server.url());

    // A multipart/form-data body, as reqwest (and Zoho's Node client) send it.
    let (status, body) = answer(s.http.post(&url).multipart(multipart(&rt))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.me(body["access_token"].as_str().unwrap()).await, 200);

    // Every parameter in the query string, with an empty body.
    let (status, body) = answer(s.http.post(&url).query(&refresh_fields(&rt))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.me(body["access_token"].as_str().unwrap()).await, 200);

    // Both: the body's value wins over the query's.
    let (status, body) = answer(
        s.http
            .post(&url)
            .query(&[("refresh_token", "not-this-one")])
            .form(&refresh_fields(&rt)),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A revocation read from a multipart body ends the refresh token.
    let form = reqwest::multipart::Form::new().text("token", rt.clone());
    let r = s
        .http
        .post(format!("{}/oauth/revoke", s.server.url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = answer(s.http.post(&url).form(&refresh_fields(&rt))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn by_default_only_a_form_body_is_read() {
    let s = setup(false).await;
    let rt = refresh_token(&s).await;
    let url = format!("{}/oauth/token", s.server.url());
    // Neither a multipart body nor the query string authenticates a client.
    let (status, body) = answer(s.http.post(&url).multipart(multipart(&rt))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = answer(s.http.post(&url).query(&refresh_fields(&rt))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // The same parameters in a form body are granted.
    let (status, body) = answer(s.http.post(&url).form(&refresh_fields(&rt))).await;
    assert_eq!(status, 200, "{body}");
}
