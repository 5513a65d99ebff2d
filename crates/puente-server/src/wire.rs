//! The JSON wire types of Puente's own API (and of the CLI's `--json`
//! output, which speaks the same shapes). Only this module defines them:
//! engine, state and core types carry no wire format, and are converted
//! here field by field, so changing an engine type never changes the API
//! by accident. `openapi.json` documents these shapes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use puente_core::{Usage, Value};
use puente_engine::scheduler::{LastRun, Live, WorkerState};
use puente_engine::{BackfillStatus, RestoreReport, SideCounts, SyncReport};
use puente_state::{ChangeRow, ConflictRow, GroupRow, RecordRow, RunRow, StatusCounts};
use serde::Serialize;

/// A value as the API shows it: text as a string, numbers, booleans, a
/// multi-choice as an array, empty as null. Decimals are strings, so not a
/// digit is lost.
pub fn value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(n) => (*n).into(),
        Value::Bool(b) => (*b).into(),
        Value::MultiEnum(set) => set.iter().cloned().collect::<Vec<_>>().into(),
        other => other.to_text().into(),
    }
}

#[derive(Serialize)]
pub struct SideCountsView {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
}

impl From<&SideCounts> for SideCountsView {
    fn from(c: &SideCounts) -> Self {
        SideCountsView {
            read: c.read,
            created: c.created,
            updated: c.updated,
            deleted: c.deleted,
            failed: c.failed,
        }
    }
}

/// What one pass did.
#[derive(Serialize)]
pub struct ReportView {
    pub name: String,
    pub a: SideCountsView,
    pub b: SideCountsView,
    pub excluded: u64,
    pub conflicts: u64,
    pub waiting: u64,
    pub echoes_suppressed: u64,
    pub recovered_intents: u64,
    pub dry_run: bool,
    pub seconds: f64,
    /// A dry run's exact writes, one per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfill: Vec<String>,
}

