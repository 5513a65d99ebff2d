//! `puente.toml`: parsing, and static checks that name the file, the line
//! and the fix. Checks that need the systems themselves (do the fields
//! exist? do the picklists agree?) are in `compile`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use puente_core::normalize::KeyNormalizer;
use puente_core::FieldType;
use puente_plan::{ConflictPolicy, DeletePolicy, Direction, Expr};
use serde::Deserialize;
use toml::Spanned;

/// One problem in a config file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub message: String,
    pub fix: Option<String>,
    /// Warnings do not stop a run.
    pub warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning: " } else { "" };
        write!(f, "{}:{}: {level}{}", self.file, self.line, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// A secret (or a URL that may hold one): inline, or a reference.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// Sealed in the state store (`puente secrets set NAME`).
    Vault {
        vault: String,
    },
}

/// Where the secret key comes from when `[state] key` does not say.
pub const KEY_ENV: &str = "PUENTE_SECRET_KEY";
pub const KEY_FILE_ENV: &str = "PUENTE_SECRET_KEY_FILE";

/// The vault's secrets a config refers to, opened before the config is
/// checked (checking is synchronous; the store is not).
#[derive(Default)]
pub struct VaultSnapshot {
    opened: BTreeMap<String, Result<String, String>>,
    /// Why nothing could be opened (no key, no store), if so.
    unavailable: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state: Option<RawState>,
    pub serve: Option<Spanned<RawServe>>,
    #[serde(default)]
    pub connections: BTreeMap<String, Spanned<RawConnection>>,
    #[serde(default)]
    pub syncs: Vec<Spanned<RawSync>>,
}

/// `[serve]`: how `puente serve` listens and whom it lets in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub listen: Option<Spanned<String>>,
    pub admin_token: Option<Spanned<Secret>>,
    pub public_url: Option<Spanned<String>>,
    pub alerts: Option<Spanned<RawAlerts>>,
}

/// `[serve.alerts]`: where severe errors are sent, and the thresholds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub webhook_url: Option<Spanned<Secret>>,
    pub smtp_url: Option<Spanned<Secret>>,
    pub email_from: Option<String>,
    #[serde(default)]
    pub email_to: Vec<String>,
    pub connection_down_secs: Option<u64>,
    pub failure_rate: Option<f64>,
    pub budget_share: Option<f64>,
    pub check_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub url: Option<Spanned<Secret>>,
    /// The key that seals the vault: `{ env = … }` or `{ file = … }`.
    pub key: Option<Spanned<Secret>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    pub kind: Spanned<String>,
    pub url: Option<Spanned<Secret>>,
    pub dir: Option<Spanned<String>>,
    /// CRM connections: a private-app token.
    pub token: Option<Spanned<Secret>>,
    /// CRM connections: the API's address (a sandbox's for rehearsals).
    pub base_url: Option<Spanned<String>>,
    /// CRM connections (OAuth): the app and a refresh token.
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<Secret>>,
    pub refresh_token: Option<Spanned<Secret>>,
    /// The secret incoming webhooks are signed with.
    pub webhook_secret: Option<Spanned<Secret>>,
    pub rate_limit_per_10s: Option<u32>,
    /// SQL connections: how long a write waits for a lock another
    /// transaction holds before its row fails (default 10).
    pub lock_timeout_secs: Option<Spanned<f64>>,
    /// Webhook connections: the header carrying the body's HMAC-SHA256
    /// (without it, `token` is a bearer token).
    pub signature_header: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub connection: Spanned<String>,
    pub object: Spanned<String>,
    pub cursor: Option<Spanned<String>>,
    pub query: Option<String>,
    pub key: Option<String>,
    pub overlap_secs: Option<u64>,
    pub page_size: Option<usize>,
    pub filter: Option<Spanned<String>>,
    pub delimiter: Option<String>,
    /// CRM objects: how often a full read reconciles what searches and
    /// webhooks missed (association changes among them).
    pub reconcile_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub a: Spanned<String>,
    pub b: Spanned<String>,
    pub normalize: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    pub a: Spanned<String>,
    pub b: Spanned<String>,
    pub direction: Option<Spanned<String>>,
    pub values: Option<Spanned<BTreeMap<String, String>>>,
    pub owner: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub ty: Option<Spanned<String>>,
    pub a_to_b: Option<Spanned<String>>,
    pub b_to_a: Option<Spanned<String>>,
    #[serde(rename = "ref")]
    pub parent: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub name: Spanned<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub direction: Option<Spanned<String>>,
    pub winner: Option<Spanned<String>>,
    pub conflict: Option<Spanned<String>>,
    pub a: Spanned<RawEndpoint>,
    pub b: Spanned<RawEndpoint>,
    #[serde(rename = "match", default)]
    pub match_: Vec<Spanned<RawMatch>>,
    #[serde(default)]
    pub fields: Vec<Spanned<RawField>>,
    pub deletes: Option<Spanned<String>>,
    pub delete_check_interval_secs: Option<u64>,
    pub phone_region: Option<String>,
    pub batch_size: Option<usize>,
    /// `puente serve`: incremental reads this often.
    pub poll_interval_secs: Option<u64>,
    /// `puente serve`: when full reconciliations run ("hourly", "daily at 03:00", …).
    pub reconcile: Option<Spanned<String>>,
    /// `puente serve`: after a webhook, wait until records are quiet this long.
    pub debounce_secs: Option<u64>,
    /// `all_at_once` (default) or `gradual`: the initial read (backfill)
    /// only inside `backfill_window`, spending at most
    /// `backfill_budget_share` of the API's daily budget.
    pub exchange: Option<Spanned<String>>,
    pub backfill_window: Option<Spanned<String>>,
    pub backfill_budget_share: Option<Spanned<f64>>,
}

fn yes() -> bool {
    true
}

/// How a connection reaches its system, secrets resolved.
#[derive(Clone)]
pub enum ConnectionDef {
    Sql {
        kind: String,
        url: String,
        lock_timeout: std::time::Duration,
    },
    Csv {
        dir: PathBuf,
    },
    HubSpot(puente_hubspot::Settings),
    Webhook {
        dir: PathBuf,
        auth: puente_webhook::WebhookAuth,
    },
}

impl fmt::Debug for ConnectionDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log: the URL's password is masked.
        match self {
            ConnectionDef::Sql {
                kind,
                url,
                lock_timeout,
            } => f
                .debug_struct("Sql")
                .field("kind", kind)
                .field("url", &puente_sql::redact(url))
                .field("lock_timeout", lock_timeout)
                .finish(),
            ConnectionDef::Csv { dir } => f.debug_struct("Csv").field("dir", dir).finish(),
            ConnectionDef::HubSpot(s) => f.debug_tuple("HubSpot").field(s).finish(),
            ConnectionDef::Webhook { dir, auth } => f
                .debug_struct("Webhook")
                .field("dir", dir)
                .field("auth", auth)
                .finish(),
        }
    }
}

