//! The OAuth client: refresh before expiry, tokens kept across a restart
//! (a new session on the same store), refresh tokens replaced on every
//! refresh and the chain kept by two processes sharing one store, a
//! re-authorization winning over stored tokens, refusals as clear auth
//! errors that show no secret, client credentials, and the
//! authorization-code grant with its `state` checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use puente_core::{ErrorKind, TokenCache};
use puente_http::oauth::{ClientAuth, Flow, OAuthApp, OAuthSession, Provider, Secret};
use puente_http::{Governor, HttpClient, Limit, RetryPolicy};
use puente_hubspot_sandbox::{Running, SandboxOptions};
use puente_sandbox_kit::oauth::{self, OAuthClient, OAuthRoutes, Rfc6749, TokenCheck};
use puente_sandbox_kit::{OAuthConfig, OAuthServer, Server};

const REDIRECT: &str = "http://localhost/cb";
/// A secret that needs escaping in a form and in HTTP Basic.
const KIT_SECRET: &str = "s3cret/+&=";

/// A token store in memory: what the engine's vault is to a connector.
#[derive(Default)]
struct Store(Mutex<Option<String>>);

#[async_trait::async_trait]
impl TokenCache for Store {
    async fn load(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }

    async fn store(&self, value: &str) {
        *self.0.lock().unwrap() = Some(value.to_string());
    }
}

impl Store {
    fn stored(&self) -> serde_json::Value {
        serde_json::from_str(self.0.lock().unwrap().as_deref().unwrap()).unwrap()
    }
}

type Step = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Another process's view of a shared store: when armed, its next read
/// returns what the store held, after `step` (the other process's work)
/// has run, as when the two interleave.
struct Interleaved {
    store: Arc<Store>,
    step: Mutex<Option<Step>>,
}

#[async_trait::async_trait]
impl TokenCache for Interleaved {
    async fn load(&self) -> Option<String> {
        let read = self.store.load().await;
        let step = self.step.lock().unwrap().take();
        if let Some(step) = step {
            step.await;
        }
        read
    }

