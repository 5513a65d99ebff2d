use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use puente_core::{Failure, FailureCategory, Fields, Side, Value};
use puente_plan::{ConflictNote, Entry, Exclusion, FieldChange, Resolution, Status, Wait};

use crate::lease::Lease;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Row};

/// Schema migrations, in order: version N is the first N applied.
const MIGRATIONS: [&str; 8] = [
    include_str!("migrations.sql"),
    include_str!("migrations_v2.sql"),
    include_str!("migrations_v3.sql"),
    include_str!("migrations_v4.sql"),
    include_str!("migrations_v5.sql"),
    include_str!("migrations_v6.sql"),
    include_str!("migrations_v7.sql"),
    include_str!("migrations_v8.sql"),
];
/// Rows per multi-row statement (well under SQLite's and PostgreSQL's
/// parameter limits).
const CHUNK: usize = 400;
/// Makes intent batch tokens unique within a process.
static BATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("state store {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("state store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state store holds data Puente cannot read ({0}); was it written by a newer version?")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    #[error("sync {sync}: this pass lost its lease (it stalled past the lease's expiry and another process took the sync over); nothing more was recorded, and the pass that holds the sync now carries on")]
    LeaseLost { sync: String },
    #[error("secret {name}: {message}\n  fix: {fix}")]
    Secret {
        name: String,
        message: String,
        fix: String,
    },
}

pub(crate) type Result<T> = std::result::Result<T, StateError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct StateStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Multi-row statements by shape, built once (`rows_sql`).
    shapes: Shapes,
    /// The layouts of seen values known to this process.
    layouts: std::sync::Arc<std::sync::Mutex<Layouts>>,
}

/// The field names of an entry's seen values, a's then b's, kept once in
/// the `layouts` table; entries store their values by position.
#[derive(Debug, Default)]
struct Layout {
    a: Vec<String>,
    b: Vec<String>,
}

impl Layout {
    /// The stored form of an entry's layout, which is also its key:
    /// `[[a's names], [b's names]]`.
    fn key_of(e: &Entry) -> String {
        fn names(f: &Option<Fields>) -> Vec<&String> {
            f.iter().flat_map(|f| f.keys()).collect()
        }
        serde_json::to_string(&(names(&e.seen_a), names(&e.seen_b))).expect("names serialise")
    }
}

/// Finds entries' layouts by key, serialising an entry's names only where
/// they differ from the entry before's (a commit's entries mostly share one
/// layout).
struct LayoutFinder<'a> {
    ids: &'a HashMap<String, i64>,
    last: Option<(&'a Entry, Option<i64>)>,
}

impl<'a> LayoutFinder<'a> {
    fn new(ids: &'a HashMap<String, i64>) -> Self {
        LayoutFinder { ids, last: None }
    }

    /// The entry's layout: `None` without seen values, or for names this
    /// process has no id for.
    fn find(&mut self, e: &'a Entry) -> Option<i64> {
        match self.key(e)? {
            Ok(id) => id,
            Err(key) => self.remember(e, &key),
        }
    }

    /// The id of `e`'s layout, whose key is `key`, kept for the entries
    /// after it.
    fn remember(&mut self, e: &'a Entry, key: &str) -> Option<i64> {
        let id = self.ids.get(key).copied();
        self.last = Some((e, id));
        id
    }

    /// `Ok(id)` when the entry has the names of the one before, else
    /// `Err(its key)`; `None` without seen values.
    fn key(&self, e: &Entry) -> Option<std::result::Result<Option<i64>, String>> {
        fn same(a: &Option<Fields>, b: &Option<Fields>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.len() == b.len() && a.keys().eq(b.keys()),
                _ => false,
            }
        }
        if e.seen_a.is_none() && e.seen_b.is_none() {
            return None;
        }
        Some(match self.last {
            Some((prev, id)) if same(&prev.seen_a, &e.seen_a) && same(&prev.seen_b, &e.seen_b) => {
                Ok(id)
            }
            _ => Err(Layout::key_of(e)),
        })
    }
}

/// Layouts by id and ids by key. Layouts are never removed or changed, so
/// what a process has read stays true.
#[derive(Debug, Default)]
struct Layouts {
    ids: HashMap<String, i64>,
    by_id: HashMap<i64, std::sync::Arc<Layout>>,
}

/// Statements by (text around the placeholders, columns or first
/// placeholder, rows).
type Shapes =
    std::sync::Arc<std::sync::Mutex<HashMap<(String, usize, usize), std::sync::Arc<str>>>>;

/// One entry to persist, with what happened to it this run.
#[derive(Clone, Debug)]
pub struct EntryWrite {
    pub entry: Entry,
    /// `None` for a new entry.
    pub id: Option<i64>,
    pub changes: Vec<(Side, FieldChange)>,
    /// The sides this write created the record on. The first is kept in the
    /// entry (the run and the side), any other logged as a change; neither
    /// with values (they are the entry's seen values).
    pub created: Vec<Side>,
    pub conflicts: Vec<ConflictNote>,
    /// A-side fields whose conflicts are settled.
    pub resolved: Vec<String>,
    pub failed_attempt: bool,
}

/// A create about to be sent, recorded first so a crash cannot duplicate it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub sync: String,
    /// The side the record is created on.
    #[serde(skip, default = "side_a")]
    pub side: Side,
    #[serde(skip)]
    pub entry_id: Option<i64>,
    #[serde(skip)]
    pub source_id: String,
    /// Field values that find the record on the target if it was created.
    #[serde(skip)]
    pub conditions: Vec<(String, Value)>,
    /// The source's seen values and the key, to link without re-planning.
    #[serde(with = "compact_opt_fields", default)]
    pub seen_source: Option<Fields>,
    /// What the create sent: the target's seen values if it is found, so a
    /// later edit of the created record still reads as a change.
    #[serde(with = "compact_fields", default)]
    pub payload: Fields,
    pub key_source: Option<String>,
    pub key_target: Option<String>,
}

fn side_a() -> Side {
    Side::A
}

/// An intent to record, borrowed from what a pass holds (an `Intent` as
/// written; `Intent::as_ref` lends one).
#[derive(Clone, Copy, Debug)]
pub struct IntentRef<'a> {
    /// The side the record is created on.
    pub side: Side,
    pub entry_id: Option<i64>,
    pub source_id: &'a str,
    /// Field values that find the record on the target if it was created.
    pub conditions: &'a [(&'a str, &'a Value)],
    pub seen_source: Option<&'a Fields>,
    pub payload: &'a Fields,
    pub key_source: Option<&'a str>,
    pub key_target: Option<&'a str>,
}

impl Intent {
    /// Lends this intent to `add_intents`; `conditions` holds its
    /// conditions borrowed (see `condition_refs`).
    pub fn as_ref<'a>(&'a self, conditions: &'a [(&'a str, &'a Value)]) -> IntentRef<'a> {
        IntentRef {
            side: self.side,
            entry_id: self.entry_id,
            source_id: &self.source_id,
            conditions,
            seen_source: self.seen_source.as_ref(),
            payload: &self.payload,
            key_source: self.key_source.as_deref(),
            key_target: self.key_target.as_deref(),
        }
    }

    /// This intent's conditions, borrowed, for `as_ref`.
    pub fn condition_refs(&self) -> Vec<(&str, &Value)> {
        self.conditions
            .iter()
            .map(|(n, v)| (n.as_str(), v))
            .collect()
    }
}

/// A batch of intents as its row stores them, owned: made where the
/// intents are borrowed, recorded later (`StateStore::add_intent_batch`).
#[derive(Clone, Debug)]
pub struct IntentBatch {
    /// What settles the batch in a later commit (`Commit::intent_batches`).
    pub token: String,
    payload: String,
}

impl IntentBatch {
    pub fn new(intents: &[IntentRef<'_>]) -> IntentBatch {
        let token = format!(
            "{}-{}",
            now(),
            BATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let stored: Vec<StoredIntent<'_>> = intents.iter().copied().map(StoredIntent).collect();
        let payload = serde_json::to_string(&stored).expect("intents serialise");
        IntentBatch { token, payload }
    }
}

/// What `intents.side` holds for a row that carries a whole batch of
/// intents (its `payload` a JSON array, one `StoredIntent` each). Earlier
/// versions wrote one row per intent, which still read.
const MANY_INTENTS: &str = "*";

/// One intent of a batch row, written straight from an `IntentRef`. Its
/// conditions are names of payload fields (`"email"`), or a name and a value
/// where the payload does not hold that value (`["email", …]`). The
/// source's seen values, where they name the payload's fields, are only
/// those that differ from it (`"sd"`); otherwise all of them (`"ss"`).
struct StoredIntent<'a>(IntentRef<'a>);

impl Serialize for StoredIntent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Conditions<'a>(IntentRef<'a>);
        impl Serialize for Conditions<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(self.0.conditions.len()))?;
                for (name, v) in self.0.conditions {
                    if self.0.payload.get(*name) == Some(*v) {
                        seq.serialize_element(name)?;
                    } else {
                        seq.serialize_element(&(name, CompactValue(v)))?;
                    }
                }
                seq.end()
            }
        }
        let it = &self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("s", it.side.as_str())?;
        if let Some(e) = it.entry_id {
            m.serialize_entry("e", &e)?;
        }
        m.serialize_entry("i", it.source_id)?;
        m.serialize_entry("c", &Conditions(*it))?;
        m.serialize_entry("p", &CompactFields(it.payload))?;
        match it.seen_source {
            // Named as the payload's fields: only the values that differ.
            Some(seen) if seen.keys().eq(it.payload.keys()) => {
                m.serialize_entry("sd", &Differing(seen, it.payload))?
            }
            Some(seen) => m.serialize_entry("ss", &CompactFields(seen))?,
            None => {}
        }
        if let Some(k) = it.key_source {
            m.serialize_entry("ks", k)?;
        }
        if let Some(k) = it.key_target {
            m.serialize_entry("kt", k)?;
        }
        m.end()
    }
}

/// The fields of the first map whose values differ from the second's.
struct Differing<'a>(&'a Fields, &'a Fields);

impl Serialize for Differing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if self.1.get(k) != Some(v) {
                m.serialize_entry(k, &CompactValue(v))?;
            }
        }
        m.end()
    }
}