/// Shows whether a secret is set, never what it is.
fn masked(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "***")
}

/// One field mapping, checked.
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub a: String,
    pub b: String,
    pub direction: Direction,
    pub values: BTreeMap<String, String>,
    pub owner: Option<puente_core::Side>,
    pub ty: Option<FieldType>,
    pub a_to_b: Option<Expr>,
    pub b_to_a: Option<Expr>,
    pub parent: Option<String>,
    pub line: usize,
}

#[derive(Clone, Debug)]
/// One side of a sync: a connection's object.
pub struct EndpointDef {
    pub connection: String,
    pub spec: puente_core::ObjectSpec,
    pub filter: Option<Expr>,
    pub line: usize,
}

impl EndpointDef {
    /// `connection.object`, as the dashboard and messages name a side.
    pub fn label(&self) -> String {
        format!("{}.{}", self.connection, self.spec.object)
    }
}

#[derive(Clone, Debug)]
pub struct MatchDef {
    pub a: String,
    pub b: String,
    pub normalizer: KeyNormalizer,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub struct SyncDef {
    pub name: String,
    pub enabled: bool,
    pub direction: Direction,
    pub winner: puente_core::Side,
    pub policy: ConflictPolicy,
    pub a: EndpointDef,
    pub b: EndpointDef,
    pub keys: Vec<MatchDef>,
    pub fields: Vec<FieldDef>,
    pub deletes: DeletePolicy,
    pub delete_check_interval_secs: u64,
    pub phone_region: Option<String>,
    pub batch_size: Option<usize>,
    pub schedule: crate::schedule::Schedule,
    /// A gradual exchange: how the initial read is spread out.
    pub backfill: Option<crate::schedule::Backfill>,
    pub line: usize,
}

/// `[serve]`, checked; secrets resolved.
#[derive(Clone, Default)]
pub struct ServeDef {
    pub listen: Option<String>,
    pub admin_token: Option<String>,
    pub public_url: Option<String>,
    pub alerts: AlertsDef,
}

impl fmt::Debug for ServeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeDef")
            .field("listen", &self.listen)
            .field("admin_token", &masked(&self.admin_token))
            .field("public_url", &self.public_url)
            .field("alerts", &self.alerts)
            .finish()
    }
}

/// `[serve.alerts]`: where severe errors go and when they fire.
#[derive(Clone)]
pub struct AlertsDef {
    /// POSTed `{"text": …, "alert": {…}}` (Slack's incoming webhooks read `text`).
    pub webhook_url: Option<String>,
    /// `smtp://host:port` (STARTTLS when offered), `smtps://host:port` (TLS).
    pub smtp_url: Option<String>,
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
    /// A connection failing this long is down.
    pub connection_down_secs: u64,
    /// Failed records over (in sync + failed) above this share.
    pub failure_rate: f64,
    /// A daily API budget used beyond this share.
    pub budget_share: f64,
    /// How often the thresholds are checked.
    pub check_secs: u64,
}

impl fmt::Debug for AlertsDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Slack hook URL is itself the credential; an SMTP URL may hold one.
        f.debug_struct("AlertsDef")
            .field("webhook_url", &masked(&self.webhook_url))
            .field("smtp_url", &masked(&self.smtp_url))
            .field("email_from", &self.email_from)
            .field("email_to", &self.email_to)
            .field("connection_down_secs", &self.connection_down_secs)
            .field("failure_rate", &self.failure_rate)
            .field("budget_share", &self.budget_share)
            .field("check_secs", &self.check_secs)
            .finish()
    }
}

impl Default for AlertsDef {
    fn default() -> Self {
        AlertsDef {
            webhook_url: None,
            smtp_url: None,
            email_from: None,
            email_to: Vec::new(),
            connection_down_secs: 600,
            failure_rate: 0.2,
            budget_share: 0.9,
            check_secs: 15,
        }
    }
}

impl ConnectionDef {
    pub fn kind(&self) -> &str {
        match self {
            ConnectionDef::Sql { kind, .. } => kind,
            ConnectionDef::Csv { .. } => "csv",
            ConnectionDef::HubSpot(_) => "hubspot",
            ConnectionDef::Webhook { .. } => "webhook",
        }
    }
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub state_url: String,
    /// The key that seals secrets in the state store, if one is set.
    pub secret_key: Option<puente_state::SecretKey>,
    pub connections: BTreeMap<String, ConnectionDef>,
    /// In dependency order: a sync comes after the syncs its references name.
    pub syncs: Vec<SyncDef>,
    pub serve: ServeDef,
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    pub fn sync(&self, name: &str) -> Option<&SyncDef> {
        self.syncs.iter().find(|s| s.name == name)
    }
}

struct Checker<'a> {
    file: String,
    src: &'a str,
    base: PathBuf,
    vault: &'a VaultSnapshot,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(src: &'a str, path: &Path, vault: &'a VaultSnapshot) -> Checker<'a> {
        Checker {
            file: path.display().to_string(),
            src,
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            vault,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    fn push<T>(&mut self, span: &Spanned<T>, warning: bool, message: String, fix: Option<String>) {
        let d = Diagnostic {
            file: self.file.clone(),
            line: self.line(span.span().start),
            message,
            fix,
            warning,
        };
        if warning {
            self.warnings.push(d);
        } else {
            self.errors.push(d);
        }
    }

    fn err<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        self.push(span, false, message.into(), fix.into());
    }

    fn warn<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        self.push(span, true, message.into(), fix.into());
    }

    fn secret(&mut self, s: &Spanned<Secret>, what: &str) -> Option<String> {
        match s.get_ref() {
            Secret::Inline(v) => {
                if v.contains("://") && puente_sql_has_password(v) {
                    self.warn(
                        s,
                        format!("{what} holds a password inline"),
                        Some(format!(
                            "write {what} = {{ env = \"VAR\" }} and put the url in that variable"
                        )),
                    );
                }
                Some(v.clone())
            }
            Secret::Env { env } => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    self.err(
                        s,
                        format!("{what}: environment variable {env} is not set"),
                        Some(format!("export {env}=… before running puente")),
                    );
                    None
                }
            },
            Secret::Vault { vault } => match self.vault.opened.get(vault) {
                Some(Ok(v)) => Some(v.clone()),
                Some(Err(e)) => {
                    self.err(s, format!("{what}: {e}"), None);
                    None
                }
                None => {
                    let (message, fix) = match &self.vault.unavailable {
                        Some(why) => (format!("{what}: cannot open the vault: {why}"), None),
                        None => (
                            format!("{what}: the vault holds no secret named {vault:?}"),
                            Some(format!("store it: puente secrets set {vault}")),
                        ),
                    };
                    self.err(s, message, fix);
                    None
                }
            },
            Secret::File { file } => {
                let path = self.base.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(v) => Some(v.trim().to_string()),
                    Err(e) => {
                        self.err(
                            s,
                            format!("{what}: cannot read {}: {e}", path.display()),
                            Some(
                                "create the file or fix its path (relative to the config file)"
                                    .into(),
                            ),
                        );
                        None
                    }
                }
            }
        }
    }
}

