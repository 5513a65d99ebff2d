//! `puente.toml`: parsing, and static checks that name the file, the line
//! and the fix. Checks that need the systems themselves (do the fields
//! exist? do the picklists agree?) are in `compile`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use puente_core::config::{
    anchor_sqlite, did_you_mean, key_owners, Checker, ConnectionConfig, Key, KeyType, RawTable,
    Table,
};
use puente_core::normalize::KeyNormalizer;
use puente_core::FieldType;
use puente_plan::{ConflictPolicy, DeletePolicy, Direction, Expr};
use serde::Deserialize;
use toml::Spanned;

pub use puente_core::config::{Diagnostic, Secret, VaultSnapshot};

use crate::connectors;

/// Where the secret key comes from when `[state] key` does not say.
pub const KEY_ENV: &str = "PUENTE_SECRET_KEY";
pub const KEY_FILE_ENV: &str = "PUENTE_SECRET_KEY_FILE";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state: Option<RawState>,
    pub serve: Option<Spanned<RawServe>>,
    /// Each connection's table, checked by its kind (`connectors`).
    #[serde(default)]
    pub connections: BTreeMap<String, Spanned<RawTable>>,
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
    /// How long a pass's lease on its sync lasts unless renewed (a pass
    /// renews it every third of that): how long a sync stays blocked after
    /// the process running it dies.
    pub lease_secs: Option<Spanned<u64>>,
    /// How many days the change log keeps a change (0: every change, for
    /// ever).
    pub change_log_days: Option<Spanned<u64>>,
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
    /// Each side's endpoint: `connection`, `object` and how to read it
    /// (`ENDPOINT_KEYS`, plus the object keys of the connection's kind).
    pub a: Spanned<RawTable>,
    pub b: Spanned<RawTable>,
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

/// How a connection reaches its system, as its kind checked it (secrets
/// resolved; `Debug` masks them).
#[derive(Clone, Debug)]
pub struct ConnectionDef {
    pub settings: Arc<dyn ConnectionConfig>,
    pub line: usize,
}

