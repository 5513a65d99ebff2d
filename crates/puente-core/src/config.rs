//! Checking `puente.toml`, shared by the engine (state, serve, syncs) and
//! every connector (its own connection table): located diagnostics, secret
//! references, and tables read key by key against a declared schema, so an
//! unknown key is named with the key meant, or with the kind it belongs to.
//!
//! A connector kind is described once by a [`ConnectorKind`]: its names,
//! the keys of its connection table and of its objects (the schema that the
//! checker, the docs and forms share), and how a checked table becomes a
//! [`ConnectionConfig`] that connects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use toml::Spanned;

use crate::{Connector, ConnectorError, TokenCache};

/// One problem in a config file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole (it cannot be
    /// read, say), which is then named without a line.
    pub line: usize,
    pub message: String,
    pub fix: Option<String>,
    /// Warnings do not stop a run.
    pub warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning: " } else { "" };
        match self.line {
            0 => write!(f, "{}: {level}{}", self.file, self.message)?,
            line => write!(f, "{}:{line}: {level}{}", self.file, self.message)?,
        }
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

/// The vault's secrets a config refers to, opened before the config is
/// checked (checking is synchronous; the store is not).
#[derive(Default)]
pub struct VaultSnapshot {
    pub opened: BTreeMap<String, Result<String, String>>,
    /// Why nothing could be opened (no key, no store), if so.
    pub unavailable: Option<String>,
}

impl VaultSnapshot {
    /// A snapshot that opens nothing, saying why.
    pub fn unavailable(why: impl Into<String>) -> VaultSnapshot {
        VaultSnapshot {
            opened: BTreeMap::new(),
            unavailable: Some(why.into()),
        }
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`).
pub fn url_has_password(url: &str) -> bool {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => url[s + 3..at].contains(':'),
        _ => false,
    }
}

/// Makes a relative SQLite path (`sqlite://state.db`) relative to the
/// config file's folder, so a config works from any working directory.
pub fn anchor_sqlite(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_string();
    };
    if rest.starts_with('/') || rest.starts_with(":memory:") || base.as_os_str().is_empty() {
        return url.to_string();
    }
    format!("sqlite://{}", base.join(rest).display())
}

/// The closest of `known` to a mistyped `word`, if one is close enough to
/// be what was meant.
pub fn did_you_mean<'k>(word: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    // Edits (a transposition counts one) against the longer word's length.
    known
        .into_iter()
        .map(|k| (strsim::normalized_damerau_levenshtein(word, k), k))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, k)| k)
}