fn puente_sql_has_password(url: &str) -> bool {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => url[s + 3..at].contains(':'),
        _ => false,
    }
}

fn parse_enum<T>(
    c: &mut Checker<'_>,
    v: &Option<Spanned<String>>,
    what: &str,
    options: &[&str],
    parse: impl Fn(&str) -> Option<T>,
    default: T,
) -> T {
    match v {
        None => default,
        Some(s) => match parse(s.get_ref()) {
            Some(t) => t,
            None => {
                c.err(
                    s,
                    format!(
                        "{what} {:?} is not one of {}",
                        s.get_ref(),
                        options.join(", ")
                    ),
                    Some(format!("write one of: {}", options.join(", "))),
                );
                default
            }
        },
    }
}

/// The normaliser a match key gets when the config names none.
pub fn infer_normalizer(a: &str, b: &str) -> KeyNormalizer {
    let n = format!("{a} {b}").to_ascii_lowercase();
    if n.contains("email") || n.contains("e_mail") {
        KeyNormalizer::Email
    } else if n.contains("phone") || n.contains("mobile") {
        KeyNormalizer::Phone
    } else if n.contains("domain") || n.contains("website") || n.contains("url") {
        KeyNormalizer::Domain
    } else if n.contains("name") {
        KeyNormalizer::Text
    } else {
        KeyNormalizer::Exact
    }
}

fn serve_def(c: &mut Checker<'_>, sv: &Spanned<RawServe>) -> ServeDef {
    let r = sv.get_ref();
    if let Some(l) = &r.listen {
        if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
            c.err(
                l,
                format!("serve.listen {:?} is not an address", l.get_ref()),
                Some("write an IP and a port, e.g. listen = \"127.0.0.1:7300\"".to_string()),
            );
        }
    }
    if let Some(u) = &r.public_url {
        if !(u.get_ref().starts_with("https://") || u.get_ref().starts_with("http://")) {
            c.err(
                u,
                "serve.public_url must start with https:// (or http://)",
                Some("write the address users and webhook senders reach, e.g. https://puente.example.com".to_string()),
            );
        }
    }
    let admin_token = r
        .admin_token
        .as_ref()
        .and_then(|t| c.secret(t, "serve.admin_token"));
    if let (Some(t), Some(span)) = (&admin_token, &r.admin_token) {
        if t.len() < 16 {
            c.err(
                span,
                "serve.admin_token is shorter than 16 characters",
                Some(
                    "use a long random token, e.g. the output of `openssl rand -hex 32`"
                        .to_string(),
                ),
            );
        }
    }
    let mut alerts = AlertsDef::default();
    if let Some(a) = &r.alerts {
        let a_ref = a.get_ref();
        alerts.webhook_url = a_ref
            .webhook_url
            .as_ref()
            .and_then(|u| c.secret(u, "serve.alerts.webhook_url"));
        alerts.smtp_url = a_ref
            .smtp_url
            .as_ref()
            .and_then(|u| c.secret(u, "serve.alerts.smtp_url"));
        alerts.email_from = a_ref.email_from.clone();
        alerts.email_to = a_ref.email_to.clone();
        if alerts.smtp_url.is_some() && (alerts.email_from.is_none() || alerts.email_to.is_empty())
        {
            c.err(
                a,
                "serve.alerts has an smtp_url but no email_from or email_to",
                Some(
                    "add email_from = \"puente@example.com\" and email_to = [\"ops@example.com\"]"
                        .to_string(),
                ),
            );
        }
        for (what, v) in [
            ("failure_rate", a_ref.failure_rate),
            ("budget_share", a_ref.budget_share),
        ] {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                c.err(
                    a,
                    format!("serve.alerts.{what} must be between 0 and 1"),
                    Some(format!("write a share, e.g. {what} = 0.2")),
                );
            }
        }
        let d = AlertsDef::default();
        alerts.connection_down_secs = a_ref.connection_down_secs.unwrap_or(d.connection_down_secs);
        alerts.failure_rate = a_ref.failure_rate.unwrap_or(d.failure_rate);
        alerts.budget_share = a_ref.budget_share.unwrap_or(d.budget_share);
        alerts.check_secs = a_ref.check_secs.unwrap_or(d.check_secs).max(1);
    }
    ServeDef {
        listen: r.listen.as_ref().map(|l| l.get_ref().clone()),
        admin_token,
        public_url: r.public_url.as_ref().map(|u| u.get_ref().clone()),
        alerts,
    }
}

/// Reads and checks a config file, opening the vault's secrets it refers to.
pub async fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let src = read(path)?;
    let names = vault_refs(&src);
    if names.is_empty() {
        return parse(&src, path);
    }
    let (url, key) = state_settings(&src, path)?;
    let vault = VaultSnapshot::open(&url, key.as_ref(), &names).await;
    parse_with(&src, path, &vault)
}

fn read(path: &Path) -> Result<String, Vec<Diagnostic>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read the config: {e}"),
            fix: Some("create it (see examples/ and docs/config.md) or pass --config FILE".into()),
            warning: false,
        }]
    })
}