impl ConnectionDef {
    /// The kind as written (`postgres`, `hubspot`, …).
    pub fn kind(&self) -> &str {
        self.settings.kind()
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

impl FieldDef {
    /// The field's name on `side`.
    pub fn name(&self, side: puente_core::Side) -> &str {
        match side {
            puente_core::Side::A => &self.a,
            puente_core::Side::B => &self.b,
        }
    }
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
    /// How long a pass's lease lasts unless renewed (`[state] lease_secs`).
    pub lease_ttl: std::time::Duration,
    /// How long the change log keeps a change (`[state] change_log_days`);
    /// `None` keeps every change.
    pub change_log_days: Option<u64>,
    pub warnings: Vec<Diagnostic>,
}

/// A pass's lease lasts this long unless renewed.
pub const DEFAULT_LEASE_SECS: u64 = 30;

/// The change log keeps a change this many days unless configured.
pub const DEFAULT_CHANGE_LOG_DAYS: u64 = 90;

impl SyncDef {
    pub fn endpoint(&self, side: puente_core::Side) -> &EndpointDef {
        match side {
            puente_core::Side::A => &self.a,
            puente_core::Side::B => &self.b,
        }
    }
}

impl Config {
    pub fn sync(&self, name: &str) -> Option<&SyncDef> {
        self.syncs.iter().find(|s| s.name == name)
    }
}

/// The keys of a sync's endpoint that every kind takes; a kind adds its
/// object keys (`ConnectorKind::object_keys`).
pub const ENDPOINT_KEYS: &[Key] = &[
    Key::new("connection", KeyType::Text, "the connection (a [connections.NAME] table)").required(),
    Key::new(
        "object",
        KeyType::Text,
        "the table, file or CRM object (`customers`, `sales.orders`, `people.csv`, `contacts`)",
    )
    .required(),
    Key::new(
        "cursor",
        KeyType::Text,
        "a column whose value grows with every change (`updated_at`): later reads take only what changed",
    ),
    Key::new("query", KeyType::Text, "a read-only query standing in for a table"),
    Key::new(
        "key",
        KeyType::Text,
        "the field that identifies a record when the object has no key of its own (files, queries, webhooks); default id",
    ),
    Key::new(
        "overlap_secs",
        KeyType::Integer,
        "how far before the cursor each incremental read starts again (default 300)",
    ),
    Key::new("page_size", KeyType::Integer, "records per page read (default 5000)"),
    Key::new(
        "filter",
        KeyType::Text,
        "an expression records must satisfy to be synced, e.g. stage != 'lost'",
    ),
];

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
    let vault = open_vault(&url, key.as_ref(), &names).await;
    parse_with(&src, path, &vault)
}

fn read(path: &Path) -> Result<String, Vec<Diagnostic>> {
    std::fs::read_to_string(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => match std::env::current_dir() {
                Ok(here) if path.is_relative() => {
                    format!("no such config file (looked in {})", here.display())
                }
                _ => "no such config file".to_string(),
            },
            _ => format!("cannot read the config: {e}"),
        };
        vec![Diagnostic {
            file: path.display().to_string(),
            line: 0,
            message,
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

/// Opens the named secrets in the store at `url` with `key`.
pub async fn open_vault(
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
        let fix = if let Some(meant) = meant_field(&msg) {
            Some(format!("did you mean `{meant}`?"))
        } else if msg.contains("unknown field") {
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

/// For serde's "unknown field `x`, expected one of `a`, `b`": the expected
/// field closest to `x`, when one is close.
fn meant_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    did_you_mean(word, expected.iter().copied()).map(str::to_string)
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
    let (state_url, secret_key) = state_of(&mut c, &raw);

    let connections = connections_of(&mut c, &raw);
    // Each connection's kind, as written (endpoints take its object keys).
    let kinds: BTreeMap<&str, &str> = raw
        .connections
        .iter()
        .filter_map(
            |(n, t)| match t.get_ref().get("kind").map(|k| k.get_ref()) {
                Some(toml::Value::String(k)) => Some((n.as_str(), k.as_str())),
                _ => None,
            },
        )
        .collect();

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
        let direction = c.one_of(
            &r.direction,
            "direction",
            &["two-way", "a-to-b", "b-to-a"],
            Direction::parse,
            Direction::TwoWay,
        );
        let winner = c.one_of(
            &r.winner,
            "winner",
            &["a", "b"],
            puente_core::Side::parse,
            puente_core::Side::A,
        );
        let policy = c.one_of(
            &r.conflict,
            "conflict",
            &["winner", "newest", "manual"],
            ConflictPolicy::parse,
            ConflictPolicy::Winner,
        );
        let deletes = c.one_of(
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
        let a = endpoint(&mut c, &raw, &kinds, &name, &r.a, "a");
        let b = endpoint(&mut c, &raw, &kinds, &name, &r.b, "b");

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
            let fdir = c.one_of(
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
        // What the sync writes to may be created by it (a new CSV file).
        a.spec.writes = direction.flows_from(puente_core::Side::B);
        b.spec.writes = direction.flows_from(puente_core::Side::A);
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
        a.spec.reads = reads(puente_core::Side::A, &a, &fields, &keys);
        b.spec.reads = reads(puente_core::Side::B, &b, &fields, &keys);
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
        let gradual = c.one_of(
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

    let lease_secs = match raw.state.as_ref().and_then(|s| s.lease_secs.as_ref()) {
        Some(l) if (1..=86_400).contains(l.get_ref()) => *l.get_ref(),
        Some(l) => {
            c.err(
                l,
                "state.lease_secs must be between 1 and 86400",
                Some(format!(
                    "write lease_secs = {DEFAULT_LEASE_SECS} (the default)"
                )),
            );
            DEFAULT_LEASE_SECS
        }
        None => DEFAULT_LEASE_SECS,
    };
    let change_log_days = match raw.state.as_ref().and_then(|s| s.change_log_days.as_ref()) {
        Some(d) if *d.get_ref() == 0 => None,
        Some(d) if *d.get_ref() <= 36_500 => Some(*d.get_ref()),
        Some(d) => {
            c.err(
                d,
                "state.change_log_days must be between 0 (keep every change) and 36500",
                Some(format!(
                    "write change_log_days = {DEFAULT_CHANGE_LOG_DAYS} (the default)"
                )),
            );
            None
        }
        None => Some(DEFAULT_CHANGE_LOG_DAYS),
    };
    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            state_url,
            secret_key,
            connections,
            syncs: ordered,
            serve,
            lease_ttl: std::time::Duration::from_secs(lease_secs),
            change_log_days,
            warnings: c.warnings,
        })
    } else {
        c.errors.extend(c.warnings);
        Err(c.errors)
    }
}

/// Checks every connection's table with its kind: the kind's keys only (a
/// key of another kind, or a near miss, is named), then the kind's own checks.
fn connections_of(c: &mut Checker<'_>, raw: &RawConfig) -> BTreeMap<String, ConnectionDef> {
    let kinds = connectors::kinds();
    let owners = key_owners(kinds);
    let names: Vec<&str> = kinds
        .iter()
        .flat_map(|k| k.names().iter().copied())
        .collect();
    let mut out = BTreeMap::new();
    for (name, table) in &raw.connections {
        let kind = match table.get_ref().get("kind") {
            Some(k) => match k.get_ref() {
                toml::Value::String(s) => s.clone(),
                _ => {
                    c.err(
                        k,
                        format!("connection {name}: kind must be text"),
                        Some(format!("write kind = \"{}\"", names[0])),
                    );
                    continue;
                }
            },
            None => {
                c.err(
                    table,
                    format!("connection {name} has no kind"),
                    Some(format!("add kind = \"…\", one of: {}", names.join(", "))),
                );
                continue;
            }
        };
        let Some(k) = connectors::kind(&kind) else {
            let fix = match did_you_mean(&kind, names.iter().copied()) {
                Some(m) => format!("did you mean {m:?}? kinds are: {}", names.join(", ")),
                None => format!("use one of: {}", names.join(", ")),
            };
            let at = table.get_ref().get("kind").expect("read above");
            c.err(
                at,
                format!("connection {name}: unknown kind {kind:?}"),
                Some(fix),
            );
            continue;
        };
        let line = c.line(table.span().start);
        let mut t = Table::new(
            c,
            format!("connection {name} ({kind})"),
            format!("connections.{name}"),
            table,
        );
        let mut allowed: Vec<&str> = vec!["kind"];
        allowed.extend(k.keys().iter().map(|key| key.name));
        t.unknown_keys(&allowed, &owners);
        if let Some(settings) = k.configure(&kind, &mut t) {
            out.insert(name.clone(), ConnectionDef { settings, line });
        }
    }
    out
}

/// Checks one side of a sync: the keys every endpoint takes, then those of
/// its connection's kind (handed to the object as options).
fn endpoint(
    c: &mut Checker<'_>,
    raw: &RawConfig,
    kinds: &BTreeMap<&str, &str>,
    sync: &str,
    table: &Spanned<RawTable>,
    side: &str,
) -> EndpointDef {
    let line = c.line(table.span().start);
    let mut t = Table::new(
        c,
        format!("sync {sync}: {side}"),
        format!("syncs.{sync}.{side}"),
        table,
    );
    let connection = t.text("connection").unwrap_or_default();
    let kind = kinds
        .get(connection.as_str())
        .and_then(|k| connectors::kind(k));
    if !t.has("connection") {
        t.err(
            None,
            format!("sync {sync}: {side} names no connection"),
            Some(format!(
                "write {side} = {{ connection = \"…\", object = \"…\" }}"
            )),
        );
    } else if !raw.connections.contains_key(&connection) {
        let known: Vec<&str> = raw.connections.keys().map(String::as_str).collect();
        let fix = if known.is_empty() {
            format!("add a [connections.{connection}] table")
        } else {
            let meant = did_you_mean(&connection, known.iter().copied())
                .map(|m| format!("did you mean {m:?}? "))
                .unwrap_or_default();
            format!(
                "{meant}use one of: {}, or add [connections.{connection}]",
                known.join(", ")
            )
        };
        t.err(
            Some("connection"),
            format!("sync {sync}: {side}.connection {connection:?} is not defined"),
            Some(fix),
        );
    }
    let object = t.text("object").unwrap_or_default();
    if !t.has("object") {
        t.err(None, format!("sync {sync}: {side} names no object"), Some(format!("write the table, file or CRM object: {side} = {{ connection = \"{connection}\", object = \"…\" }}")));
    }
    let object_keys: &[Key] = kind.map(|k| k.object_keys()).unwrap_or(&[]);
    let mut allowed: Vec<&str> = ENDPOINT_KEYS.iter().map(|k| k.name).collect();
    allowed.extend(object_keys.iter().map(|k| k.name));
    let mut owners: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for other in connectors::kinds() {
        for key in other.object_keys() {
            owners.entry(key.name).or_default().push(other.names()[0]);
        }
    }
    if kind.is_some() {
        t.unknown_keys(&allowed, &owners);
    }
    let filter = t.text("filter").and_then(|f| match Expr::parse(&f) {
        Ok(x) => Some(x),
        Err(err) => {
            t.err(
                Some("filter"),
                format!("sync {sync}: {side}.filter: {err}"),
                Some("write a Jinja expression such as stage != 'lost'".to_string()),
            );
            None
        }
    });
    let count = |t: &mut Table<'_, '_>, key: &str| {
        t.integer(key).and_then(|n| {
            let ok = u64::try_from(n).ok();
            if ok.is_none() {
                t.err(
                    Some(key),
                    format!("sync {sync}: {side}.{key} must not be negative"),
                    None,
                );
            }
            ok
        })
    };
    let overlap_secs = count(&mut t, "overlap_secs").unwrap_or(300);
    let page_size = count(&mut t, "page_size").unwrap_or(5000).clamp(1, 100_000) as usize;
    EndpointDef {
        connection,
        spec: puente_core::ObjectSpec {
            object,
            cursor: t.text("cursor"),
            query: t.text("query"),
            key: t.text("key"),
            overlap_secs,
            page_size,
            options: t.options(object_keys),
            writes: false,
            reads: None,
        },
        filter,
        line,
    }
}

/// The fields a sync uses on `side`: mapped, matched, filtered on, read by
/// a transform from that side's record, and the cursor. `None` (every
/// field) when an expression reads the whole record.
fn reads(
    side: puente_core::Side,
    ep: &EndpointDef,
    fields: &[FieldDef],
    keys: &[MatchDef],
) -> Option<BTreeSet<String>> {
    let mut out: BTreeSet<String> = fields.iter().map(|f| f.name(side).to_string()).collect();
    for k in keys {
        out.insert(match side {
            puente_core::Side::A => k.a.clone(),
            puente_core::Side::B => k.b.clone(),
        });
    }
    out.extend(ep.spec.cursor.iter().cloned());
    let transforms = fields.iter().filter_map(|f| match side {
        puente_core::Side::A => f.a_to_b.as_ref(),
        puente_core::Side::B => f.b_to_a.as_ref(),
    });
    for x in ep.filter.iter().chain(transforms) {
        out.extend(x.fields()?);
    }
    Some(out)
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
    fn the_change_log_keeps_ninety_days_unless_told() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        let with = |line: &str| GOOD.replace("[state]\n", &format!("[state]\n{line}\n"));
        let days = |src: &str| {
            parse(src, Path::new("puente.toml"))
                .unwrap()
                .change_log_days
        };
        assert_eq!(days(GOOD), Some(DEFAULT_CHANGE_LOG_DAYS));
        assert_eq!(days(&with("change_log_days = 7")), Some(7));
        assert_eq!(
            days(&with("change_log_days = 0")),
            None,
            "0 keeps every change"
        );
        check_err(
            &with("change_log_days = 99999"),
            &[
                "puente.toml:3",
                "change_log_days must be between 0",
                "change_log_days = 90",
            ],
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        check_err(
            &GOOD.replace("connection = \"books\"", "connection = \"boks\""),
            &[
                "puente.toml:18: sync customers: b.connection \"boks\" is not defined",
                "fix: did you mean \"books\"? use one of: books, shop",
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

    #[test]
    fn a_mistyped_key_gets_the_key_meant() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        check_err(
            &GOOD.replace("direction = \"two-way\"", "directon = \"two-way\""),
            &[
                "puente.toml:15: unknown field `directon`",
                "fix: did you mean `direction`?",
            ],
        );
        check_err(
            &GOOD.replace("kind = \"postgres\"", "kind = \"postgress\""),
            &["unknown kind \"postgress\"", "did you mean \"postgres\"?"],
        );
        check_err(
            &GOOD.replace("winner = \"a\"", "conflict = \"newset\""),
            &[
                "conflict \"newset\" is not one of winner, newest, manual",
                "did you mean \"newest\"?",
            ],
        );
        check_err(
            &GOOD.replace("url = \"postgres://", "ulr = \"postgres://"),
            &[
                "puente.toml:7: connection shop (postgres): unknown key \"ulr\"",
                "did you mean \"url\"?",
            ],
        );
        check_err(
            &GOOD.replace("object = \"customers\",", "objcet = \"customers\","),
            &[
                "puente.toml:17: sync customers: a: unknown key \"objcet\"",
                "did you mean \"object\"?",
            ],
        );
    }

    #[test]
    fn a_key_of_another_kind_says_whose_it_is() {
        std::env::set_var("PUENTE_TEST_BOOKS_URL", "mysql://root@127.0.0.1:3306/test");
        check_err(
            &GOOD.replace("kind = \"postgres\"\n", "kind = \"postgres\"\ntoken = \"x\"\n"),
            &["puente.toml:7: connection shop (postgres): key \"token\" belongs to hubspot, webhook connections, not this one"],
        );
        check_err(
            &GOOD.replace(
                "cursor = \"updated_at\" }\nb",
                "cursor = \"updated_at\", delimiter = \";\" }\nb",
            ),
            &["sync customers: a: key \"delimiter\" belongs to csv connections, not this one"],
        );
        check_err(
            &GOOD.replace(
                "[connections.shop]\nkind = \"postgres\"",
                "[connections.shop]",
            ),
            &[
                "connection shop has no kind",
                "kind = \"…\", one of: postgres, mysql, mariadb, sqlite, csv, webhook, hubspot",
            ],
        );
    }

    /// A HubSpot connection's settings, as its kind checked them.
    fn hubspot<'c>(c: &'c Config, name: &str) -> &'c puente_hubspot::Settings {
        &c.connections[name]
            .settings
            .as_any()
            .downcast_ref::<puente_hubspot::HubSpotConfig>()
            .expect("a HubSpot connection")
            .0
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
        let (eu, us) = (hubspot(&c, "eu"), hubspot(&c, "us"));
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
        let h = hubspot(&c, "crm");
        assert!(matches!(&h.auth, puente_hubspot::Auth::Token(t) if t == "pat-v-1"));
        let db = c.connections["db"]
            .settings
            .as_any()
            .downcast_ref::<puente_sql::SqlConfig>()
            .expect("a database connection");
        assert_eq!(db.url, "postgres://app:pw@db/crm");
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
