//! One run of one sync: recover intents, detect deletes, read changes,
//! plan, apply in chunks (intent → write → record), commit cursors last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use puente_core::{
    ChangeDetection, Cursor, Failure, Fields, Object, Record, Side, Value, WriteOp, WriteOutcome,
};
use puente_plan::{
    key_of, mapped, plan, plan_deletes, render, seen_after_write, DeletePolicy, Entry, FieldChange,
    ItemPlan, Plan, PlanInput, PlannedWrite, Status, SyncSpec,
};
use puente_state::{Commit, EntryWrite, Intent};
use serde::Serialize;

use crate::{Engine, EngineError, SyncDef};

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
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SideCounts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// A gradual exchange: how far each side's backfill got, and why it
    /// stopped for now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfill: Vec<String>,
    /// A pair may be planned twice in one run (as a partner, then in its own
    /// side's stream): statuses and conflicts are counted once per entry.
    #[serde(skip)]
    counted: HashSet<(i64, String)>,
    /// Entries whose write failed in this run: not tried again until the
    /// next run (a pair planned twice must not pay for a failure twice).
    #[serde(skip)]
    failed: HashSet<i64>,
}

impl SyncReport {
    fn side(&mut self, s: Side) -> &mut SideCounts {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    pub sync: String,
    pub side: String,
    pub restored: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
    pub plan: Vec<String>,
}

fn side_idx(s: Side) -> usize {
    match s {
        Side::A => 0,
        Side::B => 1,
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn connector_err(
    def: &SyncDef,
    side: Side,
) -> impl Fn(puente_core::ConnectorError) -> EngineError + '_ {
    move |source| EngineError::Connector {
        connection: match side {
            Side::A => def.a.connection.clone(),
            Side::B => def.b.connection.clone(),
        },
        source,
    }
}

/// The intent announcing a create on `target` of a record from the other side.
#[allow(clippy::too_many_arguments)]
fn new_intent(
    spec: &SyncSpec,
    sync: &str,
    target: Side,
    entry_id: Option<i64>,
    source_id: String,
    seen_source: Option<Fields>,
    [key_source, key_target]: [Option<String>; 2],
    payload: &Fields,
) -> Intent {
    Intent {
        id: 0,
        sync: sync.to_string(),
        side: target,
        entry_id,
        source_id,
        conditions: intent_conditions(spec, target, payload),
        payload: payload.clone(),
        seen_source,
        key_source,
        key_target,
    }
}

/// Conditions that find a created record on the target: its match keys, or
/// every written value when the sync has none.
fn intent_conditions(spec: &SyncSpec, target: Side, payload: &Fields) -> Vec<(String, Value)> {
    let keyed: Vec<(String, Value)> = spec
        .keys
        .iter()
        .map(|k| if target == Side::A { &k.a } else { &k.b })
        .filter_map(|n| payload.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    if !keyed.is_empty() && keyed.len() == spec.keys.len() {
        keyed
    } else {
        payload
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Engine {
    /// Runs one pass of a sync.
    pub async fn run(&self, def: &SyncDef, opts: &RunOptions) -> Result<SyncReport, EngineError> {
        let started = Instant::now();
        let open = self.open_sync(def).await?;
        let errors: Vec<_> = open
            .diagnostics
            .iter()
            .filter(|d| !d.warning)
            .cloned()
            .collect();
        if !errors.is_empty() {
            return Err(EngineError::Config(errors));
        }
        let objs = [open.a.clone(), open.b.clone()];
        let mut report = SyncReport {
            name: def.name.clone(),
            dry_run: opts.dry_run,
            ..SyncReport::default()
        };
        let run_id = if opts.dry_run {
            0
        } else {
            self.state.start_run(&def.name, false).await?
        };
        let result = self
            .run_inner(def, &open.spec, &objs, opts, run_id, &mut report)
            .await;
        report.seconds = started.elapsed().as_secs_f64();
        if !opts.dry_run {
            let counts = serde_json::to_value(&report).unwrap_or_default();
            let (status, err) = match &result {
                Ok(()) => ("ok", None),
                Err(e) => ("failed", Some(e.to_string())),
            };
            self.state
                .finish_run(run_id, status, &counts, err.as_deref())
                .await?;
        }
        result.map(|()| report)
    }

    async fn run_inner(
        &self,
        def: &SyncDef,
        spec: &SyncSpec,
        objs: &[Arc<dyn Object>; 2],
        opts: &RunOptions,
        run_id: i64,
        report: &mut SyncReport,
    ) -> Result<(), EngineError> {
        let sync = def.name.as_str();
        let progress = |p: Progress| {
            if let Some(f) = &opts.progress {
                f(p)
            }
        };
        if !opts.dry_run {
            report.recovered_intents = self.recover_intents(def, spec, objs, run_id).await?;
        }
        let mut plan_text = String::new();
        let mut final_cursors: Vec<(String, serde_json::Value)> = Vec::new();

        // Deletes, found by comparing ids with the links (periodically).
        let last_scan = self
            .state
            .cursor(sync, "delete_scan")
            .await?
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let scan_due = opts.full || now_secs() - last_scan >= def.delete_check_interval_secs as i64;
        // Deletes a dry run found: it records nothing, so its change plan
        // is told about them.
        let mut unrecorded_deletes: HashMap<i64, (bool, bool)> = HashMap::new();
        if scan_due {
            for side in [Side::A, Side::B] {
                let obj = &objs[side_idx(side)];
                if !obj.capabilities().delete_detection_by_key_diff {
                    continue;
                }
                let live = self.state.live_ids(sync, side).await?;
                if live.is_empty() {
                    continue;
                }
                let present: HashSet<String> = obj
                    .list_ids()
                    .await
                    .map_err(connector_err(def, side))?
                    .into_iter()
                    .collect();
                // Entries whose record is gone, and the ids they had.
                let (mut missing, gone): (Vec<i64>, Vec<String>) = live
                    .iter()
                    .filter(|(_, id)| !present.contains(id))
                    .map(|(e, id)| (*e, id.clone()))
                    .unzip();
                if missing.is_empty() {
                    continue;
                }
                // Merged records are relinked to their survivor, not deleted.
                let merges = obj
                    .resolve_merged(&gone)
                    .await
                    .map_err(connector_err(def, side))?;
                if !merges.is_empty() && !opts.dry_run {
                    let handled = self.state.relink_merged(sync, side, &merges).await?;
                    missing.retain(|e| !handled.contains(e));
                    if missing.is_empty() {
                        continue;
                    }
                }
                if spec.deletes == DeletePolicy::Propagate
                    && missing.len() > 100
                    && missing.len() * 2 > live.len()
                {
                    return Err(EngineError::Refused(format!(
                        "sync {sync}: {} of {} records are gone from {side}; refusing to propagate that many deletes. \
                         If this is intended, set deletes = \"keep\" for one run, or restore the data on {side}",
                        missing.len(),
                        live.len()
                    )));
                }
                let entries = self.state.entries_by_entry_ids(sync, &missing).await?;
                let p = Plan {
                    items: plan_deletes(spec, &entries, side),
                };
                if opts.dry_run {
                    for it in &p.items {
                        if let Some(id) = it.entry_id {
                            let e = unrecorded_deletes.entry(id).or_default();
                            e.0 |= it.deleted_a;
                            e.1 |= it.deleted_b;
                        }
                    }
                    plan_text.push_str(&render(&p));
                    count_plan(&p, report);
                } else {
                    self.apply(def, spec, objs, p, &entries, run_id, report, opts)
                        .await?;
                }
            }
            if !opts.dry_run {
                final_cursors.push(("delete_scan".into(), serde_json::json!(now_secs())));
            }
        }

        let cursor_of = |side: Side| async move {
            if opts.full {
                Ok::<_, EngineError>(None)
            } else {
                Ok(self.state.cursor(sync, side.as_str()).await?.map(Cursor))
            }
        };

        if opts.dry_run {
            // A preview persists nothing between pages, so it plans the whole
            // change set at once.
            let mut read: [Vec<Record>; 2] = [Vec::new(), Vec::new()];
            for side in [Side::A, Side::B] {
                let since = cursor_of(side).await?;
                let mut token = None;
                loop {
                    let page = objs[side_idx(side)]
                        .read(since.as_ref(), token)
                        .await
                        .map_err(connector_err(def, side))?;
                    read[side_idx(side)].extend(page.records);
                    token = page.next;
                    if token.is_none() {
                        break;
                    }
                }
            }
            let revisit = self.state.entries_to_revisit(sync).await?;
            for side in [Side::A, Side::B] {
                let ids: Vec<String> = revisit
                    .iter()
                    .filter(|e| !e.deleted_on(side))
                    .filter_map(|e| e.id_on(side).cloned())
                    .collect();
                self.read_unread(def, objs, &mut read, side, ids).await?;
            }
            report.a.read += read[0].len() as u64;
            report.b.read += read[1].len() as u64;
            let (p, _) = self
                .plan_step(def, spec, objs, read, false, &unrecorded_deletes)
                .await?;
            plan_text.push_str(&render(&p));
            count_plan(&p, report);
            report.plan = Some(plan_text);
            return Ok(());
        }

        // A gradual exchange: a side with no committed cursor is still being
        // read in full (its backfill), a share of it per pass. Until both
        // sides are read in full, nothing is created: a record's match may
        // be in the part not read yet.
        let gradual = def.backfill.as_ref().filter(|_| !opts.full);
        let mut backfilling = [false, false];
        if gradual.is_some() {
            for side in [Side::A, Side::B] {
                backfilling[side_idx(side)] = objs[side_idx(side)].capabilities().change_detection
                    != ChangeDetection::FullRead
                    && self.state.cursor(sync, side.as_str()).await?.is_none();
            }
        }
        let holding = backfilling.contains(&true);
        let mut budget = match gradual {
            Some(b) if holding => Some(self.backfill_budget(def, b).await?),
            _ => None,
        };

        // The real run streams, a page at a time, so memory does not grow
        // with the tables. Records to revisit are taken before anything moves.
        let mut revisit = self.state.entries_to_revisit(sync).await?;
        if holding {
            revisit.retain(|e| !matches!(&e.status, Status::Waiting(r) if r == HELD));
        }
        let mut deferred: Vec<String> = Vec::new();
        for side in [Side::B, Side::A] {
            let since = cursor_of(side).await?;
            let mut token = None;
            let mut n = 0;
            let marker = format!("backfill_{side}");
            if let (true, Some(budget)) = (backfilling[side_idx(side)], budget.as_ref()) {
                if let Some(why) = budget.stop() {
                    report.backfill.push(format!("{side}: waiting ({why})"));
                    continue;
                }
                token = self
                    .state
                    .cursor(sync, &marker)
                    .await?
                    .and_then(|v| v.get("page").and_then(|p| p.as_str().map(String::from)));
            }
            loop {
                let page = objs[side_idx(side)]
                    .read(since.as_ref(), token)
                    .await
                    .map_err(connector_err(def, side))?;
                n += page.records.len();
                report.side(side).read += page.records.len() as u64;
                progress(Progress::Reading {
                    sync: sync.to_string(),
                    side,
                    records: n,
                });
                // A survivor of a merge takes over its merged records' links
                // before it is planned, so it is not matched or created anew.
                let merges: Vec<(String, String)> = page
                    .records
                    .iter()
                    .flat_map(|r| {
                        objs[side_idx(side)]
                            .merged_ids(r)
                            .into_iter()
                            .map(|old| (old, r.id.clone()))
                    })
                    .collect();
                if !merges.is_empty() {
                    self.state.relink_merged(sync, side, &merges).await?;
                }
                let mut read = [Vec::new(), Vec::new()];
                read[side_idx(side)] = page.records;
                let (mut p, old) = self
                    .plan_step(def, spec, objs, read, true, &HashMap::new())
                    .await?;
                if side == Side::B {
                    // b goes first: an unpaired b record is only indexed now
                    // (a's records have not all been compared with it yet)
                    // and is created on a, if still unpaired, at the end.
                    for it in &mut p.items {
                        let reason =
                            "matching: compared with every a record before it is created there";
                        if hold_create(it, Side::A, reason) {
                            if let Some(id) = &it.b_id {
                                deferred.push(id.clone());
                            }
                        }
                    }
                }
                if holding {
                    hold_creates(&mut p);
                }
                self.apply(def, spec, objs, p, &old, run_id, report, opts)
                    .await?;
                token = page.next;
                if token.is_none() {
                    if let Some(c) = page.cursor {
                        final_cursors.push((side.as_str().to_string(), c.0));
                    }
                    if let (true, Some(budget)) = (backfilling[side_idx(side)], budget.as_mut()) {
                        budget.spent_now(self, def).await?;
                        final_cursors.push((marker.clone(), serde_json::Value::Null));
                        report
                            .backfill
                            .push(format!("{side}: read in full ({n} records this pass)"));
                    }
                    break;
                }
                if let (true, Some(budget)) = (backfilling[side_idx(side)], budget.as_mut()) {
                    // Where to go on from: the page just applied is committed.
                    self.state
                        .set_marker(sync, &marker, &serde_json::json!({ "page": token }))
                        .await?;
                    budget.spent_now(self, def).await?;
                    if let Some(why) = budget.stop() {
                        report.backfill.push(format!(
                            "{side}: {n} records this pass, then paused ({why})"
                        ));
                        break;
                    }
                }
            }
        }
        // Failed, waiting and settled records, then the b records held back.
        let page_size = def.a.spec.page_size.max(1);
        for chunk in revisit.chunks(page_size) {
            let read = self
                .replan(def, spec, objs, chunk, holding, run_id, report, opts)
                .await?;
            report.a.read += read[0];
            report.b.read += read[1];
        }
        for chunk in deferred.chunks(page_size) {
            let recs = self.read_ids(def, objs, Side::B, chunk).await?;
            let (mut p, old) = self
                .plan_step(def, spec, objs, [Vec::new(), recs], true, &HashMap::new())
                .await?;
            if holding {
                hold_creates(&mut p);
            }
            self.apply(def, spec, objs, p, &old, run_id, report, opts)
                .await?;
        }
        // Every change read is applied or recorded as failed: the cursors move.
        let finished: Vec<Side> = [Side::A, Side::B]
            .into_iter()
            .filter(|side| final_cursors.iter().any(|(k, _)| k == side.as_str()))
            .collect();
        self.state
            .commit(&Commit {
                sync: sync.to_string(),
                run_id,
                cursors: final_cursors,
                ..Commit::default()
            })
            .await?;
        // The backfill just ended on every side: what was held is created
        // now rather than a poll interval later. (Should this stop half
        // way, the entries are still waiting and the next pass takes them.)
        let ended = [Side::A, Side::B]
            .into_iter()
            .all(|side| !backfilling[side_idx(side)] || finished.contains(&side));
        if holding && ended {
            let held: Vec<Entry> = self
                .state
                .entries_to_revisit(sync)
                .await?
                .into_iter()
                .filter(|e| matches!(&e.status, Status::Waiting(r) if r == HELD))
                .collect();
            report.backfill.push(format!(
                "both sides read in full: {} held records planned",
                held.len()
            ));
            for chunk in held.chunks(page_size) {
                self.replan(def, spec, objs, chunk, false, run_id, report, opts)
                    .await?;
            }
        }
        Ok(())
    }

    /// Reads the records of `entries` by id on both sides (where not
    /// deleted), then plans and applies them, holding creates if `hold`.
    /// Returns how many records each side gave.
    #[allow(clippy::too_many_arguments)]
    async fn replan(
        &self,
        def: &SyncDef,
        spec: &SyncSpec,
        objs: &[Arc<dyn Object>; 2],
        entries: &[Entry],
        hold: bool,
        run_id: i64,
        report: &mut SyncReport,
        opts: &RunOptions,
    ) -> Result<[u64; 2], EngineError> {
        let mut read = [Vec::new(), Vec::new()];
        for side in [Side::A, Side::B] {
            let want: Vec<String> = entries
                .iter()
                .filter(|e| !e.deleted_on(side))
                .filter_map(|e| e.id_on(side))
                .cloned()
                .collect();
            read[side_idx(side)] = self.read_ids(def, objs, side, &want).await?;
        }
        let counts = [read[0].len() as u64, read[1].len() as u64];
        let (mut p, old) = self
            .plan_step(def, spec, objs, read, true, &HashMap::new())
            .await?;
        if hold {
            hold_creates(&mut p);
        }
        self.apply(def, spec, objs, p, &old, run_id, report, opts)
            .await?;
        Ok(counts)
    }

    async fn read_ids(
        &self,
        def: &SyncDef,
        objs: &[Arc<dyn Object>; 2],
        side: Side,
        ids: &[String],
    ) -> Result<Vec<Record>, EngineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        objs[side_idx(side)]
            .read_by_ids(ids)
            .await
            .map_err(connector_err(def, side))
    }

    /// Adds to `read` the records of `side` with these ids that it does not
    /// hold yet, read by id.
    async fn read_unread(
        &self,
        def: &SyncDef,
        objs: &[Arc<dyn Object>; 2],
        read: &mut [Vec<Record>; 2],
        side: Side,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), EngineError> {
        let have: HashSet<&str> = read[side_idx(side)].iter().map(|r| r.id.as_str()).collect();
        let want: Vec<String> = ids
            .into_iter()
            .filter(|id| !have.contains(id.as_str()))
            .collect();
        let more = self.read_ids(def, objs, side, &want).await?;
        read[side_idx(side)].extend(more);
        Ok(())
    }

    /// Plans the given records: gathers their entries (by id, and by match
    /// key for unpaired ones), reads the records those entries stand for
    /// (with `partners`, the other side of linked pairs too, so a merge
    /// compares current values), translates parent references, and plans.
    /// Returns the plan and the entries it was made from.
    async fn plan_step(
        &self,
        def: &SyncDef,
        spec: &SyncSpec,
        objs: &[Arc<dyn Object>; 2],
        mut read: [Vec<Record>; 2],
        partners: bool,
        // Deletes a dry run found but did not record: (deleted on a, on b).
        unrecorded_deletes: &HashMap<i64, (bool, bool)>,
    ) -> Result<(Plan, Vec<Entry>), EngineError> {
        let sync = def.name.as_str();
        let mut entries: Vec<Entry> = Vec::new();
        let mut known: HashSet<i64> = HashSet::new();
        for side in [Side::A, Side::B] {
            let ids: Vec<String> = read[side_idx(side)].iter().map(|r| r.id.clone()).collect();
            for e in self.state.entries_by_ids(sync, side, &ids).await? {
                if known.insert(e.id) {
                    entries.push(e);
                }
            }
        }
        if partners {
            for side in [Side::A, Side::B] {
                let ids: Vec<String> = entries
                    .iter()
                    .filter(|e| e.live_pair())
                    .filter_map(|e| e.id_on(side).cloned())
                    .collect();
                self.read_unread(def, objs, &mut read, side, ids).await?;
            }
        }
        if !spec.keys.is_empty() {
            let linked: HashSet<(Side, &str)> = entries
                .iter()
                .filter(|e| e.live_pair())
                .flat_map(|e| {
                    [Side::A, Side::B]
                        .into_iter()
                        .filter_map(move |s| e.id_on(s).map(|id| (s, id.as_str())))
                })
                .collect();
            let mut keys: Vec<String> = Vec::new();
            for side in [Side::A, Side::B] {
                for r in &read[side_idx(side)] {
                    if !linked.contains(&(side, r.id.as_str())) {
                        if let Some(k) = key_of(spec, side, &r.fields) {
                            keys.push(k);
                        }
                    }
                }
            }
            keys.sort();
            keys.dedup();
            let by_key: Vec<Entry> = self
                .state
                .entries_by_keys(sync, &keys)
                .await?
                .into_iter()
                .filter(|e| known.insert(e.id))
                .collect();
            // A first sight merges current values: read the records these
            // entries stand for (seen values may be stale).
            for side in [Side::A, Side::B] {
                let ids: Vec<String> = by_key
                    .iter()
                    .filter(|e| !e.deleted_on(side))
                    .filter_map(|e| e.id_on(side).cloned())
                    .collect();
                self.read_unread(def, objs, &mut read, side, ids).await?;
            }
            entries.extend(by_key);
        }

        // Parent references, translated through the parents' links.
        let mut refs: HashMap<(String, Side, String), String> = HashMap::new();
        for fm in spec.fields.iter().filter(|f| f.parent.is_some()) {
            let parent = fm.parent.clone().unwrap_or_default();
            for side in [Side::A, Side::B] {
                let name = fm.name(side);
                let mut ids: Vec<String> = read[side_idx(side)]
                    .iter()
                    .filter_map(|r| r.get(name).to_text())
                    .collect();
                ids.extend(
                    entries
                        .iter()
                        .filter_map(|e| e.seen(side).and_then(|s| s.get(name)))
                        .filter_map(Value::to_text),
                );
                ids.sort();
                ids.dedup();
                for (from, to) in self.state.translate_ids(&parent, side, &ids).await? {
                    refs.insert((parent.clone(), side, from), to);
                }
            }
        }
        for e in &mut entries {
            if let Some((da, db)) = unrecorded_deletes.get(&e.id) {
                e.deleted_a |= da;
                e.deleted_b |= db;
            }
        }
        let [ra, rb] = read;
        let p = plan(
            spec,
            PlanInput {
                a: ra,
                b: rb,
                entries: &entries,
                refs: &refs,
            },
        );
        Ok((p, entries))
    }

    /// Carries out a plan in chunks: intents, writes per side, then one
    /// state transaction per chunk with the links and seen values.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        def: &SyncDef,
        spec: &SyncSpec,
        objs: &[Arc<dyn Object>; 2],
        p: Plan,
        old: &[Entry],
        run_id: i64,
        report: &mut SyncReport,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let sync = def.name.as_str();
        let old: HashMap<i64, &Entry> = old.iter().map(|e| (e.id, e)).collect();
        let chunk_size = def
            .batch_size
            .unwrap_or(usize::MAX)
            .min(objs[0].capabilities().max_batch)
            .min(objs[1].capabilities().max_batch)
            .max(1);
        report.echoes_suppressed += p.items.iter().map(|i| i.echoes as u64).sum::<u64>();
        let echoes_seen: Vec<i64> = p
            .items
            .iter()
            .filter(|i| !i.changed && i.echoes > 0)
            .filter_map(|i| i.entry_id)
            .collect();
        if !echoes_seen.is_empty() {
            self.state
                .commit(&Commit {
                    sync: sync.to_string(),
                    run_id,
                    echoes_seen,
                    ..Commit::default()
                })
                .await?;
        }
        let items: Vec<ItemPlan> = p
            .items
            .into_iter()
            .filter(|i| i.changed)
            .filter(|i| !i.entry_id.is_some_and(|id| report.failed.contains(&id)))
            .collect();
        count_status(&items, report);
        let total = items.len();
        let mut done = 0;
        for chunk in items.chunks(chunk_size) {
            let mut chunk: Vec<ItemPlan> = chunk.to_vec();
            // 1. Intents for the creates, committed before any create is sent.
            let mut intents = Vec::new();
            for it in &chunk {
                for side in [Side::A, Side::B] {
                    if let Some(PlannedWrite::Create { fields }) = it.write(side) {
                        let src = side.other();
                        intents.push(new_intent(
                            spec,
                            sync,
                            side,
                            it.entry_id,
                            it.id(src).cloned().unwrap_or_default(),
                            it.seen(src).cloned(),
                            [it.key(src).cloned(), it.key(side).cloned()],
                            fields,
                        ));
                    }
                }
            }
            let mut intent_batches = Vec::new();
            if !intents.is_empty() {
                intent_batches.push(self.state.add_intents(&intents).await?);
            }
            // 2. Writes, side by side.
            let mut created: Vec<Vec<(Side, Fields)>> = vec![Vec::new(); chunk.len()];
            let mut changes: Vec<Vec<(Side, FieldChange)>> = vec![Vec::new(); chunk.len()];
            let mut failed: Vec<Option<Failure>> = vec![None; chunk.len()];
            let mut echo: Vec<[bool; 2]> = vec![[false; 2]; chunk.len()];
            for side in [Side::A, Side::B] {
                let mut idx = Vec::new();
                let mut ops = Vec::new();
                for (ix, it) in chunk.iter().enumerate() {
                    let op = match it.write(side) {
                        Some(PlannedWrite::Create { fields }) => WriteOp::Create {
                            fields: fields.clone(),
                        },
                        Some(PlannedWrite::Update { id, changes }) => WriteOp::Update {
                            id: id.clone(),
                            fields: changes
                                .iter()
                                .map(|c| (c.field.clone(), c.new.clone()))
                                .collect(),
                        },
                        Some(PlannedWrite::Delete { id }) => WriteOp::Delete { id: id.clone() },
                        None => continue,
                    };
                    idx.push(ix);
                    ops.push(op);
                }
                if ops.is_empty() {
                    continue;
                }
                let outcomes = objs[side_idx(side)]
                    .write(ops)
                    .await
                    .map_err(connector_err(def, side))?;
                for (ix, outcome) in idx.into_iter().zip(outcomes) {
                    let it = &mut chunk[ix];
                    match outcome {
                        WriteOutcome::Written(rec) => {
                            let seen = match it.write(side) {
                                Some(w) => {
                                    seen_after_write(spec, side, it.seen(side), w, &rec.fields)
                                }
                                None => mapped(spec, side, &rec.fields),
                            };
                            match it.write(side) {
                                Some(PlannedWrite::Create { fields }) => {
                                    created[ix].push((side, fields.clone()));
                                    report.side(side).created += 1;
                                    let key = key_of(spec, side, &rec.fields);
                                    match side {
                                        Side::A => {
                                            it.a_id = Some(rec.id.clone());
                                            it.key_a = key;
                                        }
                                        Side::B => {
                                            it.b_id = Some(rec.id.clone());
                                            it.key_b = key;
                                        }
                                    }
                                }
                                Some(PlannedWrite::Update { changes: ch, .. }) => {
                                    changes[ix].extend(ch.iter().map(|c| (side, c.clone())));
                                    report.side(side).updated += 1;
                                }
                                _ => {}
                            }
                            match side {
                                Side::A => it.seen_a = Some(seen),
                                Side::B => it.seen_b = Some(seen),
                            }
                            echo[ix][side_idx(side)] = true;
                        }
                        WriteOutcome::Deleted => {
                            report.side(side).deleted += 1;
                            match side {
                                Side::A => it.deleted_a = true,
                                Side::B => it.deleted_b = true,
                            }
                        }
                        WriteOutcome::Failed(f) => {
                            report.side(side).failed += 1;
                            failed[ix] = Some(f);
                        }
                    }
                }
            }
            // 3. Record what happened, with the intents they settle.
            let mut writes = Vec::new();
            let mut drops = Vec::new();
            for (ix, mut it) in chunk.into_iter().enumerate() {
                drops.extend(it.drop_entries.iter().copied());
                let prior = it.entry_id.and_then(|id| old.get(&id).copied());
                if let Some(f) = failed[ix].take() {
                    // Nothing counts as synced: back to what was seen before,
                    // so the next run tries again.
                    it.status = Status::Failed(f);
                    match prior {
                        Some(e) => {
                            it.seen_a = e.seen_a.clone();
                            it.seen_b = e.seen_b.clone();
                            if e.b_id.is_none() || e.a_id.is_none() {
                                // an unpaired record stays unpaired
                                if it
                                    .write_a
                                    .as_ref()
                                    .is_some_and(|w| matches!(w, PlannedWrite::Create { .. }))
                                {
                                    it.a_id = e.a_id.clone();
                                }
                                if it
                                    .write_b
                                    .as_ref()
                                    .is_some_and(|w| matches!(w, PlannedWrite::Create { .. }))
                                {
                                    it.b_id = e.b_id.clone();
                                }
                            }
                        }
                        None => {
                            if matches!(it.write_a, Some(PlannedWrite::Create { .. }))
                                && !created[ix].iter().any(|(s, _)| *s == Side::A)
                            {
                                it.a_id = None;
                                it.seen_a = None;
                            }
                            if matches!(it.write_b, Some(PlannedWrite::Create { .. }))
                                && !created[ix].iter().any(|(s, _)| *s == Side::B)
                            {
                                it.b_id = None;
                                it.seen_b = None;
                            }
                        }
                    }
                    it.conflicts.clear();
                    it.resolved.clear();
                }
                let failed_attempt = matches!(it.status, Status::Failed(_));
                if let (true, Some(id)) = (failed_attempt, it.entry_id) {
                    report.failed.insert(id);
                }
                let mut e = prior.cloned().unwrap_or_else(|| Entry::new(0));
                it.fill(&mut e);
                e.echo_a = echo[ix][0];
                e.echo_b = echo[ix][1];
                if e.id != 0
                    && drops.contains(&e.id)
                    && !it.drop_entries.is_empty()
                    && it.entry_id == Some(e.id)
                {
                    continue;
                }
                writes.push(EntryWrite {
                    id: it.entry_id,
                    entry: e,
                    changes: std::mem::take(&mut changes[ix]),
                    created: std::mem::take(&mut created[ix]),
                    conflicts: it.conflicts.clone(),
                    resolved: it.resolved.clone(),
                    failed_attempt,
                });
            }
            self.state
                .commit(&Commit {
                    sync: sync.to_string(),
                    run_id,
                    drops,
                    entries: writes,
                    intents_done: Vec::new(),
                    intent_batches,
                    cursors: Vec::new(),
                    echoes_seen: Vec::new(),
                })
                .await?;
            done += chunk_size.min(total - done);
            if let Some(f) = &opts.progress {
                f(Progress::Applying {
                    sync: sync.to_string(),
                    done,
                    total,
                });
            }
        }
        Ok(())
    }

    /// Settles intents a crashed run left: a create that reached the target
    /// is linked; one that did not is forgotten (its source is re-planned).
    async fn recover_intents(
        &self,
        def: &SyncDef,
        spec: &SyncSpec,
        objs: &[Arc<dyn Object>; 2],
        run_id: i64,
    ) -> Result<u64, EngineError> {
        let sync = def.name.as_str();
        let pending = self.state.pending_intents(sync).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut recovered = 0;
        let mut writes = Vec::new();
        let mut taken: HashSet<(Side, String)> = HashSet::new();
        for it in &pending {
            let target = it.side;
            let src = target.other();
            let found = objs[side_idx(target)]
                .find(&it.conditions)
                .await
                .map_err(connector_err(def, target))?;
            let [rec] = found.as_slice() else { continue };
            if taken.contains(&(target, rec.id.clone()))
                || !self
                    .state
                    .entries_by_ids(sync, target, std::slice::from_ref(&rec.id))
                    .await?
                    .is_empty()
            {
                continue;
            }
            let existing = self
                .state
                .entries_by_ids(sync, src, std::slice::from_ref(&it.source_id))
                .await?
                .into_iter()
                .next();
            let mut e = existing.clone().unwrap_or_else(|| Entry::new(0));
            // What was sent, not what the record holds now: an edit made
            // after the crash must still read as a change.
            let seen_target: Fields = spec
                .fields
                .iter()
                .map(|fm| {
                    let n = fm.name(target);
                    let v = if spec.field_flows(fm, src) {
                        it.payload.get(n).cloned().unwrap_or(Value::Null)
                    } else {
                        rec.get(n).clone()
                    };
                    (n.to_string(), v)
                })
                .collect();
            e.set_side(
                src,
                Some(it.source_id.clone()),
                it.seen_source.clone(),
                it.key_source.clone(),
            );
            e.set_side(
                target,
                Some(rec.id.clone()),
                Some(seen_target.clone()),
                it.key_target.clone(),
            );
            match target {
                Side::A => e.echo_a = true,
                Side::B => e.echo_b = true,
            }
            e.status = Status::InSync;
            taken.insert((target, rec.id.clone()));
            recovered += 1;
            writes.push(EntryWrite {
                id: existing.map(|x| x.id),
                entry: e,
                changes: Vec::new(),
                created: vec![(target, seen_target)],
                conflicts: Vec::new(),
                resolved: Vec::new(),
                failed_attempt: false,
            });
        }
        self.state
            .commit(&Commit {
                sync: sync.to_string(),
                run_id,
                drops: Vec::new(),
                entries: writes,
                intents_done: pending.iter().map(|i| i.id).collect(),
                intent_batches: Vec::new(),
                cursors: Vec::new(),
                echoes_seen: Vec::new(),
            })
            .await?;
        Ok(recovered)
    }

    /// Recreates on `side` the records deleted there, from their last known
    /// values, and links them again.
    pub async fn restore(
        &self,
        def: &SyncDef,
        side: Side,
        dry_run: bool,
    ) -> Result<RestoreReport, EngineError> {
        let open = self.open_sync(def).await?;
        let objs = [open.a.clone(), open.b.clone()];
        let spec = &open.spec;
        let sync = def.name.as_str();
        let mut report = RestoreReport {
            sync: sync.to_string(),
            side: side.as_str().to_string(),
            dry_run,
            ..RestoreReport::default()
        };
        let entries = self.state.deleted_on(sync, side).await?;
        let schema = objs[side_idx(side)].schema();
        let payload_of = |e: &Entry| -> Fields {
            let seen = if side == Side::A {
                &e.seen_a
            } else {
                &e.seen_b
            };
            seen.clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, v)| {
                    !v.is_empty()
                        && schema.field(k).is_none_or(|f| !f.read_only)
                        && *k != schema.id_field
                })
                .collect::<BTreeMap<_, _>>()
        };
        for e in &entries {
            let fields = payload_of(e);
            let shown: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", v.describe()))
                .collect();
            report.plan.push(format!(
                "recreate on {side} (was {side}:{}): {}",
                e.id_on(side).cloned().unwrap_or_default(),
                shown.join(" ")
            ));
        }
        if dry_run || entries.is_empty() {
            return Ok(report);
        }
        let run_id = self.state.start_run(sync, false).await?;
        for chunk in entries.chunks(objs[side_idx(side)].capabilities().max_batch.max(1)) {
            let intents: Vec<Intent> = chunk
                .iter()
                .map(|e| {
                    let fields = payload_of(e);
                    new_intent(
                        spec,
                        sync,
                        side,
                        Some(e.id),
                        e.id_on(side.other()).cloned().unwrap_or_default(),
                        e.seen(side.other()).cloned(),
                        [e.key(side.other()).cloned(), e.key(side).cloned()],
                        &fields,
                    )
                })
                .collect();
            let batch = self.state.add_intents(&intents).await?;
            let ops: Vec<WriteOp> = chunk
                .iter()
                .map(|e| WriteOp::Create {
                    fields: payload_of(e),
                })
                .collect();
            let outcomes = objs[side_idx(side)]
                .write(ops)
                .await
                .map_err(connector_err(def, side))?;
            let mut writes = Vec::new();
            for (e, outcome) in chunk.iter().zip(outcomes) {
                let old_id = e.id_on(side).cloned().unwrap_or_default();
                match outcome {
                    WriteOutcome::Written(rec) => {
                        let mut n = e.clone();
                        let seen = mapped(spec, side, &rec.fields);
                        match side {
                            Side::A => {
                                n.a_id = Some(rec.id.clone());
                                n.deleted_a = false;
                                n.seen_a = Some(seen.clone());
                                n.echo_a = true;
                            }
                            Side::B => {
                                n.b_id = Some(rec.id.clone());
                                n.deleted_b = false;
                                n.seen_b = Some(seen.clone());
                                n.echo_b = true;
                            }
                        }
                        n.status = if n.deleted_a || n.deleted_b {
                            Status::Deleted
                        } else {
                            Status::InSync
                        };
                        report.restored.push((old_id, rec.id.clone()));
                        writes.push(EntryWrite {
                            id: Some(e.id),
                            entry: n,
                            changes: Vec::new(),
                            created: vec![(side, seen)],
                            conflicts: Vec::new(),
                            resolved: Vec::new(),
                            failed_attempt: false,
                        });
                    }
                    WriteOutcome::Failed(f) => report.failed.push((old_id, f.to_string())),
                    WriteOutcome::Deleted => {}
                }
            }
            self.state
                .commit(&Commit {
                    sync: sync.to_string(),
                    run_id,
                    drops: Vec::new(),
                    entries: writes,
                    intents_done: Vec::new(),
                    intent_batches: vec![batch],
                    cursors: Vec::new(),
                    echoes_seen: Vec::new(),
                })
                .await?;
        }
        let counts = serde_json::json!({"restored": report.restored.len(), "failed": report.failed.len(), "side": side.as_str()});
        self.state.finish_run(run_id, "ok", &counts, None).await?;
        Ok(report)
    }
}

/// Why a held create waits (and how held entries are told apart).
const HELD: &str = "backfill: created once both sides are read in full";

/// Turns the plan's creates into waiting entries, indexed by their own key
/// so the rest of the backfill can still match them.
fn hold_creates(p: &mut Plan) {
    for it in &mut p.items {
        hold_create(it, Side::A, HELD);
        hold_create(it, Side::B, HELD);
    }
}

/// Holds back an item's create on `side`: nothing is written there yet, and
/// the entry waits for `reason`. Returns whether there was a create.
fn hold_create(it: &mut ItemPlan, side: Side, reason: &str) -> bool {
    let (write, seen, key) = match side {
        Side::A => (&mut it.write_a, &mut it.seen_a, &mut it.key_a),
        Side::B => (&mut it.write_b, &mut it.seen_b, &mut it.key_b),
    };
    if !matches!(write, Some(PlannedWrite::Create { .. })) {
        return false;
    }
    *write = None;
    *seen = None;
    *key = None;
    it.status = Status::Waiting(reason.into());
    true
}

/// What a gradual backfill may still spend today.
struct BackfillBudget {
    backfill: crate::schedule::Backfill,
    day: String,
    /// Requests the backfill made today, before this pass.
    spent_before: u64,
    /// The connections' request counters at the start of this pass.
    requests_at_start: u64,
    spent: u64,
    /// The smallest daily limit the connections report (once they have).
    limit: Option<u64>,
}

impl BackfillBudget {
    /// Why the backfill stops now, if it does.
    fn stop(&self) -> Option<String> {
        let b = &self.backfill;
        if !b.open_at(chrono::Utc::now()) {
            return Some(format!(
                "outside the backfill window {}",
                b.window_text().unwrap_or_default()
            ));
        }
        // `budget_share` of the daily limit.
        let allowance = b
            .budget_share
            .zip(self.limit)
            .map(|(share, l)| (l as f64 * share).floor() as u64);
        match allowance {
            Some(a) if self.spent >= a => Some(format!(
                "today's backfill budget is spent: {} of {a} requests",
                self.spent
            )),
            _ => None,
        }
    }

