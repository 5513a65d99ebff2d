//! What a pass reports: progress as it goes, and its counts at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use puente_core::Side;
use puente_plan::{ItemPlan, Plan, PlannedWrite, Status};

/// What a run reports as it goes (for progress bars and live counts).
#[derive(Clone, Debug)]
pub enum Progress {
    Reading {
        sync: String,
        side: Side,
        records: usize,
    },
    Planned {
        sync: String,
        items: usize,
        writes: usize,
    },
    Applying {
        sync: String,
        done: usize,
        total: usize,
    },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

#[derive(Clone, Default)]
pub struct RunOptions {
    /// Plan and report, write nothing (neither side nor state).
    pub dry_run: bool,
    /// Ignore cursors and check deletes now: a full reconciliation.
    pub full: bool,
    pub progress: Option<ProgressFn>,
    /// How long to wait for a sync another process is running a pass of
    /// (zero: give up at once with [`crate::EngineError::Busy`]).
    pub wait: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideCounts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub name: String,
    pub a: SideCounts,
    pub b: SideCounts,
    pub excluded: u64,
    pub conflicts: u64,
    pub waiting: u64,
    pub echoes_suppressed: u64,
    pub recovered_intents: u64,
    pub dry_run: bool,
    pub seconds: f64,
    /// The exact writes a dry run would make, one per line.
    pub plan: Option<String>,
    /// A gradual exchange: how far each side's backfill got, and why it
    /// stopped for now.
    pub backfill: Vec<String>,
    /// A pair may be planned twice in one run (as a partner, then in its own
    /// side's stream): statuses and conflicts are counted once per entry.
    pub(crate) counted: HashSet<(i64, String)>,
    /// Entries whose write failed in this run: not tried again until the
    /// next run (a pair planned twice must not pay for a failure twice).
    pub(crate) failed: HashSet<i64>,
}

impl SyncReport {
    pub(crate) fn side(&mut self, s: Side) -> &mut SideCounts {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Counts a plan's statuses (writes are counted as they happen).
    pub(crate) fn count_status(&mut self, items: &[ItemPlan]) {
        for it in items {
            if let Some(id) = it.entry_id {
                let fresh = it
                    .conflicts
                    .iter()
                    .filter(|c| self.counted.insert((id, c.field_a.clone())))
                    .count();
                self.conflicts += fresh as u64;
                if !self.counted.insert((id, String::new()))
                    && it.write_a.is_none()
                    && it.write_b.is_none()
                {
                    continue;
                }
            } else {
                self.conflicts += it.conflicts.len() as u64;
            }
            match &it.status {
                Status::Excluded(_) => self.excluded += 1,
                Status::Waiting(_) => self.waiting += 1,
                Status::Failed(_) => {
                    // A failure found while planning is counted on the side that
                    // would have been written.
                    let side = match (&it.a_id, &it.b_id) {
                        (None, Some(_)) => Side::A,
                        _ => Side::B,
                    };
                    self.side(side).failed += 1;
                }
                _ => {}
            }
        }
    }

    /// A dry run's counts: what the writes would be.
    pub(crate) fn count_plan(&mut self, p: &Plan) {
        self.echoes_suppressed += p.items.iter().map(|i| i.echoes as u64).sum::<u64>();
        let items: Vec<ItemPlan> = p.items.iter().filter(|i| i.changed).cloned().collect();
        self.count_status(&items);
        for it in &items {
            for side in [Side::A, Side::B] {
                match it.write(side) {
                    Some(PlannedWrite::Create { .. }) => self.side(side).created += 1,
                    Some(PlannedWrite::Update { .. }) => self.side(side).updated += 1,
                    Some(PlannedWrite::Delete { .. }) => self.side(side).deleted += 1,
                    None => {}
                }
            }
        }
    }

    /// The counts as the run history keeps them (the `runs` table's
    /// `counts`; the dashboard's recent passes read `a`/`b` from it).
    pub fn counts(&self) -> serde_json::Value {
        let side = |c: &SideCounts| {
            serde_json::json!({
                "read": c.read, "created": c.created, "updated": c.updated,
                "deleted": c.deleted, "failed": c.failed,
            })
        };
        serde_json::json!({
            "a": side(&self.a),
            "b": side(&self.b),
            "excluded": self.excluded,
            "conflicts": self.conflicts,
            "waiting": self.waiting,
            "echoes_suppressed": self.echoes_suppressed,
            "recovered_intents": self.recovered_intents,
            "seconds": self.seconds,
        })
    }

    /// The counts, into the log (operators read them there; `--log-format
    /// json` makes them fields a collector can index).
    pub(crate) fn log(&self) {
        tracing::info!(
            sync = %self.name,
            dry_run = self.dry_run,
            seconds = self.seconds,
            a_read = self.a.read,
            a_created = self.a.created,
            a_updated = self.a.updated,
            a_deleted = self.a.deleted,
            a_failed = self.a.failed,
            b_read = self.b.read,
            b_created = self.b.created,
            b_updated = self.b.updated,
            b_deleted = self.b.deleted,
            b_failed = self.b.failed,
            excluded = self.excluded,
            conflicts = self.conflicts,
            waiting = self.waiting,
            echoes_suppressed = self.echoes_suppressed,
            recovered_intents = self.recovered_intents,
            "pass finished"
        );
    }
}

#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    pub sync: String,
    pub side: String,
    pub restored: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
    pub plan: Vec<String>,
}