    async fn store(&self, value: &str) {
        self.store.store(value).await
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows an authorize URL as a browser whose user approves: the URL the
/// vendor redirects back to.
async fn approve(url: &str) -> String {
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 302, "{url}");
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Everything an error shows.
fn shown(e: &puente_core::ConnectorError) -> String {
    format!("{e} {e:?} {:?}", e.hint)
}

// --- HubSpot's sandbox: refresh tokens that stay. ---

fn hubspot(sb: &Running) -> Provider {
    let mut p = Provider::new("HubSpot", format!("{}/oauth/v1/token", sb.url));
    p.authorize_url = Some(format!("{}/oauth/authorize", sb.url));
    p
}

fn hubspot_app(sb: &Running, p: Provider) -> OAuthApp {
    OAuthApp::new(
        p,
        "sandbox-client-id",
        Secret::new(sb.sandbox.opts.client_secret.clone()),
    )
}

async fn installed(sb: &Running) -> Secret {
    let t = sb
        .install_app(&["crm.objects.contacts.read"])
        .await
        .unwrap();
    Secret::new(t["refresh_token"].as_str().unwrap())
}

/// Whether HubSpot's API takes the token.
async fn hubspot_takes(sb: &Running, token: &Secret) -> bool {
    http()
        .get(format!("{}/crm/v3/objects/contacts?limit=1", sb.url))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refreshed_before_they_expire_and_kept_across_a_restart() {
    let sb = Running::start(SandboxOptions {
        access_token_ttl: Duration::from_secs(60),
        ..SandboxOptions::unthrottled()
    })
    .await
    .unwrap();
    let refresh = installed(&sb).await;
    let mut p = hubspot(&sb);
    // Due for refresh once less than 55 of its 60 seconds are left.
    p.refresh_margin = Duration::from_secs(55);
    let store = Arc::new(Store::default());
    let session = |store: &Arc<Store>| {
        OAuthSession::new(
            hubspot_app(&sb, p.clone()),
            Flow::RefreshToken(refresh.clone()),
            Some(store.clone() as Arc<dyn TokenCache>),
        )
    };
    let s = session(&store);
    let issued = sb.sandbox.access_tokens().len();
    let first = s.access_token().await.unwrap();
    assert!(hubspot_takes(&sb, &first).await);
    assert!(
        s.access_token().await.unwrap().same_as(&first),
        "reused while fresh"
    );
    assert_eq!(sb.sandbox.access_tokens().len(), issued + 1);
    // HubSpot's own fields of the answer are kept.
    let set = s.token_set().await.unwrap();
    assert_eq!(set.extra["hub_id"], 62_515);
    assert_eq!(
        set.refresh_token.unwrap().expose(),
        refresh.expose(),
        "kept"
    );

    // A restart: a new session on the same store uses the stored token.
    drop(s);
    let s = session(&store);
    assert!(s.access_token().await.unwrap().same_as(&first));
    assert_eq!(sb.sandbox.access_tokens().len(), issued + 1, "no refresh");

    // Within the margin: refreshed while the old token still works.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let second = s.access_token().await.unwrap();
    assert!(!second.same_as(&first));
    assert!(
        hubspot_takes(&sb, &first).await,
        "refreshed before it expired"
    );
    assert!(hubspot_takes(&sb, &second).await);
    assert_eq!(store.stored()["access_token"], second.expose());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_refresh_token_is_a_clear_auth_error_that_shows_no_secret() {
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let refresh = installed(&sb).await;
    let s = OAuthSession::new(
        hubspot_app(&sb, hubspot(&sb)),
        Flow::RefreshToken(refresh.clone()),
        None,
    );
    let token = s.access_token().await.unwrap();
    // The app is uninstalled; the API refuses the access token it had.
    sb.sandbox.revoke_refresh_token(refresh.expose());
    sb.sandbox.expire_access_tokens();
    assert!(!hubspot_takes(&sb, &token).await);
    let e = s.rejected(&token).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(
        e.message
            .starts_with("HubSpot refused to refresh the OAuth token (invalid_grant"),
        "{e}"
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("authorize the app again"),
        "{e:?}"
    );
    for secret in [
        refresh.expose(),
        token.expose(),
        sb.sandbox.opts.client_secret.as_str(),
    ] {
        assert!(!shown(&e).contains(secret), "{}", shown(&e));
        assert!(!format!("{s:?}").contains(secret), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_authorization_in_the_config_wins_over_stored_tokens() {
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let store = Arc::new(Store::default());
    let session = |refresh: &Secret| {
        OAuthSession::new(
            hubspot_app(&sb, hubspot(&sb)),
            Flow::RefreshToken(refresh.clone()),
            Some(store.clone() as Arc<dyn TokenCache>),
        )
    };
    let old = installed(&sb).await;
    let before = session(&old).access_token().await.unwrap();
    // The account is authorized again (maybe another one): the config now
    // holds the new refresh token, and the old one is revoked.
    let new = installed(&sb).await;
    sb.sandbox.revoke_refresh_token(old.expose());
    let s = session(&new);
    let after = s.access_token().await.unwrap();
    assert!(
        !after.same_as(&before),
        "the stored token descends from the old authorization"
    );
    assert_eq!(
        s.token_set().await.unwrap().refresh_token.unwrap().expose(),
        new.expose()
    );
    assert_eq!(store.stored()["access_token"], after.expose());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_code_grant_checks_the_state_and_keeps_the_answer() {
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let app = hubspot_app(&sb, hubspot(&sb));
    let auth = app
        .authorize(
            REDIRECT,
            &["crm.objects.contacts.read", "crm.objects.contacts.write"],
        )
        .unwrap();
    assert!(
        auth.url
            .contains("scope=crm.objects.contacts.read+crm.objects.contacts.write"),
        "{}",
        auth.url
    );
    let back = approve(&auth.url).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    // A redirect that did not come from this authorization is refused.
    let forged = back.replace("state=", "state=x");
    let e = auth.code_from(&forged).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("state"), "{e}");
    let code = auth.code_from(&back).unwrap();
    let set = app.exchange_code(&code, Some(REDIRECT)).await.unwrap();
    assert!(hubspot_takes(&sb, &set.access_token).await);
    assert!(set.refresh_token.is_some());
    assert_eq!(set.extra["scopes"][1], "crm.objects.contacts.write");
    assert!((1790..=1800).contains(&set.expires_in()), "{set:?}");
    // A code is good once.
    let e = app.exchange_code(&code, Some(REDIRECT)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("authorize the app again"),
        "{e:?}"
    );
    assert!(!shown(&e).contains(code.expose()), "{}", shown(&e));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_requests_go_through_the_pinned_governed_client() {
    let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
    let refresh = installed(&sb).await;
    let lane = Arc::new(Governor::new(Limit::per(10, Duration::from_secs(1)), None));
    let http = HttpClient::new(RetryPolicy::default(), &sb.url);
    let app = hubspot_app(&sb, hubspot(&sb)).with_transport(http.clone(), lane.clone(), None);
    app.refresh(&refresh).await.unwrap();
    assert_eq!(http.stats.snapshot().requests, 1);
    assert_eq!(lane.used().0, 1);
    // A client pinned elsewhere refuses to send the credentials at all.
    let elsewhere = HttpClient::new(RetryPolicy::default(), "http://127.0.0.1:9");
    let app = hubspot_app(&sb, hubspot(&sb)).with_transport(elsewhere.clone(), lane, None);
    let e = app.refresh(&refresh).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable);
    assert!(e.message.contains("refused to call"), "{e}");
    assert_eq!(elsewhere.stats.snapshot().requests, 0);
}

// --- The kit's server, refresh tokens replaced on every refresh. ---

struct Kit {
    server: Server,
    oauth: Arc<OAuthServer>,
}

async fn kit(rotate: bool) -> Kit {
    let mut config = OAuthConfig::new(OAuthClient::new("app-1", KIT_SECRET));
    config.rotate_refresh_tokens = rotate;
    config.access_ttl = Duration::from_secs(60);
    let oauth = Arc::new(OAuthServer::new(config));
    let app = oauth::router(
        oauth.clone(),
        Rfc6749,
        &OAuthRoutes {
            authorize: vec!["/oauth/authorize".into()],
            token: vec!["/oauth/token".into()],
            revoke: vec![],
            ..OAuthRoutes::default()
        },
    );
    Kit {
        server: Server::local(app).await.unwrap(),
        oauth,
    }
}

impl Kit {
    /// The vendor as Bitrix24 is: Basic client authentication here (the
    /// RFC's other way), scopes joined by commas. Refreshed when less than
    /// two minutes are left: every 60-second token is due at once, so each
    /// call refreshes.
    fn provider(&self) -> Provider {
        let mut p = Provider::new("Acme", format!("{}/oauth/token", self.server.url()));
        p.authorize_url = Some(format!("{}/oauth/authorize", self.server.url()));
        p.client_auth = ClientAuth::Basic;
        p.scope_separator = ",";
        p.refresh_margin = Duration::from_secs(120);
        p
    }

    fn app(&self, secret: &str) -> OAuthApp {
        OAuthApp::new(self.provider(), "app-1", Secret::new(secret))
    }

    /// The refresh token an authorization gives.
    async fn authorized(&self) -> Secret {
        let app = self.app(KIT_SECRET);
        let auth = app.authorize(REDIRECT, &["crm", "user"]).unwrap();
        assert!(auth.url.contains("scope=crm%2Cuser"), "{}", auth.url);
        let code = auth.code_from(&approve(&auth.url).await).unwrap();
        let set = app.exchange_code(&code, Some(REDIRECT)).await.unwrap();
        assert_eq!(set.scopes, ["crm", "user"]);
        set.refresh_token.unwrap()
    }

    fn valid(&self, refresh: &str) -> bool {
        self.oauth.refresh_token(refresh).is_some()
    }

    fn active(&self, token: &Secret) -> bool {
        matches!(self.oauth.check(token.expose()), TokenCheck::Active(_))
    }

    fn session(&self, root: &Secret, store: Option<Arc<dyn TokenCache>>) -> OAuthSession {
        OAuthSession::new(
            self.app(KIT_SECRET),
            Flow::RefreshToken(root.clone()),
            store,
        )
    }
}

fn stored_refresh(store: &Store) -> String {
    store.stored()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_refresh_token_is_kept_across_a_restart() {
    let k = kit(true).await;
    let root = k.authorized().await;
    let store = Arc::new(Store::default());
    let s = k.session(&root, Some(store.clone()));
    let first = s.access_token().await.unwrap();
    assert!(k.active(&first));
    let r1 = stored_refresh(&store);
    assert!(!k.valid(root.expose()), "the root was replaced");
    assert!(k.valid(&r1));
    let second = s.access_token().await.unwrap();
    let r2 = stored_refresh(&store);
    assert!(!second.same_as(&first) && r2 != r1 && k.valid(&r2) && !k.valid(&r1));

    // A restart: the configured root is spent, the stored token carries on.
    drop(s);
    let s = k.session(&root, Some(store.clone()));
    let third = s.access_token().await.unwrap();
    assert!(k.active(&third));
    assert!(k.valid(&stored_refresh(&store)) && !k.valid(&r2));

    // Without the store, the spent root is all there is: a clear error.
    let e = k.session(&root, None).access_token().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(
        e.message
            .starts_with("Acme refused to refresh the OAuth token (invalid_grant"),
        "{e}"
    );
    assert!(e
        .hint
        .as_deref()
        .unwrap()
        .contains("authorize the app again"));
    assert!(!shown(&e).contains(root.expose()) && !shown(&e).contains(KIT_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_sharing_a_store_keep_the_chain() {
    let k = kit(true).await;
    let root = k.authorized().await;
    let store = Arc::new(Store::default());
    let a = Arc::new(k.session(&root, Some(store.clone())));
    let b_view = Arc::new(Interleaved {
        store: store.clone(),
        step: Mutex::new(None),
    });
    let b = k.session(&root, Some(b_view.clone()));

    // One after the other: each reads what the other stored first.
    a.access_token().await.unwrap();
    b.access_token().await.unwrap();
    a.access_token().await.unwrap();

    // Interleaved: b reads the store, then a refreshes (replacing the
    // refresh token b read), then b refreshes with what it read. The
    // server refuses it; b reads the store once more and carries on with
    // the token a stored.
    let a2 = a.clone();
    *b_view.step.lock().unwrap() = Some(Box::pin(async move {
        a2.access_token().await.unwrap();
    }));
    let read_by_b = stored_refresh(&store);
    let token = b.access_token().await.unwrap();
    assert!(b_view.step.lock().unwrap().is_none(), "a ran in between");
    assert!(!k.valid(&read_by_b));
    assert!(k.active(&token));
    // One chain, its head in the store; a carries on from it.
    let head = stored_refresh(&store);
    assert!(k.valid(&head));
    assert!(k.active(&a.access_token().await.unwrap()));
    assert!(k.valid(&stored_refresh(&store)) && !k.valid(&head));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_are_granted_and_reused_after_a_restart() {
    let k = kit(false).await;
    let store = Arc::new(Store::default());
    let session = |secret: &str, store: Option<Arc<dyn TokenCache>>| {
        let mut p = k.provider();
        p.refresh_margin = Duration::from_secs(10);
        OAuthSession::new(
            OAuthApp::new(p, "app-1", Secret::new(secret)),
            Flow::ClientCredentials {
                scopes: vec!["crm.read".into()],
                params: vec![],
            },
            store,
        )
    };
    let s = session(KIT_SECRET, Some(store.clone()));
    let token = s.access_token().await.unwrap();
    match k.oauth.check(token.expose()) {
        TokenCheck::Active(t) => assert_eq!(t.scopes, ["crm.read"]),
        other => panic!("{other:?}"),
    }
    assert!(s.token_set().await.unwrap().refresh_token.is_none());
    let issued = k.oauth.access_tokens().len();
    let again = session(KIT_SECRET, Some(store.clone()))
        .access_token()
        .await
        .unwrap();
    assert!(again.same_as(&token));
    assert_eq!(
        k.oauth.access_tokens().len(),
        issued,
        "reused after a restart"
    );
    // A wrong secret: refused, and said so without showing it.
    let e = session("wrong-secret", None)
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("client_secret"));
    assert!(!shown(&e).contains("wrong-secret"));
}