    /// Counts the requests made since the pass began.
    async fn spent_now(&mut self, engine: &Engine, def: &SyncDef) -> Result<(), EngineError> {
        let (requests, limit) = engine.api_usage(def).await;
        self.spent = self.spent_before + requests.saturating_sub(self.requests_at_start);
        self.limit = limit.or(self.limit);
        engine
            .state
            .set_marker(
                &def.name,
                "backfill_spent",
                &serde_json::json!({ "day": self.day, "requests": self.spent }),
            )
            .await?;
        Ok(())
    }
}

/// Where a gradual exchange stands, for the dashboard and the API.
#[derive(Clone, Debug, Serialize)]
pub struct BackfillStatus {
    /// `HH:MM-HH:MM UTC`, when the backfill is limited to a window.
    pub window: Option<String>,
    pub budget_share: Option<f64>,
    /// Each side: whether its initial read is complete.
    pub a_done: bool,
    pub b_done: bool,
    /// Requests the backfill spent today (UTC).
    pub spent_today: u64,
}

impl Engine {
    /// A gradual sync's backfill: how far each side got, and today's spend.
    pub async fn backfill_status(
        &self,
        def: &SyncDef,
    ) -> Result<Option<BackfillStatus>, EngineError> {
        let Some(b) = &def.backfill else {
            return Ok(None);
        };
        let (_, spent_today) = self.backfill_spent(def).await?;
        Ok(Some(BackfillStatus {
            window: b.window_text(),
            budget_share: b.budget_share,
            a_done: self.state.cursor(&def.name, "a").await?.is_some(),
            b_done: self.state.cursor(&def.name, "b").await?.is_some(),
            spent_today,
        }))
    }