impl From<&SyncReport> for ReportView {
    fn from(r: &SyncReport) -> Self {
        ReportView {
            name: r.name.clone(),
            a: (&r.a).into(),
            b: (&r.b).into(),
            excluded: r.excluded,
            conflicts: r.conflicts,
            waiting: r.waiting,
            echoes_suppressed: r.echoes_suppressed,
            recovered_intents: r.recovered_intents,
            dry_run: r.dry_run,
            seconds: r.seconds,
            plan: r.plan.clone(),
            backfill: r.backfill.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct RestoreView {
    pub sync: String,
    pub side: String,
    /// (old id, new id)
    pub restored: Vec<(String, String)>,
    /// (old id, why)
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
    pub plan: Vec<String>,
}

impl From<&RestoreReport> for RestoreView {
    fn from(r: &RestoreReport) -> Self {
        RestoreView {
            sync: r.sync.clone(),
            side: r.side.clone(),
            restored: r.restored.clone(),
            failed: r.failed.clone(),
            dry_run: r.dry_run,
            plan: r.plan.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct LiveView {
    pub phase: String,
    pub records: u64,
    pub done: u64,
    pub total: u64,
    pub records_per_sec: f64,
    pub started_at: DateTime<Utc>,
}

impl From<&Live> for LiveView {
    fn from(l: &Live) -> Self {
        LiveView {
            phase: l.phase.clone(),
            records: l.records,
            done: l.done,
            total: l.total,
            records_per_sec: l.records_per_sec,
            started_at: l.started_at,
        }
    }
}

#[derive(Serialize)]
pub struct LastRunView {
    pub finished_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub full: bool,
    pub ok: bool,
    pub error: Option<String>,
    pub report: Option<ReportView>,
}

impl From<&LastRun> for LastRunView {
    fn from(l: &LastRun) -> Self {
        LastRunView {
            finished_at: l.finished_at,
            started_at: l.started_at,
            full: l.full,
            ok: l.ok,
            error: l.error.clone(),
            report: l.report.as_ref().map(ReportView::from),
        }
    }
}

/// What `puente serve` is doing with a sync.
#[derive(Serialize)]
pub struct WorkerView {
    pub paused: bool,
    pub running: bool,
    pub live: Option<LiveView>,
    pub last: Option<LastRunView>,
    pub synced_until: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub next_reconcile: Option<DateTime<Utc>>,
    pub runs: u64,
    pub failed_runs: u64,
    pub busy_skips: u64,
    pub busy: Option<String>,
}

impl From<&WorkerState> for WorkerView {
    fn from(s: &WorkerState) -> Self {
        WorkerView {
            paused: s.paused,
            running: s.running,
            live: s.live.as_ref().map(LiveView::from),
            last: s.last.as_ref().map(LastRunView::from),
            synced_until: s.synced_until,
            failing_since: s.failing_since,
            next_poll: s.next_poll,
            next_reconcile: s.next_reconcile,
            runs: s.runs,
            failed_runs: s.failed_runs,
            busy_skips: s.busy_skips,
            busy: s.busy.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct CountsView {
    pub in_sync: i64,
    pub failed: i64,
    pub excluded: i64,
    pub deleted: i64,
    pub waiting: i64,
    pub failures_by_category: BTreeMap<String, i64>,
}

impl From<&StatusCounts> for CountsView {
    fn from(c: &StatusCounts) -> Self {
        CountsView {
            in_sync: c.in_sync,
            failed: c.failed,
            excluded: c.excluded,
            deleted: c.deleted,
            waiting: c.waiting,
            failures_by_category: c.failures_by_category.clone(),
        }
    }
}

/// Records of one status grouped by failure category or exclusion reason.
#[derive(Serialize)]
pub struct GroupView {
    pub status: String,
    pub label: String,
    pub count: i64,
    pub hint: Option<String>,
}

impl From<GroupRow> for GroupView {
    fn from(g: GroupRow) -> Self {
        GroupView {
            status: g.status,
            label: g.label,
            count: g.count,
            hint: g.hint,
        }
    }
}

#[derive(Serialize)]
pub struct BackfillView {
    pub window: Option<String>,
    pub budget_share: Option<f64>,
    pub a_done: bool,
    pub b_done: bool,
    pub spent_today: u64,
}

impl From<&BackfillStatus> for BackfillView {
    fn from(b: &BackfillStatus) -> Self {
        BackfillView {
            window: b.window.clone(),
            budget_share: b.budget_share,
            a_done: b.a_done,
            b_done: b.b_done,
            spent_today: b.spent_today,
        }
    }
}

/// An API connection's use of its allowance.
#[derive(Serialize)]
pub struct UsageView {
    pub requests: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub window_max: Option<u32>,
    pub window_used: Option<u32>,
    pub window_secs: Option<f64>,
    pub daily_used: Option<u64>,
    pub daily_limit: Option<u64>,
}

impl From<&Usage> for UsageView {
    fn from(u: &Usage) -> Self {
        UsageView {
            requests: u.requests,
            rate_limited: u.rate_limited,
            server_errors: u.server_errors,
            window_max: u.window_max,
            window_used: u.window_used,
            window_secs: u.window_secs,
            daily_used: u.daily_used,
            daily_limit: u.daily_limit,
        }
    }
}

/// One record's line in the records view.
#[derive(Serialize)]
pub struct RecordView {
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

impl From<&RecordRow> for RecordView {
    fn from(r: &RecordRow) -> Self {
        RecordView {
            sync: r.sync.clone(),
            entry_id: r.entry_id,
            a_id: r.a_id.clone(),
            b_id: r.b_id.clone(),
            status: r.status.clone(),
            category: r.category.clone(),
            reason: r.reason.clone(),
            hint: r.hint.clone(),
            deleted_on: r.deleted_on.clone(),
            attempts: r.attempts,
            updated_at: r.updated_at.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct RunView {
    pub id: i64,
    pub sync: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub dry_run: bool,
    /// The pass's counts as it recorded them.
    pub counts: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl From<RunRow> for RunView {
    fn from(r: RunRow) -> Self {
        RunView {
            id: r.id,
            sync: r.sync,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: r.status,
            dry_run: r.dry_run,
            counts: r.counts,
            error: r.error,
        }
    }
}

#[derive(Serialize)]
pub struct ConflictView {
    pub id: i64,
    pub sync: String,
    pub entry_id: i64,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub field_a: String,
    pub field_b: String,
    pub value_a: serde_json::Value,
    pub value_b: serde_json::Value,
    pub created_at: String,
    pub state: String,
}

impl From<&ConflictRow> for ConflictView {
    fn from(c: &ConflictRow) -> Self {
        ConflictView {
            id: c.id,
            sync: c.sync.clone(),
            entry_id: c.entry_id,
            a_id: c.a_id.clone(),
            b_id: c.b_id.clone(),
            field_a: c.field_a.clone(),
            field_b: c.field_b.clone(),
            value_a: value(&c.value_a),
            value_b: value(&c.value_b),
            created_at: c.created_at.clone(),
            state: c.state.clone(),
        }
    }
}

/// One field's change in a record's history.
#[derive(Serialize)]
pub struct ChangeView {
    pub run_id: i64,
    pub side: String,
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub at: String,
}

impl From<ChangeRow> for ChangeView {
    fn from(c: ChangeRow) -> Self {
        ChangeView {
            run_id: c.run_id,
            side: c.side,
            field: c.field,
            old: c.old,
            new: c.new,
            at: c.at,
        }
    }
}

/// Converts a list, for `Vec<Row>` → `Vec<View>` answers.
pub fn all<'a, R: 'a, V: From<&'a R>>(rows: &'a [R]) -> Vec<V> {
    rows.iter().map(V::from).collect()
}