/// Collects the diagnostics of one config file.
pub struct Checker<'a> {
    pub file: String,
    src: &'a str,
    /// The config file's folder: relative paths are read from there.
    pub base: PathBuf,
    vault: &'a VaultSnapshot,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    pub fn new(src: &'a str, path: &Path, vault: &'a VaultSnapshot) -> Checker<'a> {
        Checker {
            file: path.display().to_string(),
            src,
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            vault,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The line of a byte offset of the file.
    pub fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    /// Adds a diagnostic at `line` (0: the file as a whole).
    pub fn push_at(&mut self, line: usize, warning: bool, message: String, fix: Option<String>) {
        let d = Diagnostic {
            file: self.file.clone(),
            line,
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

    pub fn err<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        let line = self.line(span.span().start);
        self.push_at(line, false, message.into(), fix.into());
    }

    pub fn warn<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        let line = self.line(span.span().start);
        self.push_at(line, true, message.into(), fix.into());
    }

    /// Resolves a secret reference; `what` names it in messages
    /// (`connections.crm.token`).
    pub fn secret(&mut self, s: &Spanned<Secret>, what: &str) -> Option<String> {
        match s.get_ref() {
            Secret::Inline(v) => {
                if v.contains("://") && url_has_password(v) {
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

    /// One of `options`, or `default` (with an error) when `v` is another.
    pub fn one_of<T>(
        &mut self,
        v: &Option<Spanned<String>>,
        what: &str,
        options: &[&str],
        parse: impl Fn(&str) -> Option<T>,
        default: T,
    ) -> T {
        let Some(s) = v else { return default };
        if let Some(t) = parse(s.get_ref()) {
            return t;
        }
        let fix = match did_you_mean(s.get_ref(), options.iter().copied()) {
            Some(m) => format!("did you mean {m:?}? write one of: {}", options.join(", ")),
            None => format!("write one of: {}", options.join(", ")),
        };
        self.err(
            s,
            format!(
                "{what} {:?} is not one of {}",
                s.get_ref(),
                options.join(", ")
            ),
            Some(fix),
        );
        default
    }
}

/// What a key's value is, for the checker, the docs and forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Text,
    /// A secret: inline, `{ env = … }`, `{ file = … }` or `{ vault = … }`.
    Secret,
    /// A path, relative to the config file's folder.
    Path,
    Integer,
    Number,
    Bool,
    OneOf(&'static [&'static str]),
}

/// One key a table may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub ty: KeyType,
    /// Documented as required (a connector may also require one of several).
    pub required: bool,
    pub doc: &'static str,
}

impl Key {
    pub const fn new(name: &'static str, ty: KeyType, doc: &'static str) -> Key {
        Key {
            name,
            ty,
            required: false,
            doc,
        }
    }

    pub const fn required(self) -> Key {
        Key {
            required: true,
            ..self
        }
    }
}

/// A TOML table as written, each value with its place in the file.
pub type RawTable = BTreeMap<String, Spanned<toml::Value>>;

/// A table of the config read key by key against the keys it may hold.
/// Keys nobody declared are reported by [`Table::unknown_keys`].
pub struct Table<'c, 'a> {
    /// How messages name the table: `connection crm (hubspot)`, `sync s: a`.
    pub label: String,
    /// Where keys are written in paths: `connections.crm`.
    pub path: String,
    span: Range<usize>,
    values: RawTable,
    pub checker: &'c mut Checker<'a>,
}

impl<'c, 'a> Table<'c, 'a> {
    pub fn new(
        checker: &'c mut Checker<'a>,
        label: impl Into<String>,
        path: impl Into<String>,
        table: &Spanned<RawTable>,
    ) -> Table<'c, 'a> {
        Table {
            label: label.into(),
            path: path.into(),
            span: table.span(),
            values: table.get_ref().clone(),
            checker,
        }
    }

    /// The config file's folder.
    pub fn base(&self) -> &Path {
        &self.checker.base
    }

    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub fn raw(&self, key: &str) -> Option<&Spanned<toml::Value>> {
        self.values.get(key)
    }

    /// The line of `key`, or of the table when it does not hold it.
    pub fn line(&self, key: Option<&str>) -> usize {
        let at = key
            .and_then(|k| self.values.get(k))
            .map(|v| v.span().start)
            .unwrap_or(self.span.start);
        self.checker.line(at)
    }

    /// An error at `key`'s line (or the table's).
    pub fn err(
        &mut self,
        key: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        let line = self.line(key);
        self.checker
            .push_at(line, false, message.into(), fix.into());
    }

    pub fn warn(
        &mut self,
        key: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<Option<String>>,
    ) {
        let line = self.line(key);
        self.checker.push_at(line, true, message.into(), fix.into());
    }

    fn wrong_type(&mut self, key: &str, want: &str) {
        let message = format!("{}: {key} must be {want}", self.label);
        self.err(
            Some(key),
            message,
            Some(format!("write {key} = {}", example(want))),
        );
    }

    /// A text value (`None` when absent, or not text: then said).
    pub fn text(&mut self, key: &str) -> Option<String> {
        match self.values.get(key).map(|v| v.get_ref()) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.wrong_type(key, "text");
                None
            }
        }
    }

    pub fn integer(&mut self, key: &str) -> Option<i64> {
        match self.values.get(key).map(|v| v.get_ref()) {
            None => None,
            Some(toml::Value::Integer(n)) => Some(*n),
            Some(_) => {
                self.wrong_type(key, "a whole number");
                None
            }
        }
    }

    /// A number; whole numbers are accepted.
    pub fn number(&mut self, key: &str) -> Option<f64> {
        match self.values.get(key).map(|v| v.get_ref()) {
            None => None,
            Some(toml::Value::Float(n)) => Some(*n),
            Some(toml::Value::Integer(n)) => Some(*n as f64),
            Some(_) => {
                self.wrong_type(key, "a number");
                None
            }
        }
    }

    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.values.get(key).map(|v| v.get_ref()) {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(_) => {
                self.wrong_type(key, "true or false");
                None
            }
        }
    }

    /// A secret, resolved (inline, env, file or vault).
    pub fn secret(&mut self, key: &str) -> Option<String> {
        let v = self.values.get(key)?.clone();
        let span = v.span();
        match Secret::deserialize(v.into_inner()) {
            Ok(s) => {
                let what = format!("{}.{key}", self.path);
                self.checker.secret(&Spanned::new(span, s), &what)
            }
            Err(_) => {
                self.wrong_type(
                    key,
                    "text, or { env = \"VAR\" }, { file = \"PATH\" } or { vault = \"NAME\" }",
                );
                None
            }
        }
    }

    /// A path, made relative to the config file's folder.
    pub fn path(&mut self, key: &str) -> Option<PathBuf> {
        self.text(key).map(|p| self.base().join(p))
    }

    /// Every value as text (numbers and booleans written out), for options
    /// handed to a connector as strings.
    pub fn options(&mut self, keys: &[Key]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for k in keys {
            let v = match k.ty {
                KeyType::Integer => self.integer(k.name).map(|n| n.to_string()),
                KeyType::Number => self.number(k.name).map(|n| n.to_string()),
                KeyType::Bool => self.boolean(k.name).map(|b| b.to_string()),
                KeyType::Secret => self.secret(k.name),
                KeyType::Text | KeyType::Path | KeyType::OneOf(_) => self.text(k.name),
            };
            if let Some(v) = v {
                out.insert(k.name.to_string(), v);
            }
        }
        out
    }

    /// Reports every key not in `allowed`: with the key meant when one is
    /// close, or with the other kinds it belongs to (`elsewhere`: key → the
    /// kinds that take it).
    pub fn unknown_keys(&mut self, allowed: &[&str], elsewhere: &BTreeMap<&str, Vec<&str>>) {
        let unknown: Vec<String> = self
            .values
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            let (message, fix) = if let Some(kinds) = elsewhere.get(key.as_str()) {
                (
                    format!(
                        "{}: key {key:?} belongs to {} connections, not this one",
                        self.label,
                        kinds.join(", ")
                    ),
                    format!(
                        "remove it, or change the kind; this one takes: {}",
                        allowed.join(", ")
                    ),
                )
            } else if let Some(meant) = did_you_mean(&key, allowed.iter().copied()) {
                (
                    format!("{}: unknown key {key:?}", self.label),
                    format!("did you mean {meant:?}?"),
                )
            } else {
                (
                    format!("{}: unknown key {key:?}", self.label),
                    format!("remove it; keys here are: {}", allowed.join(", ")),
                )
            };
            self.err(Some(&key), message, Some(fix));
        }
    }
}