    /// Today (UTC) and the requests the backfill spent on it.
    async fn backfill_spent(&self, def: &SyncDef) -> Result<(String, u64), EngineError> {
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let spent = self
            .state
            .cursor(&def.name, "backfill_spent")
            .await?
            .filter(|v| v.get("day").and_then(|d| d.as_str()) == Some(day.as_str()))
            .and_then(|v| v.get("requests").and_then(|r| r.as_u64()))
            .unwrap_or(0);
        Ok((day, spent))
    }

    /// Requests sent so far through the sync's API connections, and the
    /// smallest daily limit they report.
    async fn api_usage(&self, def: &SyncDef) -> (u64, Option<u64>) {
        let mut requests = 0;
        let mut limit: Option<u64> = None;
        for ep in [&def.a, &def.b] {
            if let Some(u) = self.connected(&ep.connection).await.and_then(|c| c.usage()) {
                requests += u.requests;
                if let Some(l) = u.daily_limit {
                    limit = Some(limit.map_or(l, |m| m.min(l)));
                }
            }
        }
        (requests, limit)
    }

    async fn backfill_budget(
        &self,
        def: &SyncDef,
        b: &crate::schedule::Backfill,
    ) -> Result<BackfillBudget, EngineError> {
        let (day, spent_before) = self.backfill_spent(def).await?;
        let (requests_at_start, limit) = self.api_usage(def).await;
        Ok(BackfillBudget {
            backfill: b.clone(),
            day,
            spent_before,
            requests_at_start,
            spent: spent_before,
            limit,
        })
    }
}

/// Counts a plan's statuses (writes are counted as they happen).
fn count_status(items: &[ItemPlan], report: &mut SyncReport) {
    for it in items {
        if let Some(id) = it.entry_id {
            let fresh: Vec<&str> = it
                .conflicts
                .iter()
                .map(|c| c.field_a.as_str())
                .filter(|f| report.counted.insert((id, f.to_string())))
                .collect();
            report.conflicts += fresh.len() as u64;
            if !report.counted.insert((id, String::new()))
                && it.write_a.is_none()
                && it.write_b.is_none()
            {
                continue;
            }
        } else {
            report.conflicts += it.conflicts.len() as u64;
        }
        match &it.status {
            Status::Excluded(_) => report.excluded += 1,
            Status::Waiting(_) => report.waiting += 1,
            Status::Failed(_) => {
                // A failure found while planning is counted on the side that
                // would have been written.
                let side = match (&it.a_id, &it.b_id) {
                    (None, Some(_)) => Side::A,
                    _ => Side::B,
                };
                report.side(side).failed += 1;
            }
            _ => {}
        }
    }
}

/// A dry run's counts: what the writes would be.
fn count_plan(p: &Plan, report: &mut SyncReport) {
    report.echoes_suppressed += p.items.iter().map(|i| i.echoes as u64).sum::<u64>();
    let items: Vec<ItemPlan> = p.items.iter().filter(|i| i.changed).cloned().collect();
    count_status(&items, report);
    for it in &items {
        for side in [Side::A, Side::B] {
            match it.write(side) {
                Some(PlannedWrite::Create { .. }) => report.side(side).created += 1,
                Some(PlannedWrite::Update { .. }) => report.side(side).updated += 1,
                Some(PlannedWrite::Delete { .. }) => report.side(side).deleted += 1,
                None => {}
            }
        }
    }
}
