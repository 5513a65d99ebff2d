use std::fmt;

/// Why one record could not be synced. Stable, user-facing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FailureCategory {
    Validation,
    Duplicate,
    NotFound,
    Mapping,
    RateLimited,
    Auth,
    Permission,
    Server,
    ConflictHeld,
}

impl FailureCategory {
    pub const ALL: &'static [FailureCategory] = &[
        FailureCategory::Validation,
        FailureCategory::Duplicate,
        FailureCategory::NotFound,
        FailureCategory::Mapping,
        FailureCategory::RateLimited,
        FailureCategory::Auth,
        FailureCategory::Permission,
        FailureCategory::Server,
        FailureCategory::ConflictHeld,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::Validation => "validation",
            FailureCategory::Duplicate => "duplicate",
            FailureCategory::NotFound => "not_found",
            FailureCategory::Mapping => "mapping",
            FailureCategory::RateLimited => "rate_limited",
            FailureCategory::Auth => "auth",
            FailureCategory::Permission => "permission",
            FailureCategory::Server => "server",
            FailureCategory::ConflictHeld => "conflict_held",
        }
    }

    pub fn parse(s: &str) -> Option<FailureCategory> {
        FailureCategory::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
    }

    /// Whether a later run may succeed without anyone changing the data.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureCategory::RateLimited | FailureCategory::Server | FailureCategory::NotFound
        )
    }

    /// The generic hint shown when a connector has nothing more specific.
    pub fn default_hint(self) -> &'static str {
        match self {
            FailureCategory::Validation => "fix the value in the source record (or widen the target field); the record is retried on its next change",
            FailureCategory::Duplicate => "the target already holds a record with this unique value: add a match key so the two are linked, or merge the duplicates",
            FailureCategory::NotFound => "the target record is gone: restore it or let the next run relink the record",
            FailureCategory::Mapping => "add the value to the field's value map, or declare the field's type, then run the sync again",
            FailureCategory::RateLimited => "retried automatically; lower the sync's batch size or frequency if this persists",
            FailureCategory::Auth => "the credentials were rejected: renew them in the connection's secret and run again",
            FailureCategory::Permission => "grant the connection's user the right to write this object or field",
            FailureCategory::Server => "the target system failed; retried automatically on the next run",
            FailureCategory::ConflictHeld => "settle it with `puente conflicts resolve ID --take a|b|VALUE`",
        }
    }
}

impl fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-record failure: what went wrong, on which field, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub category: FailureCategory,
    pub message: String,
    pub hint: String,
}

impl Failure {
    pub fn new(category: FailureCategory, message: impl Into<String>) -> Failure {
        Failure {
            category,
            message: message.into(),
            hint: category.default_hint().to_string(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = hint.into();
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.category, self.message)
    }
}

/// Whose fault a whole-call error is, which decides whether retrying helps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration names something that does not exist or is wrong.
    Config,
    /// Credentials rejected.
    Auth,
    /// The system cannot be reached (network, server down).
    Unreachable,
    /// The system answered with an error of its own; a retry may succeed.
    External,
    /// A bug or an unexpected answer in Puente itself.
    Internal,
}

/// A connector call that failed as a whole (not per record).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ConnectorError {
        ConnectorError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ConnectorError {
        self.hint = Some(hint.into());
        self
    }

    pub fn config(message: impl Into<String>) -> ConnectorError {
        ConnectorError::new(ErrorKind::Config, message)
    }

    pub fn internal(message: impl Into<String>) -> ConnectorError {
        ConnectorError::new(ErrorKind::Internal, message)
    }
}