/// A `StoredIntent` read back.
#[derive(Deserialize)]
struct ReadIntent {
    s: String,
    #[serde(default)]
    e: Option<i64>,
    i: String,
    c: Vec<serde_json::Value>,
    #[serde(with = "compact_fields")]
    p: Fields,
    #[serde(default)]
    ss: Option<serde_json::Value>,
    #[serde(default)]
    sd: Option<serde_json::Value>,
    #[serde(default)]
    ks: Option<String>,
    #[serde(default)]
    kt: Option<String>,
}

impl ReadIntent {
    fn into_intent(self, id: i64, sync: &str) -> Result<Intent> {
        let corrupt = |what: &str| StateError::Corrupt(format!("intent {id}: {what}"));
        let side = Side::parse(&self.s).ok_or_else(|| corrupt("side"))?;
        let conditions = self
            .c
            .into_iter()
            .map(|c| match c {
                serde_json::Value::String(name) => {
                    let v = self
                        .p
                        .get(&name)
                        .cloned()
                        .ok_or_else(|| corrupt("condition"))?;
                    Ok((name, v))
                }
                serde_json::Value::Array(mut pair) if pair.len() == 2 => {
                    let v = expand_value(pair.pop().unwrap_or_default())
                        .map_err(|_| corrupt("condition value"))?;
                    match pair.pop() {
                        Some(serde_json::Value::String(name)) => Ok((name, v)),
                        _ => Err(corrupt("condition name")),
                    }
                }
                _ => Err(corrupt("condition")),
            })
            .collect::<Result<Vec<_>>>()?;
        let seen_source = match (self.ss, self.sd) {
            (_, Some(differing)) => {
                let mut seen = self.p.clone();
                seen.extend(
                    compact_fields::deserialize(differing)
                        .map_err(|_| corrupt("source's seen values"))?,
                );
                Some(seen)
            }
            (None | Some(serde_json::Value::Null), None) => None,
            // The payload itself, as the first batched form marked it.
            (Some(serde_json::Value::String(mark)), None) if mark == "=" => Some(self.p.clone()),
            (Some(map), None) => Some(
                compact_fields::deserialize(map).map_err(|_| corrupt("source's seen values"))?,
            ),
        };
        Ok(Intent {
            id,
            sync: sync.to_string(),
            side,
            entry_id: self.e,
            source_id: self.i,
            conditions,
            seen_source,
            payload: self.p,
            key_source: self.ks,
            key_target: self.kt,
        })
    }
}

/// What a sync keeps between passes beside its records, one value each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// A side's change cursor, as its connector made it (opaque).
    Cursor(Side),
    /// When ids were last listed to find deletes (unix seconds).
    DeleteScan,
    /// `puente serve` does not run the sync (a boolean).
    Paused,
    /// When the last full reconciliation started (unix seconds).
    ReconciledAt,
    /// Where a side's gradual backfill goes on from (`{"page": token}`).
    BackfillPage(Side),
    /// Requests a gradual backfill spent on a UTC day (`{"day", "requests"}`).
    BackfillSpent,
    /// A one-way sync's target side has been read to its end once (unix
    /// seconds): its records are indexed, so later passes need not read it.
    TargetRead(Side),
}

impl Marker {
    /// Its key in the store (the names earlier versions used).
    pub fn name(self) -> &'static str {
        match self {
            Marker::Cursor(Side::A) => "a",
            Marker::Cursor(Side::B) => "b",
            Marker::DeleteScan => "delete_scan",
            Marker::Paused => "paused",
            Marker::ReconciledAt => "reconciled_at",
            Marker::BackfillPage(Side::A) => "backfill_a",
            Marker::BackfillPage(Side::B) => "backfill_b",
            Marker::BackfillSpent => "backfill_spent",
            Marker::TargetRead(Side::A) => "target_read_a",
            Marker::TargetRead(Side::B) => "target_read_b",
        }
    }
}

/// Which entries a pass revisits, a page at a time in id order.
#[derive(Clone, Debug)]
pub struct Revisit {
    /// Entries after this id (the last of the previous page).
    pub after: i64,
    /// Only entries not written since (RFC 3339): what this pass already
    /// planned is not planned again.
    pub before: String,
    /// Only entries waiting for this reason (a held backfill's creates).
    pub only: Option<&'static str>,
    /// Leave out entries waiting for this reason.
    pub skip: Option<&'static str>,
}

/// Everything one step of a run persists, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    pub sync: String,
    pub run_id: i64,
    pub drops: Vec<i64>,
    pub entries: Vec<EntryWrite>,
    pub intents_done: Vec<i64>,
    /// Batches of intents (from `add_intents`) this commit settles.
    pub intent_batches: Vec<String>,
    /// Entries read back after Puente's own write, unchanged: only their
    /// echo flags are cleared.
    pub echoes_seen: Vec<i64>,
    pub cursors: Vec<(Marker, serde_json::Value)>,
    /// The pass's lease: the commit renews it first, and fails if it is lost.
    pub lease: Option<Lease>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub in_sync: i64,
    pub failed: i64,
    pub excluded: i64,
    pub deleted: i64,
    pub waiting: i64,
    pub failures_by_category: BTreeMap<String, i64>,
}

impl StatusCounts {
    pub fn total(&self) -> i64 {
        self.in_sync + self.failed + self.excluded + self.deleted + self.waiting
    }
}

/// Every status an entry can be in (ARCHITECTURE.md: exactly one).
pub const STATUSES: [&str; 5] = ["in_sync", "failed", "excluded", "deleted", "waiting"];

#[derive(Clone, Debug)]
pub struct RecordRow {
    pub sync: String,
    pub entry_id: i64,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub status: String,
    pub category: Option<String>,
    pub reason: Option<String>,
    pub hint: Option<String>,
    pub deleted_on: Option<String>,
    pub attempts: i64,
    pub updated_at: String,
}

impl RecordRow {
    /// The columns of the records export (`puente records --format csv`
    /// and the dashboard's CSV), in order.
    pub const CSV_HEADER: [&'static str; 11] = [
        "sync",
        "entry",
        "a_id",
        "b_id",
        "status",
        "category",
        "reason",
        "hint",
        "deleted_on",
        "attempts",
        "updated_at",
    ];

    /// This row's values under [`RecordRow::CSV_HEADER`].
    pub fn csv_fields(&self) -> [String; 11] {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            self.sync.clone(),
            self.entry_id.to_string(),
            text(&self.a_id),
            text(&self.b_id),
            self.status.clone(),
            text(&self.category),
            text(&self.reason),
            text(&self.hint),
            text(&self.deleted_on),
            self.attempts.to_string(),
            self.updated_at.clone(),
        ]
    }
}

#[derive(Clone, Debug, Default)]
pub struct RecordFilter {
    pub sync: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
    /// One entry.
    pub entry_id: Option<i64>,
    /// Changed at or after / before these times (RFC 3339, UTC, as stored).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Records of one status grouped by failure category or exclusion reason.
#[derive(Clone, Debug)]
pub struct GroupRow {
    pub status: String,
    pub label: String,
    pub count: i64,
    /// A hint one of them carries (they share a category, so a cause).
    pub hint: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: i64,
    pub sync: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub dry_run: bool,
    pub counts: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ConflictRow {
    pub id: i64,
    pub sync: String,
    pub entry_id: i64,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub field_a: String,
    pub field_b: String,
    pub value_a: Value,
    pub value_b: Value,
    pub created_at: String,
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct ChangeRow {
    pub run_id: i64,
    pub side: String,
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub at: String,
}

/// One row of the change log: a id, b id, side written, field, old, new.
/// The entry columns `bind_entry` binds, in its order.
const ENTRY_WRITE_COLS: &str =
    "sync, a_id, b_id, key_a, key_b, seen_a, seen_b, deleted_a, deleted_b, \
    echo_a, echo_b, status, reason_code, reason, category, message, hint, attempts, \
    created_run, created_side, layout";

/// Placeholders per row of an existing entry's write: its id,
/// `ENTRY_WRITE_COLS` (21) and the time.
const EXISTING_COLS: usize = 23;

/// A statement of `n` placeholders with its arguments' room made once
/// (pushed one by one, a wide statement's arguments were copied again each
/// time they outgrew their room).
fn query_of<'q>(
    sql: &'q str,
    n: usize,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    use sqlx::Arguments;
    let mut args = sqlx::any::AnyArguments::default();
    args.reserve(n, 0);
    sqlx::query_with(sql, args)
}

/// Binds an entry's stored columns (`ENTRY_WRITE_COLS`); `attempts` carries
/// 1 for a failed attempt (the upsert turns it into a count).
fn bind_entry<'q, 'a: 'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    sync: &'q str,
    run_id: i64,
    w: &'a EntryWrite,
    layouts: &mut LayoutFinder<'a>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let e = &w.entry;
    let StatusColumns {
        status,
        code,
        reason,
        category,
        message,
        hint,
    } = status_columns(&e.status);
    let layout = layouts.find(e);
    let (seen_a, seen_b) = stored_seen(e, layout.is_some());
    q.bind(sync)
        .bind(e.a_id.as_deref())
        .bind(e.b_id.as_deref())
        .bind(e.key_a.as_deref())
        .bind(stored_key_b(e))
        .bind(seen_a)
        .bind(seen_b)
        .bind(e.deleted_a as i64)
        .bind(e.deleted_b as i64)
        .bind(e.echo_a as i64)
        .bind(e.echo_b as i64)
        .bind(status)
        .bind(code)
        .bind(reason)
        .bind(category)
        .bind(message)
        .bind(hint)
        .bind(w.failed_attempt as i64)
        .bind((!w.created.is_empty()).then_some(run_id))
        .bind(w.created.first().map(|s| s.as_str()))
        .bind(layout)
}

/// A multi-row statement's rows for existing entries: each one's id, its
/// columns (`bind_entry`) and the time.
fn bind_existing<'q, 'a: 'q>(
    sql: &'q str,
    chunk: &[&'a EntryWrite],
    c: &'q Commit,
    layouts: &mut LayoutFinder<'a>,
    at: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = query_of(sql, chunk.len() * EXISTING_COLS);
    for w in chunk {
        q = bind_entry(
            q.bind(w.id.unwrap_or_default()),
            &c.sync,
            c.run_id,
            w,
            layouts,
        )
        .bind(at);
    }
    q
}

type LogRow<'a> = (
    Option<String>,
    Option<String>,
    &'a str,
    String,
    Option<String>,
    Option<String>,
);

