//! Step 7: a plan carried out in chunks of the smaller batch size. The
//! intents of a chunk's creates are committed before its batches are
//! written; then one fenced transaction records the chunk: links, seen
//! values (a create: the record the target reports; an update: the written
//! fields as the target holds them), statuses, the change log, conflicts,
//! and the intents it settles. That transaction and the next chunk's
//! intents are made while the chunk after it is written.

use std::collections::HashMap;

use puente_core::{Failure, Fields, Side, Value, WriteOp, WriteOutcome};
use puente_plan::{
    key_of, mapped, seen_after_write, Entry, FieldChange, ItemPlan, Plan, PlannedWrite, Status,
    SyncSpec,
};
use puente_state::{Commit, EntryWrite, IntentBatch, IntentRef};
use tracing::Instrument;

use super::recover::intent_conditions;
use super::{joined, side_idx, Pass};
use crate::{EngineError, Progress};

/// What happened to one item of a chunk.
#[derive(Default, Clone)]
struct Outcome {
    created: Vec<Side>,
    changes: Vec<(Side, FieldChange)>,
    failed: Option<Failure>,
    /// Puente wrote to that side (a = 0, b = 1) and has not read it back.
    echo: [bool; 2],
}

impl Pass<'_> {
    /// Carries out a plan made from `old` entries.
    pub(super) async fn apply(&mut self, p: Plan, old: &[Entry]) -> Result<(), EngineError> {
        let span = tracing::debug_span!("apply", items = p.items.len());
        self.apply_plan(p, old).instrument(span).await
    }

    async fn apply_plan(&mut self, p: Plan, old: &[Entry]) -> Result<(), EngineError> {
        let old: HashMap<i64, &Entry> = old.iter().map(|e| (e.id, e)).collect();
        // A chunk is at most one batch of each side written to (a one-way
        // sync never writes to its source, so the source's batch size does
        // not bound it).
        let chunk_size = [Side::A, Side::B]
            .into_iter()
            .filter(|side| self.spec.direction.flows_from(side.other()))
            .map(|side| self.objs[side_idx(side)].capabilities().max_batch)
            .fold(self.def.batch_size.unwrap_or(usize::MAX), usize::min)
            .max(1);
        self.report.echoes_suppressed += p.items.iter().map(|i| i.echoes as u64).sum::<u64>();
        let echoes_seen: Vec<i64> = p
            .items
            .iter()
            .filter(|i| !i.changed && i.echoes > 0)
            .filter_map(|i| i.entry_id)
            .collect();
        if !echoes_seen.is_empty() {
            self.commit(Commit {
                echoes_seen,
                ..Commit::default()
            })
            .await?;
        }
        let failed_before = &self.report.failed;
        let items: Vec<ItemPlan> = p
            .items
            .into_iter()
            .filter(|i| i.changed)
            .filter(|i| !i.entry_id.is_some_and(|id| failed_before.contains(&id)))
            .collect();
        self.report.count_status(&items);
        let total = items.len();
        let mut done = 0;
        let mut chunks = owned_chunks(items, chunk_size);
        // The first chunk's intents are recorded alone. From then on, each
        // chunk is written while the state store commits the chunk before
        // it and records the intents of the chunk after it: a create is
        // still sent only once its intent is committed, and the target and
        // the state store work at the same time.
        let mut current = chunks.next();
        let mut batch = current.as_deref().and_then(|c| intent_batch(&self.spec, c));
        if let Some(b) = &batch {
            self.engine
                .state
                .add_intent_batch(self.sync(), b, Some(self.lease.lease()))
                .await?;
        }
        let mut settled: Option<Commit> = None;
        while let Some(mut chunk) = current.take() {
            self.lease.check()?;
            let next = chunks.next();
            let before = settled.take().map(|c| self.fenced(c));
            // On a task of its own, so that binding the commit's rows and
            // serialising the next chunk's intents take the other core
            // while this one sends the target's batch. The next chunk comes
            // back with its intents recorded.
            let state = self.engine.state.clone();
            let spec = self.spec.clone();
            let (sync, lease) = (self.def.name.clone(), self.lease.lease().clone());
            let mut state_work = tokio::spawn(async move {
                if let Some(c) = &before {
                    state.commit(c).await?;
                }
                let next_batch = next.as_deref().and_then(|c| intent_batch(&spec, c));
                if let Some(b) = &next_batch {
                    state.add_intent_batch(&sync, b, Some(&lease)).await?;
                }
                Ok::<_, puente_state::StateError>((next, next_batch))
            });
            let (written, recorded) =
                tokio::join!(self.write_chunk(&mut chunk), joined(&mut state_work));
            let (next, next_batch) = recorded?;
            let outcomes = written?;
            done += chunk.len();
            settled = Some(self.settle_chunk(chunk, outcomes, &old, batch.take()));
            batch = next_batch;
            current = next;
            self.progress(Progress::Applying {
                sync: self.def.name.clone(),
                done,
                total,
            });
        }
        match settled {
            // The last chunk's commit waits for the next page's read when
            // the stream allows it (see `Pass::commit_behind`).
            Some(c) if self.commit_behind => self.commit_behind(c).await,
            Some(c) => self.commit(c).await,
            None => Ok(()),
        }
    }

    /// Sends a chunk's writes, side by side.
    async fn write_chunk(&mut self, chunk: &mut [ItemPlan]) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes = vec![Outcome::default(); chunk.len()];
        for side in [Side::A, Side::B] {
            self.write_side(side, chunk, &mut outcomes).await?;
        }
        Ok(outcomes)
    }

    /// What a written chunk leaves to commit: links, seen values,
    /// statuses, the change log, conflicts, and its intents settled.
    fn settle_chunk(
        &mut self,
        chunk: Vec<ItemPlan>,
        outcomes: Vec<Outcome>,
        old: &HashMap<i64, &Entry>,
        intents: Option<IntentBatch>,
    ) -> Commit {
        let mut writes = Vec::with_capacity(chunk.len());
        let mut drops = Vec::new();
        for (it, outcome) in chunk.into_iter().zip(outcomes) {
            drops.extend(it.drop_entries.iter().copied());
            if let Some(w) = self.settle(it, outcome, old, &drops) {
                writes.push(w);
            }
        }
        Commit {
            drops,
            entries: writes,
            intent_batches: intents.into_iter().map(|b| b.token).collect(),
            ..Commit::default()
        }
    }

    /// Sends one side's writes of a chunk and notes each outcome.
    async fn write_side(
        &mut self,
        side: Side,
        chunk: &mut [ItemPlan],
        outcomes: &mut [Outcome],
    ) -> Result<(), EngineError> {
        let mut idx = Vec::with_capacity(chunk.len());
        let mut ops = Vec::with_capacity(chunk.len());
        for (ix, it) in chunk.iter_mut().enumerate() {
            let planned = match side {
                Side::A => &mut it.write_a,
                Side::B => &mut it.write_b,
            };
            let op = match planned {
                // What a create sends is not needed once sent (its intent
                // holds it; the seen values are what the target reports).
                Some(PlannedWrite::Create { fields }) => WriteOp::Create {
                    fields: std::mem::take(fields),
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
            return Ok(());
        }
        // A chunk is sized by the sides written to; should a side it was
        // not sized by get writes, they go in batches it accepts.
        let max_batch = self.obj(side).capabilities().max_batch.max(1);
        let mut results = Vec::with_capacity(ops.len());
        for batch in owned_chunks(ops, max_batch) {
            // On a task of its own, as the state store's work beside it is
            // (see `apply_plan`): encoding and decoding the batch may take
            // either core.
            let obj = self.objs[side_idx(side)].clone();
            let mut task = tokio::spawn(async move { obj.write(batch).await });
            results.extend(joined(&mut task).await.map_err(self.connector_err(side))?);
        }
        for (ix, result) in idx.into_iter().zip(results) {
            let it = &mut chunk[ix];
            let out = &mut outcomes[ix];
            match result {
                WriteOutcome::Written(rec) => {
                    let seen = match it.write(side) {
                        Some(w) => {
                            seen_after_write(&self.spec, side, it.seen(side), w, &rec.fields)
                        }
                        None => mapped(&self.spec, side, &rec.fields),
                    };
                    match it.write(side) {
                        Some(PlannedWrite::Create { .. }) => {
                            out.created.push(side);
                            self.report.side(side).created += 1;
                            let key = key_of(&self.spec, side, &rec.fields);
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
                        Some(PlannedWrite::Update { changes, .. }) => {
                            out.changes
                                .extend(changes.iter().map(|c| (side, c.clone())));
                            self.report.side(side).updated += 1;
                        }
                        _ => {}
                    }
                    match side {
                        Side::A => it.seen_a = Some(seen),
                        Side::B => it.seen_b = Some(seen),
                    }
                    out.echo[side_idx(side)] = true;
                }
                WriteOutcome::Deleted => {
                    self.report.side(side).deleted += 1;
                    match side {
                        Side::A => it.deleted_a = true,
                        Side::B => it.deleted_b = true,
                    }
                }
                WriteOutcome::Failed(f) => {
                    self.report.side(side).failed += 1;
                    out.failed = Some(f);
                }
            }
        }
        Ok(())
    }

    /// The entry to store for one written item: on a failure, nothing
    /// counts as synced (seen values as they were, so the next run tries
    /// again). `None` when the entry is dropped (merged into another).
    fn settle(
        &mut self,
        mut it: ItemPlan,
        mut out: Outcome,
        old: &HashMap<i64, &Entry>,
        drops: &[i64],
    ) -> Option<EntryWrite> {
        let prior = it.entry_id.and_then(|id| old.get(&id).copied());
        if let Some(f) = out.failed.take() {
            it.status = Status::Failed(f);
            let creates = |w: &Option<PlannedWrite>| matches!(w, Some(PlannedWrite::Create { .. }));
            match prior {
                Some(e) => {
                    it.seen_a = e.seen_a.clone();
                    it.seen_b = e.seen_b.clone();
                    if e.b_id.is_none() || e.a_id.is_none() {
                        // an unpaired record stays unpaired
                        if creates(&it.write_a) {
                            it.a_id = e.a_id.clone();
                        }
                        if creates(&it.write_b) {
                            it.b_id = e.b_id.clone();
                        }
                    }
                }
                None => {
                    if creates(&it.write_a) && !out.created.contains(&Side::A) {
                        it.a_id = None;
                        it.seen_a = None;
                    }
                    if creates(&it.write_b) && !out.created.contains(&Side::B) {
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
            self.report.failed.insert(id);
        }
        let mut e = prior.cloned().unwrap_or_else(|| Entry::new(0));
        it.fill(&mut e);
        [e.echo_a, e.echo_b] = out.echo;
        if e.id != 0
            && drops.contains(&e.id)
            && !it.drop_entries.is_empty()
            && it.entry_id == Some(e.id)
        {
            return None;
        }
        Some(EntryWrite {
            id: it.entry_id,
            entry: e,
            changes: out.changes,
            created: out.created,
            conflicts: it.conflicts.clone(),
            resolved: it.resolved.clone(),
            failed_attempt,
        })
    }
}

/// `items` in owned chunks of `size` (the last one shorter), for work that
/// moves each chunk on (to a task, into a commit).
fn owned_chunks<T>(items: Vec<T>, size: usize) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<T> = items.by_ref().take(size).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// The intents of a chunk's creates, serialised (`None`: it creates
/// nothing).
fn intent_batch(spec: &SyncSpec, chunk: &[ItemPlan]) -> Option<IntentBatch> {
    let creates: Vec<(Side, &ItemPlan, &Fields)> = chunk
        .iter()
        .flat_map(|it| {
            [Side::A, Side::B]
                .into_iter()
                .filter_map(move |side| match it.write(side) {
                    Some(PlannedWrite::Create { fields }) => Some((side, it, fields)),
                    _ => None,
                })
        })
        .collect();
    if creates.is_empty() {
        return None;
    }
    let conditions: Vec<Vec<(&str, &Value)>> = creates
        .iter()
        .map(|(side, _, fields)| intent_conditions(spec, *side, fields))
        .collect();
    let intents: Vec<IntentRef<'_>> = creates
        .iter()
        .zip(&conditions)
        .map(|((side, it, fields), conditions)| {
            let src = side.other();
            IntentRef {
                side: *side,
                entry_id: it.entry_id,
                source_id: it.id(src).map_or("", String::as_str),
                conditions,
                seen_source: it.seen(src),
                payload: fields,
                key_source: it.key(src).map(String::as_str),
                key_target: it.key(*side).map(String::as_str),
            }
        })
        .collect();
    Some(IntentBatch::new(&intents))
}
