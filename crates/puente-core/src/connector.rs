use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{ConnectorError, Failure, Fields, ObjectSchema, Record, Value};

/// A connector's position in an object's change stream. Opaque to the
/// engine: only the connector that produced it reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub serde_json::Value);

/// How to open one object of a connection: which table, file or CRM object,
/// and the options that shape reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSpec {
    /// The object's name: a table (`customers`, `sales.orders`), a file
    /// path, a CRM object.
    pub object: String,
    /// A column whose value grows with every change (`updated_at`), used to
    /// read only what changed since the last run.
    pub cursor: Option<String>,
    /// A read-only query standing in for a table.
    pub query: Option<String>,
    /// The field that identifies a record when the object has no primary key
    /// of its own (files, queries).
    pub key: Option<String>,
    /// How far before the cursor each incremental read starts again, so commit
    /// lag and clock skew cannot hide a change.
    pub overlap_secs: u64,
    /// Records per page read.
    pub page_size: usize,
    /// Connector-specific options.
    pub options: BTreeMap<String, String>,
    /// The sync writes to this object: where the system lets a write create
    /// it (a new CSV file), its absence is not an error.
    pub writes: bool,
    /// The fields the sync uses (mapped, matched, filtered on, read by a
    /// transform); `None` for every field. A connector whose API lets it
    /// name the fields to send back (HubSpot's `properties`) asks for these
    /// only; records may still carry more.
    pub reads: Option<std::collections::BTreeSet<String>>,
}

/// How a connector learns about changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeDetection {
    /// Reads everything every time (files, tables without a cursor column).
    FullRead,
    /// Reads records changed since a cursor.
    Cursor,
    /// The system pushes notifications; the cursor read is the safety net.
    Push,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    /// Most operations one `write` call accepts.
    pub max_batch: usize,
    pub change_detection: ChangeDetection,
    /// Deletes are found by comparing the ids the object holds with the links.
    pub delete_detection_by_key_diff: bool,
    /// Requests per second the system allows, when it has a limit.
    pub rate_limit_per_sec: Option<f64>,
    pub writable: bool,
}

/// One page of a read.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub records: Vec<Record>,
    /// Ask for the next page with this token; `None` on the last page.
    pub next: Option<String>,
    /// On the last page: the cursor to resume from next time (committed by the
    /// engine only once every record read has been handled).
    pub cursor: Option<Cursor>,
}

/// One write of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Create { fields: Fields },
    Update { id: String, fields: Fields },
    Delete { id: String },
}

/// The result of one [`WriteOp`], in the order of the batch.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// The record as the target now holds it (read back after the write).
    Written(Record),
    Deleted,
    Failed(Failure),
}

/// An incoming notification (webhook) as received, before anything in it is
/// trusted: the connector checks its signature or token first.
#[derive(Clone, Debug, Default)]
pub struct Push {
    pub method: String,
    /// The full URL the sender addressed (signatures cover it).
    pub uri: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Push {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How much of an API's allowance a connection has used (for the
/// dashboard, metrics and budget alerts). Databases report none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// Requests sent (every attempt).
    pub requests: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    /// The rate-limit window: its size, and how much of it is used now.
    pub window_max: Option<u32>,
    pub window_used: Option<u32>,
    pub window_secs: Option<f64>,
    /// Today's requests against the daily quota, as the API reports them.
    pub daily_used: Option<u64>,
    pub daily_limit: Option<u64>,
}

/// One authenticated account of one system.
#[async_trait]
pub trait Connector: Send + Sync {
    /// `postgres`, `mysql`, `sqlite`, `csv`, …
    fn kind(&self) -> &'static str;

    /// Checks that the system is reachable and the credentials work.
    async fn check(&self) -> Result<(), ConnectorError>;

    /// Discovers an object's schema and returns a handle to read and write it.
    async fn open(&self, spec: &ObjectSpec) -> Result<Arc<dyn Object>, ConnectorError>;

    /// API usage, for connectors that call a rate-limited API.
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// Takes a notification the system pushed: verifies it, and remembers
    /// the records it names so the next read looks at them (docs/semantics.md: a
    /// notification only says "look at record X soon"). Returns how many
    /// events were taken.
    async fn accept_push(&self, push: &Push) -> Result<usize, ConnectorError> {
        let _ = push;
        Err(ConnectorError::config(format!(
            "{} connections take no webhooks",
            self.kind()
        )))
    }
}

/// One object (table, file, CRM object) of a connection.
#[async_trait]
pub trait Object: Send + Sync {
    fn schema(&self) -> &ObjectSchema;

    fn capabilities(&self) -> Capabilities;

    /// Reads one page: everything when `since` is `None`, otherwise the
    /// records changed since that cursor (with the object's overlap).
    /// Reading consumes nothing: the engine reads the next page while it
    /// applies this one, and drops it unread if the pass stops.
    async fn read(
        &self,
        since: Option<&Cursor>,
        page: Option<String>,
    ) -> Result<Page, ConnectorError>;

    /// Reads the given records; missing ids are left out of the answer.
    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError>;

    /// Every record id the object holds (for delete detection).
    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError>;

    /// Of ids no longer listed, those the system merged into another record:
    /// (old id, surviving id). A merged record is relinked, not deleted.
    async fn resolve_merged(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let _ = ids;
        Ok(Vec::new())
    }

    /// The ids a record absorbed by merges, as the system reports them.
    fn merged_ids(&self, record: &Record) -> Vec<String> {
        let _ = record;
        Vec::new()
    }

    /// Records whose fields equal all the given values (`Null` matches empty).
    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError>;

    /// Whether [`Object::find_any`] compares `field`'s text trimmed and
    /// without regard to case, as an e-mail match key is compared. When not,
    /// it compares exactly, and the engine looks e-mail keys up through it
    /// only where exact is enough.
    fn folds_case(&self, field: &str) -> bool {
        let _ = field;
        false
    }

    /// Records whose `field` equals one of `values` (match-key lookups,
    /// many at once; see [`Object::folds_case`]). The default asks
    /// [`Object::find`] once per value; a connector that can ask once for
    /// many (SQL's `IN`) does so.
    async fn find_any(&self, field: &str, values: &[Value]) -> Result<Vec<Record>, ConnectorError> {
        let mut found: Vec<Record> = Vec::new();
        for v in values.iter().filter(|v| !v.is_empty()) {
            for r in self.find(&[(field.to_string(), v.clone())]).await? {
                if !found.iter().any(|f| f.id == r.id) {
                    found.push(r);
                }
            }
        }
        Ok(found)
    }

    /// Applies a batch; one outcome per operation, in order. A failure of
    /// one operation never fails its neighbours.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError>;
}

/// Where a connector keeps a credential it obtained itself between
/// processes: an OAuth token set (the access token, its expiry, and the
/// current refresh token, which some vendors replace on every refresh).
/// The engine's implementation seals it in the state store, which
/// processes sharing the store share; without one, such tokens live in
/// memory only.
#[async_trait]
pub trait TokenCache: Send + Sync {
    async fn load(&self) -> Option<String>;
    async fn store(&self, value: &str);
}