/// A value to show in "write KEY = …" for a type.
fn example(want: &str) -> &'static str {
    match want {
        "text" => "\"…\"",
        "a whole number" => "10",
        "a number" => "0.5",
        "true or false" => "true",
        _ => "\"…\"",
    }
}

/// One kind of connection (`postgres`, `csv`, `hubspot`, …): its schema, and
/// how a checked table becomes a [`ConnectionConfig`]. Each connector crate
/// exposes one; the engine lists them in one place.
pub trait ConnectorKind: Send + Sync {
    /// The `kind = "…"` values it takes; the first is its name.
    fn names(&self) -> &'static [&'static str];

    /// One line on what it connects.
    fn about(&self) -> &'static str;

    /// The keys of its connection table (besides `kind`).
    fn keys(&self) -> &'static [Key];

    /// Keys a sync's endpoint on this kind of connection may add (handed to
    /// the object as `ObjectSpec::options`).
    fn object_keys(&self) -> &'static [Key] {
        &[]
    }

    /// Checks a connection's table (unknown keys are already reported) and
    /// returns its settings, or `None` after reporting why not.
    fn configure(&self, kind: &str, table: &mut Table<'_, '_>)
        -> Option<Arc<dyn ConnectionConfig>>;
}

/// A connection's checked settings (secrets resolved; `Debug` masks them).
#[async_trait]
pub trait ConnectionConfig: Send + Sync + fmt::Debug {
    /// The kind as written (`mariadb` for a `mysql` connector).
    fn kind(&self) -> &str;

    /// The settings as their own type (for tests and tools that know it).
    fn as_any(&self) -> &dyn std::any::Any;

    /// Connects (or prepares to: API connectors connect on first call).
    async fn connect(&self, ctx: ConnectContext) -> Result<Arc<dyn Connector>, ConnectorError>;
}

/// What the engine hands a connector when it connects.
#[derive(Clone, Default)]
pub struct ConnectContext {
    /// The connection's name in the config.
    pub connection: String,
    /// Where credentials the connector obtains itself (OAuth tokens) are
    /// kept between processes, sealed; `None` without a secret key.
    pub tokens: Option<Arc<dyn TokenCache>>,
}

/// The kinds that take each key (for "key X belongs to …" messages).
pub fn key_owners<'k>(kinds: &[&'k dyn ConnectorKind]) -> BTreeMap<&'k str, Vec<&'k str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for k in kinds {
        for key in k.keys() {
            out.entry(key.name).or_default().insert(k.names()[0]);
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}