/// The time as the store writes it (RFC 3339, UTC, microseconds), so that
/// stored times compare as text.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ph(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seen values as stored: a JSON object of field → value, each value in
/// its shortest form. Text is a plain string, whole numbers and booleans are
/// themselves, empty is `null`, and every other type is `[tag, value]` with a
/// one-letter tag (`SHORT_TAGS`). The tagged form `{"t": …, "v": …}` that
/// earlier versions wrote is read too.
fn to_json(f: &Option<Fields>) -> Option<String> {
    Some(serde_json::to_string(&CompactFields(f.as_ref()?)).expect("fields serialise"))
}

/// Writes seen values in the stored form straight to JSON text.
struct CompactFields<'a>(&'a Fields);

impl Serialize for CompactFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &CompactValue(v))?;
        }
        m.end()
    }
}

struct CompactValue<'a>(&'a Value);

impl Serialize for CompactValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Text(t) => s.serialize_str(t),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Decimal(d) => ("d", d.to_string()).serialize(s),
            Value::Date(d) => ("D", d).serialize(s),
            Value::DateTime(t) => ("t", t).serialize(s),
            Value::Enum(v) => ("e", v).serialize(s),
            Value::MultiEnum(v) => ("m", v).serialize(s),
            Value::Email(v) => ("@", v).serialize(s),
            Value::Phone(v) => ("p", v).serialize(s),
            Value::Ref(v) => ("r", v).serialize(s),
        }
    }
}

/// Each long tag of a value's serde form and the short one stored.
const SHORT_TAGS: [(&str, &str); 8] = [
    ("decimal", "d"),
    ("date", "D"),
    ("date_time", "t"),
    ("enum", "e"),
    ("multi_enum", "m"),
    ("email", "@"),
    ("phone", "p"),
    ("ref", "r"),
];

fn expand_value(j: serde_json::Value) -> std::result::Result<Value, serde_json::Error> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => Value::Null,
        J::String(t) => Value::Text(t),
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => {
                serde_json::from_value(serde_json::json!({"t": "decimal", "v": n.to_string()}))?
            }
        },
        J::Array(mut pair) if pair.len() == 2 => {
            let v = pair.pop().unwrap_or_default();
            let tag = pair.pop().unwrap_or_default();
            let tag = tag.as_str().unwrap_or_default();
            let long = SHORT_TAGS
                .iter()
                .find(|(_, s)| *s == tag)
                .map_or(tag, |(l, _)| l);
            serde_json::from_value(serde_json::json!({"t": long, "v": v}))?
        }
        // The tagged form of earlier versions.
        other => serde_json::from_value(other)?,
    })
}

/// Fields in an intent, written like seen values (either form reads).
mod compact_fields {
    use super::*;
    use serde::de::Error;

    pub fn serialize<S: serde::Serializer>(
        f: &Fields,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        CompactFields(f).serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Fields, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        map.into_iter()
            .map(|(k, v)| Ok((k, expand_value(v).map_err(D::Error::custom)?)))
            .collect()
    }
}

mod compact_opt_fields {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        f: &Option<Fields>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        f.as_ref().map(CompactFields).serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Fields>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::compact_fields")] Fields);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

fn from_json(s: Option<String>) -> Result<Option<Fields>> {
    let Some(s) = s else { return Ok(None) };
    let corrupt = |e: serde_json::Error| StateError::Corrupt(format!("seen values: {e}"));
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&s).map_err(corrupt)?;
    map.into_iter()
        .map(|(k, v)| Ok((k, expand_value(v).map_err(corrupt)?)))
        .collect::<Result<Fields>>()
        .map(Some)
}

/// What `key_b` holds when it equals `key_a` (most links): the key is not
/// stored twice. A key lookup finds the entry through `key_a`. `seen_b`
/// holds it too when b's seen values are exactly a's (see `stored_seen`).
const SAME_KEY: &str = "\u{1}";

/// `entries_where`'s column for a lookup by key_b: the condition the
/// partial index `entries_key_b` holds its rows under comes with it, or the
/// index could not serve the lookup.
const KEY_B_HELD: &str = "key_b <> '\u{1}' AND key_b";

fn stored_key_b(e: &Entry) -> Option<&str> {
    match (&e.key_a, &e.key_b) {
        (Some(a), Some(b)) if a == b => Some(SAME_KEY),
        (_, b) => b.as_deref(),
    }
}

fn value_json(v: &Value) -> String {
    serde_json::to_string(v).expect("value serialises")
}

/// The `SET` list of an existing entry's columns outside every index, from
/// the row `new` (the in-place update's values, or an upsert's `excluded`).
fn unindexed_sets(new: &str) -> String {
    format!(
        "seen_a = {new}.seen_a, seen_b = {new}.seen_b,
         deleted_a = {new}.deleted_a, deleted_b = {new}.deleted_b, echo_a = {new}.echo_a, echo_b = {new}.echo_b,
         reason = {new}.reason, category = {new}.category, message = {new}.message, hint = {new}.hint,
         attempts = CASE WHEN {new}.attempts = 1 THEN entries.attempts + 1 ELSE 0 END,
         updated_at = {new}.updated_at, layout = {new}.layout,
         created_run = COALESCE({new}.created_run, entries.created_run),
         created_side = COALESCE({new}.created_side, entries.created_side),
         deleted_at = CASE WHEN {new}.deleted_a = 1 OR {new}.deleted_b = 1
           THEN COALESCE(entries.deleted_at, {new}.updated_at) ELSE NULL END"
    )
}

/// An entry's seen values as stored. With a layout (`by_layout`), each
/// side's values by position, the names being the layout's; without one,
/// as objects of names and values (how entries were written before
/// layouts). Either way, b's values are stored by position against a's
/// where they line up (with a layout only those that differ, `Sparse`;
/// without, all, `[]` for a value exactly as a's), and as one mark when
/// every value is a's.
fn stored_seen(e: &Entry, by_layout: bool) -> (Option<String>, Option<String>) {
    let values = |f: &Fields, key: Option<&str>| {
        serde_json::to_string(&ByLayout { values: f, key }).expect("fields serialise")
    };
    let seen_a = match (&e.seen_a, by_layout) {
        (Some(a), true) => Some(values(a, e.key_a.as_deref())),
        (a, _) => to_json(a),
    };
    let seen_b = match (&e.seen_a, &e.seen_b) {
        (Some(a), Some(b)) if a.len() == b.len() && (by_layout || a.keys().eq(b.keys())) => {
            let by_position: Vec<Positioned<'_>> = a
                .values()
                .zip(b.values())
                .map(|(x, y)| match Positioned::of(x, y) {
                    // Only a layout's form has the mark.
                    Positioned::AsText(_) if !by_layout => Positioned::Own(CompactValue(y)),
                    p => p,
                })
                .collect();
            if by_position.iter().all(|p| matches!(p, Positioned::Same)) {
                Some(SAME_KEY.to_string())
            } else if by_layout {
                Some(serde_json::to_string(&Sparse(&by_position)).expect("fields serialise"))
            } else {
                Some(serde_json::to_string(&ByPosition(&by_position)).expect("fields serialise"))
            }
        }
        (_, Some(b)) if by_layout => Some(values(b, None)),
        (_, b) => to_json(b),
    };
    (seen_a, seen_b)
}

/// Values equal and written alike (a decimal's scale too).
fn exactly(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Decimal(p), Value::Decimal(q)) => p == q && p.scale() == q.scale(),
        _ => x == y,
    }
}

/// b's seen values by position: `[]` where a's value stands.
struct ByPosition<'a>(&'a [Positioned<'a>]);

/// One of b's values against a's at the same position.
enum Positioned<'a> {
    /// Exactly a's: `[]`.
    Same,
    /// a's value as text, of the kind the tag names (text where a's is an
    /// e-mail address or a picklist value): `["s"]`, `["e"]`, `["@"]`...
    AsText(&'static str),
    /// Its own value.
    Own(CompactValue<'a>),
}

impl<'a> Positioned<'a> {
    fn of(x: &Value, y: &'a Value) -> Positioned<'a> {
        if exactly(x, y) {
            return Positioned::Same;
        }
        let Some((tag, _)) = text_tag(y) else {
            return Positioned::Own(CompactValue(y));
        };
        match x.to_text().and_then(|t| as_text(tag, t)) {
            Some(v) if exactly(&v, y) => Positioned::AsText(tag),
            _ => Positioned::Own(CompactValue(y)),
        }
    }
}

/// One side's values in a layout's order. A value that is the entry's
/// match key as stored in `key_a` (an e-mail address, most often) is not
/// stored twice: `["k", tag]` stands for the key, of the kind the tag names.
struct ByLayout<'a> {
    values: &'a Fields,
    key: Option<&'a str>,
}

impl Serialize for ByLayout<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.values.len()))?;
        for v in self.values.values() {
            match self.key.and_then(|k| key_tag(v, k)) {
                Some(tag) => seq.serialize_element(&("k", tag))?,
                None => seq.serialize_element(&CompactValue(v))?,
            }
        }
        seq.end()
    }
}

/// The tag under which `v` is the key `k` as text, when it is.
fn key_tag(v: &Value, k: &str) -> Option<&'static str> {
    text_tag(v).filter(|(_, t)| *t == k).map(|(tag, _)| tag)
}

/// A value that is text of some kind: the kind's tag and the text
/// (`as_text` builds it back).
fn text_tag(v: &Value) -> Option<(&'static str, &str)> {
    Some(match v {
        Value::Text(t) => ("s", t),
        Value::Enum(t) => ("e", t),
        Value::Email(t) => ("@", t),
        Value::Phone(t) => ("p", t),
        Value::Ref(t) => ("r", t),
        _ => return None,
    })
}