/// The names of the vault secrets (`{ vault = "NAME" }`) the config text
/// refers to; empty when it is not TOML (`parse` reports that).
fn vault_refs(src: &str) -> Vec<String> {
    fn walk(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                if let (1, Some(toml::Value::String(name))) = (t.len(), t.get("vault")) {
                    out.push(name.clone());
                }
                t.values().for_each(|v| walk(v, out));
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = src.parse::<toml::Table>() {
        walk(&toml::Value::Table(v), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

impl VaultSnapshot {
    /// A snapshot that opens nothing, saying why.
    pub fn unavailable(why: impl Into<String>) -> VaultSnapshot {
        VaultSnapshot {
            opened: BTreeMap::new(),
            unavailable: Some(why.into()),
        }
    }

    /// Opens the named secrets in the store at `url` with `key`.
    pub async fn open(
        url: &str,
        key: Option<&puente_state::SecretKey>,
        names: &[String],
    ) -> VaultSnapshot {
        let Some(key) = key else {
            return VaultSnapshot::unavailable(format!(
                "no secret key is set: export {KEY_ENV} (or {KEY_FILE_ENV}), or set [state] key = {{ file = \"…\" }}"
            ));
        };
        let store = match puente_state::StateStore::open(url).await {
            Ok(s) => s,
            Err(e) => return VaultSnapshot::unavailable(e.to_string()),
        };
        let mut opened = BTreeMap::new();
        for name in names {
            match store.secret(name, key).await {
                Ok(Some(v)) => {
                    opened.insert(name.clone(), Ok(v));
                }
                Ok(None) => {}
                Err(e) => {
                    opened.insert(name.clone(), Err(e.to_string()));
                }
            }
        }
        store.close().await;
        VaultSnapshot {
            opened,
            unavailable: None,
        }
    }
}

/// The state store's URL and the secret key, from config text, without
/// checking the rest of it (`puente secrets` needs only these).
pub fn state_settings(
    src: &str,
    path: &Path,
) -> Result<(String, Option<puente_state::SecretKey>), Vec<Diagnostic>> {
    let raw = raw_config(src, path)?;
    let vault = VaultSnapshot::unavailable("the state store's own settings cannot come from it");
    let mut c = Checker::new(src, path, &vault);
    let settings = state_of(&mut c, &raw);
    if c.errors.is_empty() {
        Ok(settings)
    } else {
        Err(c.errors)
    }
}

fn state_of(c: &mut Checker<'_>, raw: &RawConfig) -> (String, Option<puente_state::SecretKey>) {
    let state = raw.state.as_ref();
    let url = match state.and_then(|s| s.url.as_ref()) {
        Some(u) => c.secret(u, "state.url").unwrap_or_default(),
        None => "sqlite://.puente/state.db".to_string(),
    };
    let url = anchor_sqlite(&url, &c.base);
    let (text, what) = match state.and_then(|s| s.key.as_ref()) {
        Some(k) => {
            if matches!(k.get_ref(), Secret::Inline(_) | Secret::Vault { .. }) {
                c.err(
                    k,
                    "state.key must not be written in the config (it would sit beside what it protects)",
                    Some("write key = { file = \"/etc/puente/secret.key\" } or key = { env = \"VAR\" }".to_string()),
                );
                return (url, None);
            }
            (c.secret(k, "state.key"), "state.key".to_string())
        }
        None => match (std::env::var(KEY_ENV), std::env::var_os(KEY_FILE_ENV)) {
            (Ok(v), _) if !v.trim().is_empty() => (Some(v), KEY_ENV.to_string()),
            (_, Some(f)) => match std::fs::read_to_string(&f) {
                Ok(v) => (Some(v), KEY_FILE_ENV.to_string()),
                Err(e) => {
                    c.errors.push(Diagnostic {
                        file: c.file.clone(),
                        line: 0,
                        message: format!(
                            "{KEY_FILE_ENV}: cannot read {}: {e}",
                            Path::new(&f).display()
                        ),
                        fix: Some("fix the path, or unset the variable".into()),
                        warning: false,
                    });
                    (None, String::new())
                }
            },
            _ => (None, String::new()),
        },
    };
    let key = text.and_then(|t| match puente_state::SecretKey::parse(&t) {
        Ok(k) => Some(k),
        Err(e) => {
            c.errors.push(Diagnostic {
                file: c.file.clone(),
                line: 0,
                message: format!("{what}: {e}"),
                fix: None,
                warning: false,
            });
            None
        }
    });
    (url, key)
}

fn raw_config(src: &str, path: &Path) -> Result<RawConfig, Vec<Diagnostic>> {
    toml::from_str(src).map_err(|e| {
        let line = e
            .span()
            .map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        let msg = e.message().to_string();
        let fix = if msg.contains("unknown field") {
            Some("remove or correct the key; docs/config.md lists every key".to_string())
        } else if msg.contains("missing field") {
            Some("add the key; docs/config.md shows a complete example".to_string())
        } else {
            None
        };
        vec![Diagnostic {
            file: path.display().to_string(),
            line,
            message: msg.replace('\n', " ").trim().to_string(),
            fix,
            warning: false,
        }]
    })
}

/// Parses and checks config text; `path` names it in messages and anchors
/// relative paths.
pub fn parse(src: &str, path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let vault = VaultSnapshot::unavailable("the config was read without its state store");
    parse_with(src, path, &vault)
}

/// `parse`, with the vault's secrets the text refers to already opened.
pub fn parse_with(
    src: &str,
    path: &Path,
    vault: &VaultSnapshot,
) -> Result<Config, Vec<Diagnostic>> {
    let raw = raw_config(src, path)?;
    let mut c = Checker::new(src, path, vault);
    let base = c.base.clone();
    let (state_url, secret_key) = state_of(&mut c, &raw);

    let mut connections = BTreeMap::new();
    for (name, conn) in &raw.connections {
        let kind = conn.get_ref().kind.get_ref().as_str();
        match kind {
            "postgres" | "mysql" | "mariadb" | "sqlite" => {
                let Some(url) = &conn.get_ref().url else {
                    c.err(
                        conn,
                        format!("connection {name} ({kind}) has no url"),
                        Some(format!(
                            "add url = \"{kind}://…\" or url = {{ env = \"VAR\" }}"
                        )),
                    );
                    continue;
                };
                if let Some(u) = c.secret(url, &format!("connections.{name}.url")) {
                    let expected = if kind == "mariadb" { "mysql" } else { kind };
                    let scheme_ok = u.starts_with(&format!("{expected}:"))
                        || (kind == "postgres" && u.starts_with("postgresql:"))
                        || (expected == "mysql" && u.starts_with("mariadb:"));
                    if !scheme_ok {
                        c.err(url, format!("connection {name} is kind {kind} but its url does not start with {expected}://"), Some("make the kind and the url agree".to_string()));
                    }
                    let lock_timeout = match &conn.get_ref().lock_timeout_secs {
                        None => puente_sql::DEFAULT_LOCK_TIMEOUT,
                        Some(t) if *t.get_ref() > 0.0 && *t.get_ref() <= 3600.0 => {
                            std::time::Duration::from_secs_f64(*t.get_ref())
                        }
                        Some(t) => {
                            c.err(
                                t,
                                format!("connection {name}: lock_timeout_secs must be above 0 and at most 3600"),
                                Some("write lock_timeout_secs = 10".to_string()),
                            );
                            puente_sql::DEFAULT_LOCK_TIMEOUT
                        }
                    };
                    connections.insert(
                        name.clone(),
                        ConnectionDef::Sql {
                            kind: kind.to_string(),
                            url: anchor_sqlite(&u, &base),
                            lock_timeout,
                        },
                    );
                }
            }
            "csv" => {
                let dir = conn
                    .get_ref()
                    .dir
                    .as_ref()
                    .map(|d| d.get_ref().clone())
                    .unwrap_or_else(|| ".".into());
                connections.insert(
                    name.clone(),
                    ConnectionDef::Csv {
                        dir: base.join(dir),
                    },
                );
            }
            "hubspot" => {
                let r = conn.get_ref();
                let auth = match (&r.token, &r.client_id, &r.client_secret, &r.refresh_token) {
                    (Some(t), None, None, None) => c
                        .secret(t, &format!("connections.{name}.token"))
                        .map(puente_hubspot::Auth::Token),
                    (None, Some(id), Some(secret), Some(refresh)) => {
                        let secret = c.secret(secret, &format!("connections.{name}.client_secret"));
                        let refresh =
                            c.secret(refresh, &format!("connections.{name}.refresh_token"));
                        secret.zip(refresh).map(|(client_secret, refresh_token)| {
                            puente_hubspot::Auth::OAuth {
                                client_id: id.get_ref().clone(),
                                client_secret,
                                refresh_token,
                            }
                        })
                    }
                    _ => {
                        c.err(
                            conn,
                            format!("connection {name} (hubspot) needs either token, or client_id + client_secret + refresh_token"),
                            Some("write token = { env = \"HUBSPOT_TOKEN\" } for a private app".into()),
                        );
                        None
                    }
                };
                let base_url = r.base_url.as_ref().map(|u| u.get_ref().clone());
                if let Some(u) = &r.base_url {
                    if !(u.get_ref().starts_with("https://") || u.get_ref().starts_with("http://"))
                    {
                        c.err(u, format!("connection {name}: base_url must start with https:// (or http:// for a local sandbox)"), None);
                    }
                }
                let webhook_secret = r
                    .webhook_secret
                    .as_ref()
                    .and_then(|w| c.secret(w, &format!("connections.{name}.webhook_secret")));
                if let Some(auth) = auth {
                    let mut settings = puente_hubspot::Settings::new(base_url, auth);
                    settings.webhook_secret = webhook_secret;
                    if let Some(n) = r.rate_limit_per_10s {
                        settings.rate_limit_per_10s = n.max(1);
                    }
                    connections.insert(name.clone(), ConnectionDef::HubSpot(settings));
                }
            }
            "webhook" => {
                let r = conn.get_ref();
                let Some(token) = &r.token else {
                    c.err(
                        conn,
                        format!("connection {name} (webhook) has no token"),
                        Some("add token = { vault = \"NAME\" } (or { env = \"VAR\" }): senders must present it, or sign with it".into()),
                    );
                    continue;
                };
                let Some(secret) = c.secret(token, &format!("connections.{name}.token")) else {
                    continue;
                };
                if secret.len() < 16 {
                    c.err(
                        token,
                        format!("connections.{name}.token is shorter than 16 characters"),
                        Some("use a long random token (puente secrets keygen makes one)".into()),
                    );
                }
                let dir = r
                    .dir
                    .as_ref()
                    .map(|d| base.join(d.get_ref()))
                    .unwrap_or_else(|| base.join(".puente/inbox").join(name));
                connections.insert(
                    name.clone(),
                    ConnectionDef::Webhook {
                        dir,
                        auth: puente_webhook::WebhookAuth {
                            secret,
                            signature_header: r.signature_header.clone(),
                        },
                    },
                );
            }
            other => c.err(
                &conn.get_ref().kind,
                format!("connection {name}: unknown kind {other:?}"),
                Some("use one of: postgres, mysql, sqlite, csv, hubspot, webhook".into()),
            ),
        }
    }

    let mut names = BTreeSet::new();
    let mut syncs = Vec::new();
    for s in &raw.syncs {
        let r = s.get_ref();
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-')
        {
            c.err(
                &r.name,
                format!("sync name {name:?} must be letters, digits, - or _"),
                Some("rename the sync".to_string()),
            );
        }
        if !names.insert(name.clone()) {
            c.err(
                &r.name,
                format!("a second sync is named {name}"),
                Some("give every sync its own name".to_string()),
            );
        }
        let direction = parse_enum(
            &mut c,
            &r.direction,
            "direction",
            &["two-way", "a-to-b", "b-to-a"],
            Direction::parse,
            Direction::TwoWay,
        );
        let winner = parse_enum(
            &mut c,
            &r.winner,
            "winner",
            &["a", "b"],
            puente_core::Side::parse,
            puente_core::Side::A,
        );
        let policy = parse_enum(
            &mut c,
            &r.conflict,
            "conflict",
            &["winner", "newest", "manual"],
            ConflictPolicy::parse,
            ConflictPolicy::Winner,
        );
        let deletes = parse_enum(
            &mut c,
            &r.deletes,
            "deletes",
            &["keep", "propagate"],
            |s| match s {
                "keep" => Some(DeletePolicy::Keep),
                "propagate" => Some(DeletePolicy::Propagate),
                _ => None,
            },
            DeletePolicy::Keep,
        );
        let endpoint = |c: &mut Checker<'_>, e: &Spanned<RawEndpoint>, side: &str| -> EndpointDef {
            let er = e.get_ref();
            let conn = er.connection.get_ref();
            if !raw.connections.contains_key(conn) {
                let known: Vec<&str> = raw.connections.keys().map(String::as_str).collect();
                c.err(
                    &er.connection,
                    format!("sync {name}: {side}.connection {conn:?} is not defined"),
                    Some(if known.is_empty() {
                        format!("add a [connections.{conn}] table")
                    } else {
                        format!(
                            "use one of: {}, or add [connections.{conn}]",
                            known.join(", ")
                        )
                    }),
                );
            }
            let filter = er
                .filter
                .as_ref()
                .and_then(|f| match Expr::parse(f.get_ref()) {
                    Ok(x) => Some(x),
                    Err(err) => {
                        c.err(
                            f,
                            format!("sync {name}: {side}.filter: {err}"),
                            Some("write a Jinja expression such as stage != 'lost'".to_string()),
                        );
                        None
                    }
                });
            let mut options = BTreeMap::new();
            if let Some(d) = &er.delimiter {
                options.insert("delimiter".to_string(), d.clone());
            }
            if let Some(r) = er.reconcile_secs {
                options.insert("reconcile_secs".to_string(), r.to_string());
            }
            EndpointDef {
                connection: conn.clone(),
                spec: puente_core::ObjectSpec {
                    object: er.object.get_ref().clone(),
                    cursor: er.cursor.as_ref().map(|x| x.get_ref().clone()),
                    query: er.query.clone(),
                    key: er.key.clone(),
                    overlap_secs: er.overlap_secs.unwrap_or(300),
                    page_size: er.page_size.unwrap_or(5000).clamp(1, 100_000),
                    options,
                },
                filter,
                line: c.line(e.span().start),
            }
        };
        let a = endpoint(&mut c, &r.a, "a");
        let b = endpoint(&mut c, &r.b, "b");

        let mut keys = Vec::new();
        for m in &r.match_ {
            let mr = m.get_ref();
            let normalizer = match &mr.normalize {
                None => infer_normalizer(mr.a.get_ref(), mr.b.get_ref()),
                Some(n) => {
                    match KeyNormalizer::parse(n.get_ref()) {
                        Some(k) => k,
                        None => {
                            c.err(n, format!("normalize {:?} is not one of email, phone, domain, text, exact", n.get_ref()), Some("write one of: email, phone, domain, text, exact".to_string()));
                            KeyNormalizer::Exact
                        }
                    }
                }
            };
            keys.push(MatchDef {
                a: mr.a.get_ref().clone(),
                b: mr.b.get_ref().clone(),
                normalizer,
                line: c.line(m.span().start),
            });
        }

        let mut fields = Vec::new();
        let mut seen_a = BTreeSet::new();
        let mut seen_b = BTreeSet::new();
        for f in &r.fields {
            let fr = f.get_ref();
            let fdir = parse_enum(
                &mut c,
                &fr.direction,
                "direction",
                &["two-way", "a-to-b", "b-to-a"],
                Direction::parse,
                Direction::TwoWay,
            );
            let owner = match &fr.owner {
                None => None,
                Some(o) => match puente_core::Side::parse(o.get_ref()) {
                    Some(s) => Some(s),
                    None => {
                        c.err(
                            o,
                            format!("owner {:?} must be a or b", o.get_ref()),
                            Some("write owner = \"a\" or owner = \"b\"".to_string()),
                        );
                        None
                    }
                },
            };
            let ty = match &fr.ty {
                None => None,
                Some(t) => match FieldType::from_name(t.get_ref()) {
                    Some(ft) => Some(ft),
                    None => {
                        c.err(
                            t,
                            format!("type {:?} is unknown", t.get_ref()),
                            Some(format!("use one of: {}", FieldType::NAMES.join(", "))),
                        );
                        None
                    }
                },
            };
            let expr = |c: &mut Checker<'_>, e: &Option<Spanned<String>>| {
                e.as_ref().and_then(|x| match Expr::parse(x.get_ref()) {
                    Ok(v) => Some(v),
                    Err(err) => {
                        c.err(
                            x,
                            format!("{err}"),
                            Some(
                                "write a Jinja expression using `value`, e.g. value | upper"
                                    .to_string(),
                            ),
                        );
                        None
                    }
                })
            };
            let a_to_b = expr(&mut c, &fr.a_to_b);
            let b_to_a = expr(&mut c, &fr.b_to_a);
            let eff = match (direction, fdir) {
                (Direction::TwoWay, d) => d,
                (d, _) => d,
            };
            if eff == Direction::TwoWay && (a_to_b.is_some() != b_to_a.is_some()) {
                c.err(
                    f,
                    format!(
                        "field {} ↔ {}: a transform in one direction only cannot flow both ways",
                        fr.a.get_ref(),
                        fr.b.get_ref()
                    ),
                    Some(
                        "add the reverse transform, or set direction = \"a-to-b\" / \"b-to-a\""
                            .to_string(),
                    ),
                );
            }
            let values = fr
                .values
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default();
            if let Some(v) = &fr.values {
                let mut inverse: BTreeMap<&String, &String> = BTreeMap::new();
                for (from, to) in v.get_ref() {
                    if let Some(prev) = inverse.insert(to, from) {
                        if eff.flows_from(puente_core::Side::B) {
                            c.err(v, format!("field {}: values {prev:?} and {from:?} both map to {to:?}, so {to:?} cannot be mapped back", fr.a.get_ref()), Some("make the map one-to-one, or set direction = \"a-to-b\"".to_string()));
                        }
                    }
                }
            }
            if !seen_a.insert(fr.a.get_ref().clone()) {
                c.err(
                    &fr.a,
                    format!("sync {name}: field a.{} is mapped twice", fr.a.get_ref()),
                    Some("keep one mapping per field".to_string()),
                );
            }
            if !seen_b.insert(fr.b.get_ref().clone()) {
                c.err(
                    &fr.b,
                    format!("sync {name}: field b.{} is mapped twice", fr.b.get_ref()),
                    Some("keep one mapping per field".to_string()),
                );
            }
            fields.push(FieldDef {
                a: fr.a.get_ref().clone(),
                b: fr.b.get_ref().clone(),
                direction: fdir,
                values,
                owner,
                ty,
                a_to_b,
                b_to_a,
                parent: fr.parent.as_ref().map(|p| p.get_ref().clone()),
                line: c.line(f.span().start),
            });
        }
        if fields.is_empty() {
            c.err(
                s,
                format!("sync {name} maps no fields"),
                Some("add fields = [{ a = \"…\", b = \"…\" }, …]".to_string()),
            );
        }
        if r.match_.is_empty() {
            c.warn(s, format!("sync {name} has no match keys: records that exist on both sides before the first run will be duplicated"), Some("add match = [{ a = \"email\", b = \"email\" }] (or another unique field)".to_string()));
        }
        // The mapped fields in their order, for objects that lay out new
        // columns (a new CSV file's header).
        let mut a = a;
        let mut b = b;
        a.spec.options.insert(
            "columns".into(),
            fields
                .iter()
                .map(|f| f.a.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        b.spec.options.insert(
            "columns".into(),
            fields
                .iter()
                .map(|f| f.b.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        let mut schedule = crate::schedule::Schedule::default();
        if let Some(p) = r.poll_interval_secs {
            if p == 0 {
                c.err(
                    s,
                    format!("sync {name}: poll_interval_secs must be at least 1"),
                    Some("write poll_interval_secs = 30 (or more)".to_string()),
                );
            }
            schedule.poll = std::time::Duration::from_secs(p.max(1));
        }
        if let Some(phrase) = &r.reconcile {
            match crate::schedule::Reconcile::parse(phrase.get_ref()) {
                Ok(rec) => schedule.reconcile = rec,
                Err(fix) => c.err(
                    phrase,
                    format!(
                        "sync {name}: reconcile {:?} is not a schedule",
                        phrase.get_ref()
                    ),
                    Some(fix),
                ),
            }
        }
        schedule.debounce = std::time::Duration::from_secs(r.debounce_secs.unwrap_or(0));
        let gradual = parse_enum(
            &mut c,
            &r.exchange,
            "exchange",
            &["all_at_once", "gradual"],
            |v| match v {
                "gradual" => Some(true),
                "all_at_once" => Some(false),
                _ => None,
            },
            false,
        );
        let mut backfill = crate::schedule::Backfill::default();
        if let Some(w) = &r.backfill_window {
            match crate::schedule::Backfill::parse_window(w.get_ref()) {
                Ok(win) => backfill.window = Some(win),
                Err(fix) => c.err(
                    w,
                    format!(
                        "sync {name}: backfill_window {:?} is not a time window",
                        w.get_ref()
                    ),
                    Some(fix),
                ),
            }
        }
        if let Some(b) = &r.backfill_budget_share {
            let v = *b.get_ref();
            if v > 0.0 && v <= 1.0 {
                backfill.budget_share = Some(v);
            } else {
                c.err(
                    b,
                    format!("sync {name}: backfill_budget_share must be above 0 and at most 1"),
                    Some(
                        "write a share of the daily API budget, e.g. backfill_budget_share = 0.25"
                            .to_string(),
                    ),
                );
            }
        }
        let configured = r.backfill_window.is_some() || r.backfill_budget_share.is_some();
        if gradual && !configured {
            c.err(
                s,
                format!("sync {name}: exchange = \"gradual\" needs backfill_window, backfill_budget_share or both"),
                Some("add backfill_window = \"22:00-06:00\" (UTC) and/or backfill_budget_share = 0.25".to_string()),
            );
        } else if !gradual && configured {
            c.warn(
                s,
                format!("sync {name}: backfill_window and backfill_budget_share apply only to exchange = \"gradual\""),
                Some("add exchange = \"gradual\", or remove them".to_string()),
            );
        }
        syncs.push(SyncDef {
            schedule,
            backfill: gradual.then_some(backfill),
            name,
            enabled: r.enabled,
            direction,
            winner,
            policy,
            a,
            b,
            keys,
            fields,
            deletes,
            delete_check_interval_secs: r.delete_check_interval_secs.unwrap_or(300),
            phone_region: r.phone_region.clone(),
            batch_size: r.batch_size,
            line: c.line(s.span().start),
        });
    }

    // References name syncs; order parents first; no cycles.
    for (si, s) in raw.syncs.iter().enumerate() {
        for f in &s.get_ref().fields {
            if let Some(p) = &f.get_ref().parent {
                if !names.contains(p.get_ref()) {
                    c.err(
                        p,
                        format!(
                            "field {}: ref {:?} names no sync",
                            f.get_ref().a.get_ref(),
                            p.get_ref()
                        ),
                        Some(format!(
                            "use the name of the sync that syncs the parent object; syncs are: {}",
                            names.iter().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    );
                } else if p.get_ref() == &syncs[si].name {
                    // A self-reference is allowed: parents are linked before children in later runs.
                }
            }
        }
    }
    let ordered = match order_syncs(&syncs) {
        Ok(o) => o,
        Err(cycle) => {
            let at = &raw.syncs[0];
            c.err(
                at,
                format!("syncs reference each other in a cycle: {cycle}"),
                Some("break the cycle: make one reference one-way or drop it".to_string()),
            );
            syncs.clone()
        }
    };

    let serve = raw
        .serve
        .as_ref()
        .map(|sv| serve_def(&mut c, sv))
        .unwrap_or_default();

    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            state_url,
            secret_key,
            connections,
            syncs: ordered,
            serve,
            warnings: c.warnings,
        })
    } else {
        c.errors.extend(c.warnings);
        Err(c.errors)
    }
}

fn order_syncs(syncs: &[SyncDef]) -> Result<Vec<SyncDef>, String> {
    let mut out: Vec<SyncDef> = Vec::new();
    let mut placed = BTreeSet::new();
    let mut rest: Vec<&SyncDef> = syncs.iter().collect();
    while !rest.is_empty() {
        let before = rest.len();
        rest.retain(|s| {
            let ready =
                s.fields.iter().filter_map(|f| f.parent.as_ref()).all(|p| {
                    p == &s.name || placed.contains(p) || !syncs.iter().any(|x| &x.name == p)
                });
            if ready {
                placed.insert(s.name.clone());
                out.push((*s).clone());
            }
            !ready
        });
        if rest.len() == before {
            return Err(rest
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" → "));
        }
    }
    Ok(out)
}

/// Makes a relative SQLite path relative to the config file's folder.
fn anchor_sqlite(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_string();
    };
    if rest.starts_with('/') || rest.starts_with(":memory:") || base.as_os_str().is_empty() {
        return url.to_string();
    }
    format!("sqlite://{}", base.join(rest).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(src: &str, expect: &[&str]) {
        let errs = parse(src, Path::new("puente.toml")).unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        for e in expect {
            assert!(
                text.iter().any(|t| t.contains(e)),
                "expected {e:?} in {text:#?}"
            );
        }
    }

    const GOOD: &str = r#"
[state]
url = "sqlite://.puente/state.db"

[connections.shop]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/test"

[connections.books]
kind = "mysql"
url = { env = "PUENTE_TEST_BOOKS_URL" }

[[syncs]]
name = "customers"
direction = "two-way"
winner = "a"
a = { connection = "shop", object = "customers", cursor = "updated_at" }
b = { connection = "books", object = "clients", cursor = "updated_at" }
match = [{ a = "email", b = "email_address" }]
fields = [
  { a = "email", b = "email_address" },
  { a = "first_name", b = "given_name" },
  { a = "stage", b = "status", values = { lead = "L", customer = "C" } },
  { a = "phone", b = "phone", direction = "a-to-b" },
]
"#;

    #[test]
    fn the_documented_example_parses() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        let c = parse(GOOD, Path::new("puente.toml")).unwrap();
        assert_eq!(c.syncs.len(), 1);
        let s = &c.syncs[0];
        assert_eq!(s.keys[0].normalizer, KeyNormalizer::Email);
        assert_eq!(s.fields[3].direction, Direction::AToB);
        assert_eq!(s.fields[2].values["lead"], "L");
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        check_err(
            &GOOD.replace("connection = \"books\"", "connection = \"boks\""),
            &[
                "puente.toml:18: sync customers: b.connection \"boks\" is not defined",
                "fix: use one of: books, shop",
            ],
        );
        check_err(
            &GOOD.replace("winner = \"a\"", "winner = \"c\""),
            &["puente.toml:16: winner \"c\" is not one of a, b"],
        );
        check_err(
            &GOOD.replace("direction = \"two-way\"", "directon = \"two-way\""),
            &["puente.toml:15: unknown field `directon`"],
        );
        check_err(
            &GOOD.replace("customer = \"C\"", "customer = \"L\""),
            &["both map to \"L\""],
        );
        check_err(
            &GOOD.replace("PUENTE_TEST_BOOKS_URL", "PUENTE_TEST_UNSET_VAR"),
            &["environment variable PUENTE_TEST_UNSET_VAR is not set"],
        );
        check_err(
            &GOOD.replace("kind = \"postgres\"", "kind = \"oracle\""),
            &["puente.toml:6: connection shop: unknown kind \"oracle\""],
        );
    }

    const TWO_HUBSPOTS: &str = r#"
[connections.eu]
kind = "hubspot"
token = "pat-eu-1"
webhook_secret = "s1"

[connections.us]
kind = "hubspot"
base_url = "http://127.0.0.1:8089"
client_id = "app"
client_secret = "secret"
refresh_token = "rt"
rate_limit_per_10s = 190

[[syncs]]
name = "accounts"
a = { connection = "eu", object = "companies" }
b = { connection = "us", object = "companies", reconcile_secs = 600 }
match = [{ a = "domain", b = "domain" }]
fields = [{ a = "name", b = "name" }]
"#;

    #[test]
    fn two_hubspot_accounts_in_one_config() {
        let c = parse(TWO_HUBSPOTS, Path::new("puente.toml")).unwrap();
        match (&c.connections["eu"], &c.connections["us"]) {
            (ConnectionDef::HubSpot(eu), ConnectionDef::HubSpot(us)) => {
                assert_eq!(eu.base_url, puente_hubspot::DEFAULT_BASE_URL);
                assert_eq!(eu.webhook_secret.as_deref(), Some("s1"));
                assert!(matches!(&eu.auth, puente_hubspot::Auth::Token(t) if t == "pat-eu-1"));
                assert!(
                    matches!(&us.auth, puente_hubspot::Auth::OAuth { client_id, .. } if client_id == "app")
                );
                assert_eq!(us.rate_limit_per_10s, 190);
                // Secrets stay out of debug output.
                assert!(!format!("{eu:?} {us:?}").contains("pat-eu-1"));
                assert!(!format!("{eu:?}").contains("\"s1\""));
                assert!(!format!("{us:?}").contains("\"rt\""));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.syncs[0].b.spec.options["reconcile_secs"], "600");
        check_err(
            &TWO_HUBSPOTS.replace("token = \"pat-eu-1\"\n", ""),
            &["puente.toml:2: connection eu (hubspot) needs either token, or client_id + client_secret + refresh_token"],
        );
        check_err(
            &TWO_HUBSPOTS.replace("http://127.0.0.1:8089", "127.0.0.1:8089"),
            &["base_url must start with https://"],
        );
    }

    const VAULTED: &str = r#"
[connections.crm]
kind = "hubspot"
token = { vault = "crm-token" }
[connections.db]
kind = "postgres"
url = { vault = "db-url" }
"#;

    #[test]
    fn vault_references_are_resolved_from_the_snapshot() {
        assert_eq!(vault_refs(VAULTED), ["crm-token", "db-url"]);
        let mut opened = BTreeMap::new();
        opened.insert("crm-token".to_string(), Ok("pat-v-1".to_string()));
        opened.insert(
            "db-url".to_string(),
            Ok("postgres://app:pw@db/crm".to_string()),
        );
        let snap = VaultSnapshot {
            opened,
            unavailable: None,
        };
        let c = parse_with(VAULTED, Path::new("puente.toml"), &snap).unwrap();
        match (&c.connections["crm"], &c.connections["db"]) {
            (ConnectionDef::HubSpot(h), ConnectionDef::Sql { url, .. }) => {
                assert!(matches!(&h.auth, puente_hubspot::Auth::Token(t) if t == "pat-v-1"));
                assert_eq!(url, "postgres://app:pw@db/crm");
            }
            other => panic!("{other:?}"),
        }
        // Debug output of the whole config shows no secret.
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("pat-v-1") && !debug.contains(":pw@"),
            "{debug}"
        );

        // A name the vault lacks, and a vault that cannot be opened.
        let empty = VaultSnapshot::default();
        let errs = parse_with(VAULTED, Path::new("puente.toml"), &empty).unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t.starts_with("puente.toml:4: connections.crm.token: the vault holds no secret named \"crm-token\"")
                && t.contains("fix: store it: puente secrets set crm-token")),
            "{text:#?}"
        );
        check_err(
            VAULTED,
            &["puente.toml:4: connections.crm.token: cannot open the vault"],
        );
    }

    #[test]
    fn the_secret_key_is_never_written_in_the_config() {
        let key = puente_state::SecretKey::generate().encode();
        check_err(
            &format!("[state]\nkey = \"{key}\"\n"),
            &["puente.toml:2: state.key must not be written in the config"],
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "not a key").unwrap();
        let src = "[state]\nkey = { file = \"k\" }\n";
        let errs = parse(src, &dir.path().join("puente.toml")).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("state.key: the key is neither base64 nor hex"),
            "{errs:?}"
        );
        std::fs::write(dir.path().join("k"), format!("{key}\n")).unwrap();
        let c = parse(src, &dir.path().join("puente.toml")).unwrap();
        assert_eq!(
            c.secret_key.unwrap().id(),
            puente_state::SecretKey::parse(&key).unwrap().id()
        );
    }

    #[test]
    fn a_gradual_exchange_is_checked() {
        let sync = |extra: &str| {
            format!(
                "[connections.a]\nkind = \"sqlite\"\nurl = \"sqlite://a.db\"\n[[syncs]]\nname = \"s\"\n{extra}\na = {{ connection = \"a\", object = \"x\" }}\nb = {{ connection = \"a\", object = \"y\" }}\nfields = [{{ a = \"n\", b = \"n\" }}]\n"
            )
        };
        let c = parse(
            &sync("exchange = \"gradual\"\nbackfill_window = \"22:00-06:00\"\nbackfill_budget_share = 0.25"),
            Path::new("puente.toml"),
        )
        .unwrap();
        let b = c.syncs[0].backfill.clone().unwrap();
        assert_eq!(b.window, Some((22 * 60, 6 * 60)));
        assert_eq!(b.budget_share, Some(0.25));
        check_err(
            &sync("exchange = \"slowly\""),
            &["exchange \"slowly\" is not one of all_at_once, gradual"],
        );
        check_err(
            &sync("exchange = \"gradual\""),
            &["needs backfill_window, backfill_budget_share or both"],
        );
        check_err(
            &sync("exchange = \"gradual\"\nbackfill_window = \"night\""),
            &["backfill_window \"night\" is not a time window"],
        );
        check_err(
            &sync("exchange = \"gradual\"\nbackfill_budget_share = 2.0"),
            &["backfill_budget_share must be above 0 and at most 1"],
        );
    }
}