/// A value of the kind `tag` names from its text (`Positioned::AsText`).
fn as_text(tag: &str, t: String) -> Option<Value> {
    Some(match tag {
        "s" => Value::Text(t),
        "e" => Value::Enum(t),
        "@" => Value::Email(t),
        "p" => Value::Phone(t),
        "r" => Value::Ref(t),
        _ => return None,
    })
}

/// b's values by position in a layout's form: only those not exactly a's,
/// by their position (`{"4": ["e"]}`).
struct Sparse<'a>(&'a [Positioned<'a>]);

impl Serialize for Sparse<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.0.iter().enumerate() {
            match v {
                Positioned::Same => {}
                Positioned::AsText(tag) => m.serialize_entry(&k, &[tag])?,
                Positioned::Own(v) => m.serialize_entry(&k, v)?,
            }
        }
        m.end()
    }
}

impl Serialize for ByPosition<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            match v {
                Positioned::Same => seq.serialize_element(&[(); 0])?,
                Positioned::AsText(tag) => seq.serialize_element(&[tag])?,
                Positioned::Own(v) => seq.serialize_element(v)?,
            }
        }
        seq.end()
    }
}

/// A layout from its stored form (`Layout::key_of`).
fn parse_layout(key: &str) -> Result<Layout> {
    let (a, b): (Vec<String>, Vec<String>) = serde_json::from_str(key)
        .map_err(|e| StateError::Corrupt(format!("layout {key:?}: {e}")))?;
    Ok(Layout { a, b })
}

/// An entry's seen values from their stored form (`stored_seen`), with
/// the names of its layout when it has one.
fn seen_from(
    a: Option<String>,
    b: Option<String>,
    layout: Option<&Layout>,
    key_a: Option<&str>,
) -> Result<(Option<Fields>, Option<Fields>)> {
    let corrupt = |why: String| StateError::Corrupt(format!("seen values: {why}"));
    let list = |s: &str| -> Result<Vec<serde_json::Value>> {
        serde_json::from_str(s).map_err(|e| corrupt(e.to_string()))
    };
    let named = |names: &[String], list: Vec<serde_json::Value>| -> Result<Fields> {
        if names.len() != list.len() {
            return Err(corrupt(format!(
                "{} values for the layout's {} fields",
                list.len(),
                names.len()
            )));
        }
        names
            .iter()
            .zip(list)
            .map(|(k, j)| {
                let v = match &j {
                    serde_json::Value::Array(x) if x.len() == 2 && x[0] == "k" => key_a
                        .and_then(|key| as_text(x[1].as_str().unwrap_or_default(), key.into()))
                        .ok_or_else(|| corrupt(format!("{k}: no key for {x:?}")))?,
                    _ => expand_value(j).map_err(|e| corrupt(e.to_string()))?,
                };
                Ok((k.clone(), v))
            })
            .collect()
    };
    let seen_a = match (a, layout) {
        (Some(s), Some(l)) => Some(named(&l.a, list(&s)?)?),
        (a, _) => from_json(a)?,
    };
    let seen_b = match b {
        // Every value as a's: under a's names without a layout.
        Some(s) if s == SAME_KEY => match (&seen_a, layout) {
            (Some(a), Some(l)) => Some(
                l.b.iter()
                    .cloned()
                    .zip(a.values().cloned())
                    .collect::<Fields>(),
            ),
            (a, _) => a.clone(),
        },
        // A layout's sparse form: a's values, but where b's differ.
        Some(s) if s.starts_with('{') && layout.is_some() => {
            let (Some(a), Some(l)) = (&seen_a, layout) else {
                return Err(corrupt("b's values by position without a's".into()));
            };
            let mut values: Vec<Value> = a.values().cloned().collect();
            let differ: BTreeMap<usize, serde_json::Value> =
                serde_json::from_str(&s).map_err(|e| corrupt(e.to_string()))?;
            for (k, j) in differ {
                let slot = values
                    .get_mut(k)
                    .ok_or_else(|| corrupt(format!("b's value {k} past a's")))?;
                *slot = match j {
                    serde_json::Value::Array(x) if x.len() == 1 && x[0].is_string() => slot
                        .to_text()
                        .and_then(|t| as_text(x[0].as_str().unwrap_or_default(), t))
                        .ok_or_else(|| corrupt(format!("b's value {k}: not a's as {x:?}")))?,
                    j => expand_value(j).map_err(|e| corrupt(e.to_string()))?,
                };
            }
            if l.b.len() != values.len() {
                return Err(corrupt("b's values do not match their names".into()));
            }
            Some(l.b.iter().cloned().zip(values).collect())
        }
        Some(s) if s.starts_with('[') => {
            let list = list(&s)?;
            let names: Vec<String> = match (&seen_a, layout) {
                (_, Some(l)) => l.b.clone(),
                (Some(a), None) => a.keys().cloned().collect(),
                (None, None) => Vec::new(),
            };
            let by_position: Option<Vec<&Value>> = seen_a
                .as_ref()
                .filter(|a| a.len() == list.len())
                .map(|a| a.values().collect());
            if names.len() != list.len() {
                return Err(corrupt("b's values do not match their names".into()));
            }
            let mut out = Fields::new();
            for (k, (n, j)) in names.into_iter().zip(list).enumerate() {
                let v = match (j, &by_position) {
                    (serde_json::Value::Array(x), Some(a)) if x.is_empty() => a[k].clone(),
                    (serde_json::Value::Array(x), None) if x.is_empty() && layout.is_none() => {
                        return Err(corrupt("stored by position, but a's do not match".into()))
                    }
                    (j, _) => expand_value(j).map_err(|e| corrupt(e.to_string()))?,
                };
                out.insert(n, v);
            }
            Some(out)
        }
        other => from_json(other)?,
    };
    Ok((seen_a, seen_b))
}

/// How a status is stored: its name, the reason's code and message (excluded,
/// waiting), or the failure's category, message and hint.
#[derive(Default)]
struct StatusColumns {
    status: &'static str,
    code: Option<&'static str>,
    reason: Option<String>,
    category: Option<String>,
    message: Option<String>,
    hint: Option<String>,
}

fn status_columns(s: &Status) -> StatusColumns {
    match s {
        Status::InSync => StatusColumns {
            status: "in_sync",
            ..StatusColumns::default()
        },
        Status::Failed(f) => StatusColumns {
            status: "failed",
            category: Some(f.category.as_str().to_string()),
            message: Some(f.message.clone()),
            hint: Some(f.hint.clone()),
            ..StatusColumns::default()
        },
        Status::Excluded(x) => StatusColumns {
            status: "excluded",
            code: Some(x.code()),
            reason: Some(x.message().to_string()),
            hint: Some(x.hint().to_string()),
            ..StatusColumns::default()
        },
        Status::Waiting(w) => StatusColumns {
            status: "waiting",
            code: Some(w.code()),
            reason: Some(w.message().to_string()),
            ..StatusColumns::default()
        },
        Status::Deleted => StatusColumns {
            status: "deleted",
            ..StatusColumns::default()
        },
    }
}

impl StateStore {
    /// Opens (creating it if needed) and migrates the store at `url`:
    /// `sqlite://path/to/state.db` or `postgres://…`.
    pub async fn open(url: &str) -> Result<StateStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StateError::Open {
                url: url.to_string(),
                source: sqlx::Error::Configuration(
                    "the state url must start with sqlite:// or postgres://".into(),
                ),
            });
        };
        let mut conn_url = url.to_string();
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or("");
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| StateError::Open {
                        url: url.to_string(),
                        source: sqlx::Error::Io(e),
                    })?;
                }
            }
            if !conn_url.contains("mode=") {
                conn_url.push_str(if conn_url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let opts = AnyConnectOptions::from_str(&conn_url)
            .map_err(|e| StateError::Open {
                url: url.to_string(),
                source: e,
            })?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 4 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        // 8 MiB of pages (2 MiB by default): a run's lookups
                        // and updates land all over a large store's indexes.
                        sqlx::query("PRAGMA cache_size = -8192")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA wal_autocheckpoint = 16384")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StateError::Open {
                url: url.to_string(),
                source: e,
            })?;
        let store = StateStore {
            pool,
            backend,
            shapes: Default::default(),
            layouts: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The statement for this backend: SQLite gets anonymous `?`
    /// placeholders (sqlx looks up each numbered one by name, and SQLite
    /// walks a list to answer, which makes wide statements quadratic).
    /// Placeholders are numbered in order and never reused, so this is exact.
    /// `head`, then `rows` groups of `cols` placeholders (`($1, $2), ($3,
    /// $4)`), then `tail`, in this backend's dialect. A pass sends the same
    /// few shapes thousands of times: each is built once and kept.
    fn rows_sql(&self, head: &str, tail: &str, cols: usize, rows: usize) -> std::sync::Arc<str> {
        let key = (format!("{head}\u{0}{tail}"), cols, rows);
        let mut shapes = self.shapes.lock().expect("statement shapes");
        if let Some(sql) = shapes.get(&key) {
            return sql.clone();
        }
        let groups: Vec<String> = (0..rows)
            .map(|i| format!("({})", ph(1 + i * cols, cols)))
            .collect();
        let sql: std::sync::Arc<str> = self
            .sql(&format!("{head} {} {tail}", groups.join(", ")))
            .into();
        if shapes.len() < 256 {
            shapes.insert(key, sql.clone());
        }
        sql
    }

    /// `head (` then `n` placeholders from `$first` on `) tail`, built once
    /// per shape like `rows_sql`: an `IN (…)` list.
    fn list_sql(&self, head: &str, tail: &str, first: usize, n: usize) -> std::sync::Arc<str> {
        let key = (format!("{head}\u{1}{tail}"), first, n);
        let mut shapes = self.shapes.lock().expect("statement shapes");
        if let Some(sql) = shapes.get(&key) {
            return sql.clone();
        }
        let sql: std::sync::Arc<str> = self
            .sql(&format!("{head} ({}) {tail}", ph(first, n)))
            .into();
        if shapes.len() < 256 {
            shapes.insert(key, sql.clone());
        }
        sql
    }

    pub(crate) fn sql(&self, q: &str) -> String {
        if self.backend == Backend::Postgres {
            return q.to_string();
        }
        let mut out = String::with_capacity(q.len());
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // One migrator at a time across processes.
            sqlx::query(&self.sql("SELECT pg_advisory_xact_lock(7202611)"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&self.sql(
            "CREATE TABLE IF NOT EXISTS puente_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ))
        .execute(&mut *tx)
        .await?;
        let version: Option<String> = sqlx::query_scalar(
            &self.sql("SELECT value FROM puente_meta WHERE key = 'schema_version'"),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let current = match version.as_deref() {
            None => 0,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= MIGRATIONS.len() => n,
                _ => return Err(StateError::Corrupt(format!("schema version {v}"))),
            },
        };
        if current < MIGRATIONS.len() {
            let (pk, int) = match self.backend {
                Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
                Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BIGINT"),
            };
            for migration in &MIGRATIONS[current..] {
                let sql = migration
                    .replace("{PK}", pk)
                    .replace("{INT}", int)
                    .replace("{SAME_KEY}", &format!("'{SAME_KEY}'"));
                for stmt in sql.split(';').map(str::trim).filter(|s| {
                    !s.is_empty()
                        && !s
                            .lines()
                            .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
                }) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
            }
            sqlx::query(&self.sql(
                "INSERT INTO puente_meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            ))
            .bind(MIGRATIONS.len().to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- runs -------------------------------------------------------------

    pub async fn start_run(&self, sync: &str, dry_run: bool) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            &self.sql("INSERT INTO runs (sync, started_at, status, dry_run) VALUES ($1, $2, 'running', $3) RETURNING id"),
        )
        .bind(sync)
        .bind(now())
        .bind(dry_run as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn finish_run(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(&self.sql(
            "UPDATE runs SET finished_at = $1, status = $2, counts = $3, error = $4 WHERE id = $5",
        ))
        .bind(now())
        .bind(status)
        .bind(counts.to_string())
        .bind(error.map(str::to_string))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn runs(&self, sync: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, sync, started_at, finished_at, status, dry_run, counts, error FROM runs
             WHERE ($1 = '' OR sync = $2) ORDER BY id DESC LIMIT $3",
        ))
        .bind(sync.unwrap_or(""))
        .bind(sync.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    id: r.try_get("id")?,
                    sync: r.try_get("sync")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    status: r.try_get("status")?,
                    dry_run: r.try_get::<i64, _>("dry_run")? != 0,
                    counts: r
                        .try_get::<Option<String>, _>("counts")?
                        .and_then(|c| serde_json::from_str(&c).ok()),
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    // ----- cursors and markers ----------------------------------------------

    /// Sets a per-sync marker (a pause, the last reconciliation) outside a
    /// run's commit.
    pub async fn set_marker(
        &self,
        sync: &str,
        marker: Marker,
        value: &serde_json::Value,
    ) -> Result<()> {
        let name = marker.name();
        sqlx::query(&self.sql(
            "INSERT INTO cursors (sync, side, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sync, side) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        ))
        .bind(sync)
        .bind(name)
        .bind(value.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A sync's committed cursor or other marker.
    pub async fn marker(&self, sync: &str, marker: Marker) -> Result<Option<serde_json::Value>> {
        let v: Option<String> = sqlx::query_scalar(
            &self.sql("SELECT value FROM cursors WHERE sync = $1 AND side = $2"),
        )
        .bind(sync)
        .bind(marker.name())
        .fetch_optional(&self.pool)
        .await?;
        v.map(|s| serde_json::from_str(&s).map_err(|e| StateError::Corrupt(e.to_string())))
            .transpose()
    }

    // ----- entries ----------------------------------------------------------

    const ENTRY_COLS: &'static str = "id, a_id, b_id, key_a, key_b, seen_a, seen_b, deleted_a, deleted_b, echo_a, echo_b, status, reason_code, reason, category, message, hint, layout";

    /// The ids of the layouts of `entries`' seen values, each added to the
    /// `layouts` table the first time it is written (on its own, so that a
    /// rolled-back commit leaves no id this process would trust).
    async fn layout_ids<'e>(
        &self,
        entries: impl Iterator<Item = &'e Entry>,
    ) -> Result<HashMap<String, i64>> {
        let mut missing = std::collections::BTreeSet::new();
        {
            let cache = self.layouts.lock().expect("layouts lock");
            let mut finder = LayoutFinder::new(&cache.ids);
            for e in entries {
                if let Some(Err(key)) = finder.key(e) {
                    if finder.remember(e, &key).is_none() {
                        missing.insert(key);
                    }
                }
            }
            if missing.is_empty() {
                return Ok(cache.ids.clone());
            }
        }
        for key in missing {
            sqlx::query(
                &self.sql("INSERT INTO layouts (names) VALUES ($1) ON CONFLICT (names) DO NOTHING"),
            )
            .bind(&key)
            .execute(&self.pool)
            .await?;
            let id: i64 = sqlx::query_scalar(&self.sql("SELECT id FROM layouts WHERE names = $1"))
                .bind(&key)
                .fetch_one(&self.pool)
                .await?;
            let layout = parse_layout(&key)?;
            let mut cache = self.layouts.lock().expect("layouts lock");
            cache.ids.insert(key, id);
            cache.by_id.insert(id, std::sync::Arc::new(layout));
        }
        Ok(self.layouts.lock().expect("layouts lock").ids.clone())
    }

    /// The layouts `rows` name, read from the table where this process has
    /// not seen them yet.
    async fn layouts_of(&self, rows: &[AnyRow]) -> Result<HashMap<i64, std::sync::Arc<Layout>>> {
        let mut ids = std::collections::BTreeSet::new();
        for r in rows {
            if let Some(id) = r.try_get::<Option<i64>, _>("layout")? {
                ids.insert(id);
            }
        }
        let mut out = HashMap::new();
        for id in ids {
            let cached = self
                .layouts
                .lock()
                .expect("layouts lock")
                .by_id
                .get(&id)
                .cloned();
            let layout = match cached {
                Some(l) => l,
                None => {
                    let key: String =
                        sqlx::query_scalar(&self.sql("SELECT names FROM layouts WHERE id = $1"))
                            .bind(id)
                            .fetch_optional(&self.pool)
                            .await?
                            .ok_or_else(|| StateError::Corrupt(format!("no layout {id}")))?;
                    let l = std::sync::Arc::new(parse_layout(&key)?);
                    let mut cache = self.layouts.lock().expect("layouts lock");
                    cache.ids.insert(key, id);
                    cache.by_id.insert(id, l.clone());
                    l
                }
            };
            out.insert(id, layout);
        }
        Ok(out)
    }

    /// Entries from their rows, with the layouts the rows name.
    async fn entries_from_rows(&self, rows: &[AnyRow]) -> Result<Vec<Entry>> {
        let layouts = self.layouts_of(rows).await?;
        rows.iter()
            .map(|r| Self::entry_from_row(r, &layouts))
            .collect()
    }

    fn entry_from_row(r: &AnyRow, layouts: &HashMap<i64, std::sync::Arc<Layout>>) -> Result<Entry> {
        let status: String = r.try_get("status")?;
        let reason: Option<String> = r.try_get("reason")?;
        let code: Option<String> = r.try_get("reason_code")?;
        let code = code.unwrap_or_default();
        let unknown = || StateError::Corrupt(format!("{status} reason {code:?}"));
        let status = match status.as_str() {
            "in_sync" => Status::InSync,
            "excluded" => Status::Excluded(
                Exclusion::from_stored(&code, reason.unwrap_or_default()).ok_or_else(unknown)?,
            ),
            "waiting" => Status::Waiting(
                Wait::from_stored(&code, reason.unwrap_or_default()).ok_or_else(unknown)?,
            ),
            "deleted" => Status::Deleted,
            "failed" => {
                let cat: Option<String> = r.try_get("category")?;
                let category = cat
                    .as_deref()
                    .and_then(FailureCategory::parse)
                    .unwrap_or(FailureCategory::Server);
                Status::Failed(Failure {
                    category,
                    message: r
                        .try_get::<Option<String>, _>("message")?
                        .unwrap_or_default(),
                    hint: r.try_get::<Option<String>, _>("hint")?.unwrap_or_default(),
                })
            }
            other => return Err(StateError::Corrupt(format!("status {other}"))),
        };
        let mut e = Entry::new(r.try_get("id")?);
        e.a_id = r.try_get("a_id")?;
        e.b_id = r.try_get("b_id")?;
        e.key_a = r.try_get("key_a")?;
        e.key_b = match r.try_get::<Option<String>, _>("key_b")? {
            Some(k) if k == SAME_KEY => e.key_a.clone(),
            other => other,
        };
        let layout = match r.try_get::<Option<i64>, _>("layout")? {
            Some(id) => Some(
                layouts
                    .get(&id)
                    .ok_or_else(|| StateError::Corrupt(format!("no layout {id}")))?
                    .as_ref(),
            ),
            None => None,
        };
        (e.seen_a, e.seen_b) = seen_from(
            r.try_get("seen_a")?,
            r.try_get("seen_b")?,
            layout,
            e.key_a.as_deref(),
        )?;
        e.deleted_a = r.try_get::<i64, _>("deleted_a")? != 0;
        e.deleted_b = r.try_get::<i64, _>("deleted_b")? != 0;
        e.echo_a = r.try_get::<i64, _>("echo_a")? != 0;
        e.echo_b = r.try_get::<i64, _>("echo_b")? != 0;
        e.status = status;
        Ok(e)
    }

    /// Entries whose `column` is one of `values`, with their open conflicts.
    async fn entries_where(
        &self,
        sync: &str,
        column: &str,
        values: &[String],
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for chunk in values.chunks(CHUNK) {
            let sql = self.list_sql(
                &format!(
                    "SELECT {} FROM entries WHERE sync = $1 AND {column} IN",
                    Self::ENTRY_COLS
                ),
                "",
                2,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql).bind(sync);
            for v in chunk {
                q = q.bind(v.as_str());
            }
            let rows = q.fetch_all(&self.pool).await?;
            out.extend(self.entries_from_rows(&rows).await?);
        }
        self.attach_conflicts(sync, &mut out).await?;
        Ok(out)
    }

    async fn attach_conflicts(&self, sync: &str, entries: &mut [Entry]) -> Result<()> {
        // Most syncs have no open conflict: one look instead of a query per chunk.
        let any_open: Option<i64> = sqlx::query_scalar(
            &self.sql("SELECT 1 FROM conflicts WHERE sync = $1 AND state <> 'applied' LIMIT 1"),
        )
        .bind(sync)
        .fetch_optional(&self.pool)
        .await?;
        if entries.is_empty() || any_open.is_none() {
            return Ok(());
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        let mut by_entry: HashMap<i64, Vec<(String, String, Option<String>)>> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT entry_id, field_a, state, resolution FROM conflicts WHERE state <> 'applied' AND entry_id IN ({})",
                ph(1, chunk.len())
            ));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                by_entry.entry(r.try_get("entry_id")?).or_default().push((
                    r.try_get("field_a")?,
                    r.try_get("state")?,
                    r.try_get("resolution")?,
                ));
            }
        }
        for e in entries.iter_mut() {
            for (field, state, resolution) in by_entry.remove(&e.id).unwrap_or_default() {
                e.held.insert(field.clone());
                if state == "resolved" {
                    let res = resolution
                        .as_deref()
                        .map(serde_json::from_str::<ResolutionJson>)
                        .transpose()
                        .map_err(|e| StateError::Corrupt(e.to_string()))?;
                    if let Some(r) = res {
                        e.resolutions.insert(field, r.into());
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn entries_by_ids(
        &self,
        sync: &str,
        side: Side,
        ids: &[String],
    ) -> Result<Vec<Entry>> {
        let col = if side == Side::A { "a_id" } else { "b_id" };
        self.entries_where(sync, col, ids).await
    }

    /// Entries whose match key on either side is one of `keys`.
    pub async fn entries_by_keys(&self, sync: &str, keys: &[String]) -> Result<Vec<Entry>> {
        let mut out = self.entries_where(sync, "key_a", keys).await?;
        let seen: std::collections::HashSet<i64> = out.iter().map(|e| e.id).collect();
        out.extend(
            self.entries_where(sync, KEY_B_HELD, keys)
                .await?
                .into_iter()
                .filter(|e| !seen.contains(&e.id)),
        );
        Ok(out)
    }

    pub async fn entries_by_entry_ids(&self, sync: &str, ids: &[i64]) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "SELECT {} FROM entries WHERE sync = $1 AND id IN ({})",
                Self::ENTRY_COLS,
                ph(2, chunk.len())
            ));
            let mut q = sqlx::query(&sql).bind(sync);
            for v in chunk {
                q = q.bind(*v);
            }
            let rows = q.fetch_all(&self.pool).await?;
            out.extend(self.entries_from_rows(&rows).await?);
        }
        self.attach_conflicts(sync, &mut out).await?;
        Ok(out)
    }

    /// One page of the entries a run must look at again whatever the cursors
    /// say: failed records (retried), waiting ones, and conflicts a person
    /// has settled; in id order, `limit` at most.
    pub async fn revisit_page(&self, sync: &str, r: &Revisit, limit: usize) -> Result<Vec<Entry>> {
        let ids: Vec<i64> = sqlx::query_scalar(&self.sql(
            // The candidates through indexes (statuses, settled conflicts),
            // never a scan of every entry: most of a large sync is in sync.
            "SELECT id FROM entries e WHERE id IN
                 (SELECT id FROM entries WHERE sync = $1 AND status <> 'in_sync' AND status IN ('failed', 'waiting')
                  UNION ALL SELECT entry_id FROM conflicts WHERE sync = $2 AND state = 'resolved')
               AND id > $3 AND updated_at < $4
               AND ($5 = '' OR reason_code = $6) AND ($7 = '' OR reason_code IS NULL OR reason_code <> $8)
             ORDER BY id LIMIT $9",
        ))
        .bind(sync)
        .bind(sync)
        .bind(r.after)
        .bind(r.before.clone())
        .bind(r.only.unwrap_or(""))
        .bind(r.only.unwrap_or(""))
        .bind(r.skip.unwrap_or(""))
        .bind(r.skip.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = self.entries_by_entry_ids(sync, &ids).await?;
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Every record id known on `side` that is not marked deleted there
    /// (for delete detection by key diff).
    pub async fn live_ids(&self, sync: &str, side: Side) -> Result<Vec<(i64, String)>> {
        let sql = if side == Side::A {
            "SELECT id, a_id AS rid FROM entries WHERE sync = $1 AND a_id IS NOT NULL AND deleted_a = 0"
        } else {
            "SELECT id, b_id AS rid FROM entries WHERE sync = $1 AND b_id IS NOT NULL AND deleted_b = 0"
        };
        // Streamed: a million rows held at once as rows cost hundreds of
        // megabytes; the pairs alone, a tenth of that.
        use futures::TryStreamExt;
        let mut rows = sqlx::query(sql).bind(sync).fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await? {
            out.push((r.try_get("id")?, r.try_get("rid")?));
        }
        Ok(out)
    }

    /// Records merged into others on `side` (old id → surviving id). An
    /// entry whose record was merged away follows the survivor when no
    /// entry holds the survivor yet; otherwise the other side now holds two
    /// records for one, and the merged entry is excluded with that reason
    /// (never read as a delete). Returns the entries handled.
    pub async fn relink_merged(
        &self,
        sync: &str,
        side: Side,
        merges: &[(String, String)],
    ) -> Result<Vec<i64>> {
        let col = if side == Side::A { "a_id" } else { "b_id" };
        let now = chrono::Utc::now().to_rfc3339();
        let mut handled = Vec::new();
        let mut tx = self.pool.begin().await?;
        for (old, new) in merges {
            let find = self.sql(&format!(
                "SELECT id FROM entries WHERE sync = $1 AND {col} = $2"
            ));
            let Some(old_entry) = sqlx::query(&find)
                .bind(sync)
                .bind(old)
                .fetch_optional(&mut *tx)
                .await?
            else {
                continue;
            };
            let old_entry: i64 = old_entry.try_get("id")?;
            let holder = sqlx::query(&find)
                .bind(sync)
                .bind(new)
                .fetch_optional(&mut *tx)
                .await?;
            if holder.is_none() {
                let q = self.sql(&format!(
                    "UPDATE entries SET {col} = $1, updated_at = $2 WHERE id = $3"
                ));
                sqlx::query(&q)
                    .bind(new)
                    .bind(&now)
                    .bind(old_entry)
                    .execute(&mut *tx)
                    .await?;
            } else {
                let q = self.sql(
                    "UPDATE entries SET status = 'excluded', reason_code = $1, reason = $2, category = NULL, message = NULL, hint = $3, updated_at = $4 WHERE id = $5",
                );
                let why = Exclusion::Merged(format!("{side} record {old} was merged into {new}, which is linked to another record: the other side now holds two records for one"));
                sqlx::query(&q)
                    .bind(why.code())
                    .bind(why.message().to_string())
                    .bind(why.hint())
                    .bind(&now)
                    .bind(old_entry)
                    .execute(&mut *tx)
                    .await?;
            }
            handled.push(old_entry);
        }
        tx.commit().await?;
        Ok(handled)
    }

    /// Entries deleted on `side` and not on the other: what `restore` recreates.
    pub async fn deleted_on(&self, sync: &str, side: Side) -> Result<Vec<Entry>> {
        let sql = self.sql(&format!(
            "SELECT {} FROM entries WHERE sync = $1 AND {} = 1 ORDER BY id",
            Self::ENTRY_COLS,
            if side == Side::A {
                "deleted_a"
            } else {
                "deleted_b"
            }
        ));
        let rows = sqlx::query(&sql).bind(sync).fetch_all(&self.pool).await?;
        self.entries_from_rows(&rows).await
    }

    /// For a parent sync: the partner ids of `ids` on `from`'s other side.
    pub async fn translate_ids(
        &self,
        sync: &str,
        from: Side,
        ids: &[String],
    ) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for e in self.entries_by_ids(sync, from, ids).await? {
            if e.deleted_a || e.deleted_b {
                continue;
            }
            if let (Some(a), Some(b)) = (e.a_id, e.b_id) {
                match from {
                    Side::A => out.insert(a, b),
                    Side::B => out.insert(b, a),
                };
            }
        }
        Ok(out)
    }

    // ----- intents ----------------------------------------------------------

    /// Records intents, committed before the creates they announce: one
    /// row for the batch (`MANY_INTENTS`), whatever its size. Returns the
    /// batch token that settles them all in a later commit.
    pub async fn add_intents(
        &self,
        sync: &str,
        intents: &[IntentRef<'_>],
        lease: Option<&Lease>,
    ) -> Result<String> {
        let batch = IntentBatch::new(intents);
        self.add_intent_batch(sync, &batch, lease).await?;
        Ok(batch.token)
    }

    /// Records a batch of intents already serialised (`IntentBatch::new`),
    /// so that a pass can record the next chunk's while it writes this one.
    pub async fn add_intent_batch(
        &self,
        sync: &str,
        batch: &IntentBatch,
        lease: Option<&Lease>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = lease {
            self.fence(&mut tx, lease).await?;
        }
        sqlx::query(&self.sql(
            "INSERT INTO intents (sync, side, entry_id, source_id, conditions, payload, created_at, batch)
             VALUES ($1, $2, NULL, '', '[]', $3, $4, $5)",
        ))
        .bind(sync)
        .bind(MANY_INTENTS)
        .bind(batch.payload.as_str())
        .bind(now())
        .bind(batch.token.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The intents no commit has settled, in the order they were recorded.
    /// Those of one batch share the id of its row.
    pub async fn pending_intents(&self, sync: &str) -> Result<Vec<Intent>> {
        let rows = sqlx::query(
            &self.sql("SELECT id, side, entry_id, source_id, conditions, payload FROM intents WHERE sync = $1 ORDER BY id"),
        )
        .bind(sync)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let side: String = r.try_get("side")?;
            let payload: String = r.try_get("payload")?;
            if side == MANY_INTENTS {
                let items: Vec<ReadIntent> = serde_json::from_str(&payload)
                    .map_err(|e| StateError::Corrupt(format!("intent {id}: {e}")))?;
                for it in items {
                    out.push(it.into_intent(id, sync)?);
                }
                continue;
            }
            // One intent per row (written before intents were batched).
            let mut it: Intent =
                serde_json::from_str(&payload).map_err(|e| StateError::Corrupt(e.to_string()))?;
            it.id = id;
            it.sync = sync.to_string();
            it.side =
                Side::parse(&side).ok_or_else(|| StateError::Corrupt("intent side".into()))?;
            it.entry_id = r.try_get("entry_id")?;
            it.source_id = r.try_get("source_id")?;
            it.conditions = serde_json::from_str(&r.try_get::<String, _>("conditions")?)
                .map_err(|e| StateError::Corrupt(e.to_string()))?;
            out.push(it);
        }
        Ok(out)
    }

    // ----- the commit -------------------------------------------------------

    /// Persists one step of a run atomically: entries (links, seen values,
    /// statuses), the change log, conflicts, settled intents and cursors.
    pub async fn commit(&self, c: &Commit) -> Result<()> {
        let layouts = self.layout_ids(c.entries.iter().map(|w| &w.entry)).await?;
        let mut layouts = LayoutFinder::new(&layouts);
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = &c.lease {
            self.fence(&mut tx, lease).await?;
        }
        let at = now();
        for id in &c.drops {
            sqlx::query(&self.sql("DELETE FROM entries WHERE id = $1"))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        // Updates first (they may free ids that new entries take), then inserts.
        let (existing, new): (Vec<&EntryWrite>, Vec<&EntryWrite>) =
            c.entries.iter().partition(|w| w.id.is_some());
        // Existing entries whose link, keys and status stay as they were
        // (most writes: seen values after a change) are updated in place,
        // without touching an index: each indexed column rewritten, even to
        // its own value, costs a random index page on a large store.
        let mut moved: Vec<&EntryWrite> = Vec::new();
        for chunk in existing.chunks(CHUNK / 2) {
            let sql = self.rows_sql(
                &format!("WITH v (id, {ENTRY_WRITE_COLS}, updated_at) AS (VALUES"),
                &format!(
                    ") UPDATE entries SET {} FROM v WHERE entries.id = v.id AND entries.sync = v.sync
                   AND entries.a_id IS NOT DISTINCT FROM v.a_id AND entries.b_id IS NOT DISTINCT FROM v.b_id
                   AND entries.key_a IS NOT DISTINCT FROM v.key_a AND entries.key_b IS NOT DISTINCT FROM v.key_b
                   AND entries.status = v.status AND entries.reason_code IS NOT DISTINCT FROM v.reason_code
                 RETURNING entries.id",
                    unindexed_sets("v")
                ),
                EXISTING_COLS,
                chunk.len(),
            );
            let q = bind_existing(&sql, chunk, c, &mut layouts, &at);
            let done: std::collections::HashSet<i64> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("id"))
                .collect::<std::result::Result<_, _>>()?;
            moved.extend(
                chunk
                    .iter()
                    .filter(|w| !done.contains(&w.id.unwrap_or_default())),
            );
        }
        // The rest: one multi-row upsert per chunk.
        for chunk in moved.chunks(CHUNK / 2) {
            let sql = self.rows_sql(
                &format!(
                    "INSERT INTO entries (id, {ENTRY_WRITE_COLS}, updated_at)
                 VALUES"
                ),
                &format!(
                    "ON CONFLICT (id) DO UPDATE SET a_id = excluded.a_id, b_id = excluded.b_id,
                     key_a = excluded.key_a, key_b = excluded.key_b, status = excluded.status,
                     reason_code = excluded.reason_code, {}",
                    unindexed_sets("excluded")
                ),
                EXISTING_COLS,
                chunk.len(),
            );
            let q = bind_existing(&sql, chunk, c, &mut layouts, &at);
            q.execute(&mut *tx).await?;
        }
        // New entries with conflicts need their id; the rest go in bulk.
        let (with_id, bulk): (Vec<&EntryWrite>, Vec<&EntryWrite>) =
            new.into_iter().partition(|w| !w.conflicts.is_empty());
        const COLS: usize = 23;
        for chunk in bulk.chunks(CHUNK / 2) {
            let sql = self.rows_sql(
                &format!("INSERT INTO entries ({ENTRY_WRITE_COLS}, updated_at, deleted_at) VALUES"),
                "",
                COLS,
                chunk.len(),
            );
            let mut q = query_of(&sql, chunk.len() * COLS);
            for w in chunk {
                let e = &w.entry;
                q = bind_entry(q, &c.sync, c.run_id, w, &mut layouts)
                    .bind(at.as_str())
                    .bind((e.deleted_a || e.deleted_b).then_some(at.as_str()));
            }
            q.execute(&mut *tx).await?;
        }
        let mut ids: Vec<(i64, &EntryWrite)> = existing
            .iter()
            .map(|w| (w.id.unwrap_or_default(), *w))
            .collect();
        for w in with_id {
            let sql = self.sql(&format!(
                "INSERT INTO entries ({ENTRY_WRITE_COLS}, updated_at) VALUES ({}) RETURNING id",
                ph(1, 22)
            ));
            let id: i64 = bind_entry(sqlx::query(&sql), &c.sync, c.run_id, w, &mut layouts)
                .bind(at.clone())
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
            ids.push((id, w));
        }
        for (id, w) in &ids {
            for note in &w.conflicts {
                let state = if note.winner.is_none() {
                    "open"
                } else {
                    "applied"
                };
                if state == "open" {
                    sqlx::query(
                        &self.sql("UPDATE conflicts SET value_a = $1, value_b = $2 WHERE entry_id = $3 AND field_a = $4 AND state <> 'applied'"),
                    )
                    .bind(value_json(&note.value_a))
                    .bind(value_json(&note.value_b))
                    .bind(*id)
                    .bind(&note.field_a)
                    .execute(&mut *tx)
                    .await?;
                    let open: Option<i64> = sqlx::query_scalar(
                        &self.sql("SELECT id FROM conflicts WHERE entry_id = $1 AND field_a = $2 AND state <> 'applied'"),
                    )
                    .bind(*id)
                    .bind(&note.field_a)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if open.is_some() {
                        continue;
                    }
                }
                sqlx::query(
                    &self.sql("INSERT INTO conflicts (sync, entry_id, field_a, field_b, value_a, value_b, created_at, state, resolution, resolved_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                )
                .bind(c.sync.clone())
                .bind(*id)
                .bind(&note.field_a)
                .bind(&note.field_b)
                .bind(value_json(&note.value_a))
                .bind(value_json(&note.value_b))
                .bind(at.clone())
                .bind(state)
                .bind(note.winner.map(|w| format!("{{\"take\":\"{w}\"}}")))
                .bind((state == "applied").then(|| at.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for field in &w.resolved {
                sqlx::query(
                    &self.sql("UPDATE conflicts SET state = 'applied', resolved_at = COALESCE(resolved_at, $1)
                     WHERE entry_id = $2 AND field_a = $3 AND state <> 'applied'"),
                )
                .bind(at.clone())
                .bind(*id)
                .bind(field)
                .execute(&mut *tx)
                .await?;
            }
        }
        // The change log, in bulk.
        let mut rows: Vec<LogRow<'_>> = Vec::new();
        for w in &c.entries {
            let e = &w.entry;
            // A create is kept in its entry (see `history`), and logged
            // without its values: they are the entry's seen values until a
            // later change, which the log holds.
            for side in w.created.iter().skip(1) {
                rows.push((
                    e.a_id.clone(),
                    e.b_id.clone(),
                    side.as_str(),
                    "*created*".to_string(),
                    None,
                    None,
                ));
            }
            for (side, ch) in &w.changes {
                rows.push((
                    e.a_id.clone(),
                    e.b_id.clone(),
                    side.as_str(),
                    ch.field.clone(),
                    ch.old.to_text(),
                    ch.new.to_text(),
                ));
            }
        }
        const CCOLS: usize = 9;
        for chunk in rows.chunks(CHUNK / 2) {
            let sql = self.rows_sql(
                "INSERT INTO changes (run_id, sync, a_id, b_id, side, field, old, new, at) VALUES",
                "",
                CCOLS,
                chunk.len(),
            );
            let mut q = query_of(&sql, chunk.len() * CCOLS);
            for (a, b, side, field, old, new) in chunk {
                q = q
                    .bind(c.run_id)
                    .bind(c.sync.clone())
                    .bind(a.clone())
                    .bind(b.clone())
                    .bind(*side)
                    .bind(field.clone())
                    .bind(old.clone())
                    .bind(new.clone())
                    .bind(at.clone());
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in c.echoes_seen.chunks(CHUNK) {
            let sql = self.list_sql(
                "UPDATE entries SET echo_a = 0, echo_b = 0 WHERE id IN",
                "",
                1,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        for batch in &c.intent_batches {
            sqlx::query(&self.sql("DELETE FROM intents WHERE batch = $1"))
                .bind(batch.clone())
                .execute(&mut *tx)
                .await?;
        }
        for id in &c.intents_done {
            sqlx::query(&self.sql("DELETE FROM intents WHERE id = $1"))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        for (marker, value) in &c.cursors {
            sqlx::query(
                &self.sql("INSERT INTO cursors (sync, side, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sync, side) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"),
            )
            .bind(c.sync.clone())
            .bind(marker.name())
            .bind(value.to_string())
            .bind(at.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- reporting --------------------------------------------------------

    pub async fn status_counts(&self, sync: &str) -> Result<StatusCounts> {
        // Entries in sync are most of a sync and are left out of the status
        // index: they are the count of all less the others.
        let rows = sqlx::query(
            &self.sql("SELECT status, category, COUNT(*) AS n FROM entries WHERE sync = $1 AND status <> 'in_sync' GROUP BY status, category"),
        )
        .bind(sync)
        .fetch_all(&self.pool)
        .await?;
        let all: i64 =
            sqlx::query_scalar(&self.sql("SELECT COUNT(*) FROM entries WHERE sync = $1"))
                .bind(sync)
                .fetch_one(&self.pool)
                .await?;
        let mut c = StatusCounts {
            in_sync: all
                - rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>("n"))
                    .sum::<std::result::Result<i64, _>>()?,
            ..StatusCounts::default()
        };
        for r in rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match status.as_str() {
                "excluded" => c.excluded += n,
                "deleted" => c.deleted += n,
                "waiting" => c.waiting += n,
                _ => {
                    c.failed += n;
                    let cat: Option<String> = r.try_get("category")?;
                    *c.failures_by_category
                        .entry(cat.unwrap_or_else(|| "server".into()))
                        .or_default() += n;
                }
            }
        }
        Ok(c)
    }

    pub async fn records(&self, f: &RecordFilter) -> Result<Vec<RecordRow>> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let rows = sqlx::query(
            &self.sql("SELECT sync, id, a_id, b_id, status, category, reason, message, hint, deleted_a, deleted_b, attempts, updated_at
             FROM entries WHERE ($1 = '' OR sync = $2) AND ($3 = '' OR status = $4) AND ($5 = '' OR category = $6)
               AND ($7 = 0 OR id = $8) AND ($9 = '' OR updated_at >= $10) AND ($11 = '' OR updated_at < $12)
             ORDER BY sync, id LIMIT $13 OFFSET $14"),
        )
        .bind(text(&f.sync))
        .bind(text(&f.sync))
        .bind(text(&f.status))
        .bind(text(&f.status))
        .bind(text(&f.category))
        .bind(text(&f.category))
        .bind(f.entry_id.is_some() as i64)
        .bind(f.entry_id.unwrap_or(0))
        .bind(text(&f.since))
        .bind(text(&f.since))
        .bind(text(&f.until))
        .bind(text(&f.until))
        .bind(f.limit.unwrap_or(i64::MAX))
        .bind(f.offset.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let da = r.try_get::<i64, _>("deleted_a")? != 0;
                let db = r.try_get::<i64, _>("deleted_b")? != 0;
                let message: Option<String> = r.try_get("message")?;
                let reason: Option<String> = r.try_get("reason")?;
                Ok(RecordRow {
                    sync: r.try_get("sync")?,
                    entry_id: r.try_get("id")?,
                    a_id: r.try_get("a_id")?,
                    b_id: r.try_get("b_id")?,
                    status: r.try_get("status")?,
                    category: r.try_get("category")?,
                    reason: message.or(reason),
                    hint: r.try_get("hint")?,
                    deleted_on: match (da, db) {
                        (true, true) => Some("a,b".into()),
                        (true, false) => Some("a".into()),
                        (false, true) => Some("b".into()),
                        _ => None,
                    },
                    attempts: r.try_get("attempts")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Failed records by category and excluded ones by reason, largest first.
    pub async fn groups(&self, sync: &str) -> Result<Vec<GroupRow>> {
        let rows = sqlx::query(&self.sql(
            "SELECT status, COALESCE(category, reason_code, 'unknown') AS label, COUNT(*) AS n, MIN(hint) AS hint
             FROM entries WHERE sync = $1 AND status <> 'in_sync' AND status IN ('failed', 'excluded')
             GROUP BY status, COALESCE(category, reason_code, 'unknown') ORDER BY n DESC, label",
        ))
        .bind(sync)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GroupRow {
                    status: r.try_get("status")?,
                    label: r.try_get("label")?,
                    count: r.try_get("n")?,
                    hint: r.try_get("hint")?,
                })
            })
            .collect()
    }

    /// Drops the changes logged before `before` (RFC 3339), oldest first,
    /// in batches (each its own short statement, so other writers are not
    /// held up); returns how many. Ids grow with time, so the rows to keep
    /// start at the first one logged at or after `before`, and finding it
    /// reads only the rows that go.
    pub async fn prune_changes(&self, before: &str) -> Result<u64> {
        const BATCH_ROWS: i64 = 10_000;
        let keep_from: Option<i64> = sqlx::query_scalar(
            &self.sql("SELECT id FROM changes WHERE at >= $1 ORDER BY id LIMIT 1"),
        )
        .bind(before.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let mut total = 0;
        loop {
            // `at < before` too: a commit still in flight may hold a lower
            // id than a row already logged after `before`.
            let done = sqlx::query(&self.sql(
                "DELETE FROM changes WHERE id IN (SELECT id FROM changes
                 WHERE id < $1 AND at < $2 ORDER BY id LIMIT $3)",
            ))
            .bind(keep_from.unwrap_or(i64::MAX))
            .bind(before.to_string())
            .bind(BATCH_ROWS)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += done;
            if done < BATCH_ROWS as u64 {
                return Ok(total);
            }
        }
    }

    pub async fn history(
        &self,
        sync: &str,
        a_id: Option<&str>,
        b_id: Option<&str>,
    ) -> Result<Vec<ChangeRow>> {
        let rows = sqlx::query(&self.sql(
            "SELECT run_id, side, field, old, new, at FROM changes
             WHERE sync = $1 AND (a_id = $2 OR b_id = $3) ORDER BY id",
        ))
        .bind(sync)
        .bind(a_id.map(str::to_string))
        .bind(b_id.map(str::to_string))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(ChangeRow {
                    run_id: r.try_get("run_id")?,
                    side: r.try_get("side")?,
                    field: r.try_get("field")?,
                    old: r.try_get("old")?,
                    new: r.try_get("new")?,
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Creates are kept in their entries: first in their run.
        let created = sqlx::query(&self.sql(
            "SELECT e.created_run, e.created_side, r.started_at FROM entries e
             LEFT JOIN runs r ON r.id = e.created_run
             WHERE e.sync = $1 AND (e.a_id = $2 OR e.b_id = $3) AND e.created_run IS NOT NULL",
        ))
        .bind(sync)
        .bind(a_id.map(str::to_string))
        .bind(b_id.map(str::to_string))
        .fetch_all(&self.pool)
        .await?;
        for r in &created {
            let run_id: i64 = r.try_get("created_run")?;
            let at = out
                .iter()
                .find(|c| c.run_id == run_id)
                .map(|c| c.at.clone())
                .or(r.try_get::<Option<String>, _>("started_at")?)
                .unwrap_or_default();
            let pos = out
                .iter()
                .position(|c| c.run_id >= run_id)
                .unwrap_or(out.len());
            out.insert(
                pos,
                ChangeRow {
                    run_id,
                    side: r.try_get("created_side")?,
                    field: "*created*".to_string(),
                    old: None,
                    new: None,
                    at,
                },
            );
        }
        Ok(out)
    }

    pub async fn conflicts(&self, sync: Option<&str>, open_only: bool) -> Result<Vec<ConflictRow>> {
        let rows = sqlx::query(
            &self.sql("SELECT c.id, c.sync, c.entry_id, e.a_id, e.b_id, c.field_a, c.field_b, c.value_a, c.value_b, c.created_at, c.state
             FROM conflicts c LEFT JOIN entries e ON e.id = c.entry_id
             WHERE ($1 = '' OR c.sync = $2) AND ($3 = 0 OR c.state = 'open') ORDER BY c.id"),
        )
        .bind(sync.unwrap_or(""))
        .bind(sync.unwrap_or(""))
        .bind(open_only as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let val = |c: &str| -> Result<Value> {
                    let s: Option<String> = r.try_get(c)?;
                    Ok(s.and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or(Value::Null))
                };
                Ok(ConflictRow {
                    id: r.try_get("id")?,
                    sync: r.try_get("sync")?,
                    entry_id: r.try_get("entry_id")?,
                    a_id: r.try_get("a_id")?,
                    b_id: r.try_get("b_id")?,
                    field_a: r.try_get("field_a")?,
                    field_b: r.try_get("field_b")?,
                    value_a: val("value_a")?,
                    value_b: val("value_b")?,
                    created_at: r.try_get("created_at")?,
                    state: r.try_get("state")?,
                })
            })
            .collect()
    }

    /// Records a person's decision on an open conflict; the next run of its
    /// sync applies it. Returns the conflict's sync.
    pub async fn resolve_conflict(&self, id: i64, resolution: &Resolution) -> Result<String> {
        let json = serde_json::to_string(&ResolutionJson::from(resolution)).expect("serialise");
        let sync: Option<String> = sqlx::query_scalar(&self.sql(
            "UPDATE conflicts SET state = 'resolved', resolution = $1, resolved_at = $2
             WHERE id = $3 AND state = 'open' RETURNING sync",
        ))
        .bind(json)
        .bind(now())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        sync.ok_or_else(|| {
            StateError::NotFound(format!(
                "conflict {id} is not open; `puente conflicts` lists the open ones"
            ))
        })
    }

    /// Structural checks: no record linked twice, no orphan conflicts.
    pub async fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for (side, col) in [("a", "a_id"), ("b", "b_id")] {
            let sql = self.sql(&format!(
                "SELECT sync, {col} AS rid, COUNT(*) AS n FROM entries WHERE {col} IS NOT NULL GROUP BY sync, {col} HAVING COUNT(*) > 1"
            ));
            for r in sqlx::query(&sql).fetch_all(&self.pool).await? {
                problems.push(format!(
                    "sync {}: {side} record {} is in {} entries",
                    r.try_get::<String, _>("sync")?,
                    r.try_get::<String, _>("rid")?,
                    r.try_get::<i64, _>("n")?
                ));
            }
        }
        let orphans: i64 = sqlx::query_scalar(
            &self.sql("SELECT COUNT(*) FROM conflicts c WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = c.entry_id) AND c.state <> 'applied'"),
        )
        .fetch_one(&self.pool)
        .await?;
        if orphans > 0 {
            problems.push(format!("{orphans} open conflicts point at no entry"));
        }
        Ok(problems)
    }

    /// Closes the store: on SQLite, its write-ahead log checkpointed into
    /// the file first.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            // The write-ahead log moved into the file and emptied, even where
            // the log file outlives this connection (another one still has
            // the store open); the last connection to close removes it.
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await;
        }
        self.pool.close().await;
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResolutionJson {
    Take(String),
    Value(Value),
}

impl From<&Resolution> for ResolutionJson {
    fn from(r: &Resolution) -> Self {
        match r {
            Resolution::Take(s) => ResolutionJson::Take(s.as_str().to_string()),
            Resolution::Value(v) => ResolutionJson::Value(v.clone()),
        }
    }
}

impl From<ResolutionJson> for Resolution {
    fn from(r: ResolutionJson) -> Self {
        match r {
            ResolutionJson::Take(s) => Resolution::Take(Side::parse(&s).unwrap_or(Side::A)),
            ResolutionJson::Value(v) => Resolution::Value(v),
        }
    }
}
