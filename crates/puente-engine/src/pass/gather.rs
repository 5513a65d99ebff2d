//! Planning a page: gather the entries its records concern (by id, and by
//! match key for unpaired ones), read the records those entries stand for
//! (the partners of linked pairs too, so a merge compares current values),
//! translate parent references, and plan (pure).

use std::collections::{HashMap, HashSet};

use puente_core::{Record, Side, Value};
use puente_plan::{key_of, plan, Entry, Plan, PlanInput};
use tracing::Instrument;

use super::deletes::UnrecordedDeletes;
use super::{live_ids, side_idx, Pass};
use crate::EngineError;

impl Pass<'_> {
    /// Plans the given records. `partners`: read the other side of linked
    /// pairs. Returns the plan and the entries it was made from.
    pub(super) async fn plan_page(
        &self,
        read: [Vec<Record>; 2],
        partners: bool,
        unrecorded_deletes: &UnrecordedDeletes,
    ) -> Result<(Plan, Vec<Entry>), EngineError> {
        let span = tracing::debug_span!("plan", a = read[0].len(), b = read[1].len());
        self.gather_and_plan(read, partners, unrecorded_deletes)
            .instrument(span)
            .await
    }

    async fn gather_and_plan(
        &self,
        mut read: [Vec<Record>; 2],
        partners: bool,
        unrecorded_deletes: &UnrecordedDeletes,
    ) -> Result<(Plan, Vec<Entry>), EngineError> {
        let sync = self.sync();
        let state = &self.engine.state;
        let spec = &self.spec;
        let mut entries: Vec<Entry> = Vec::new();
        let mut known: HashSet<i64> = HashSet::new();
        for side in [Side::A, Side::B] {
            let ids: Vec<String> = read[side_idx(side)].iter().map(|r| r.id.clone()).collect();
            for e in state.entries_by_ids(sync, side, &ids).await? {
                if known.insert(e.id) {
                    entries.push(e);
                }
            }
        }
        if partners {
            // A one-way target left unread this pass stands in with its
            // seen values (its changes are ignored by the direction).
            for side in [Side::A, Side::B]
                .into_iter()
                .filter(|s| self.unread != Some(*s))
            {
                let ids: Vec<String> = entries
                    .iter()
                    .filter(|e| e.live_pair())
                    .filter_map(|e| e.id_on(side).cloned())
                    .collect();
                self.read_unread(&mut read, side, ids).await?;
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
            let mut by_key: Vec<Entry> = state
                .entries_by_keys(sync, &keys)
                .await?
                .into_iter()
                .filter(|e| known.insert(e.id))
                .collect();
            // A first sight merges current values: read the records these
            // entries stand for (seen values may be stale).
            for side in [Side::A, Side::B] {
                self.read_unread(&mut read, side, live_ids(&by_key, side))
                    .await?;
            }
            if let Some(target) = self.unread {
                let found = self.look_up_on_target(target, &read, &linked).await?;
                let have: HashSet<String> = read[side_idx(target)]
                    .iter()
                    .map(|r| r.id.clone())
                    .collect();
                let found: Vec<Record> = found
                    .into_iter()
                    .filter(|r| !have.contains(&r.id))
                    .collect();
                let ids: Vec<String> = found.iter().map(|r| r.id.clone()).collect();
                let mut more = Vec::new();
                for e in state.entries_by_ids(sync, target, &ids).await? {
                    if known.insert(e.id) {
                        more.push(e);
                    }
                }
                read[side_idx(target)].extend(found);
                // A found record already linked: its partner, read now too.
                let source = target.other();
                self.read_unread(&mut read, source, live_ids(&more, source))
                    .await?;
                by_key.extend(more);
            }
            entries.extend(by_key);
        }

        // Parent references, translated through the parents' links.
        let mut refs: HashMap<(String, Side, String), String> = HashMap::new();
        for fm in spec.fields.iter() {
            let Some(parent) = &fm.parent else { continue };
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
                for (from, to) in state.translate_ids(parent, side, &ids).await? {
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

    /// The records on a one-way target left unread this pass that share a
    /// match key with a source record of `read` that is not linked and
    /// whose key no target record read now holds: created there since it
    /// was last read, they are matched, not duplicated.
    async fn look_up_on_target(
        &self,
        target: Side,
        read: &[Vec<Record>; 2],
        linked: &HashSet<(Side, &str)>,
    ) -> Result<Vec<Record>, EngineError> {
        let spec = &self.spec;
        let source = target.other();
        // The keys the target's records read now hold (an entry's stored
        // key may be stale).
        let known: HashSet<String> = read[side_idx(target)]
            .iter()
            .filter_map(|r| key_of(spec, target, &r.fields))
            .collect();
        let field = |k: &puente_plan::MatchKey| -> (String, String) {
            match target {
                Side::A => (k.a.clone(), k.b.clone()),
                Side::B => (k.b.clone(), k.a.clone()),
            }
        };
        let mut wanted: Vec<&Record> = Vec::new();
        for r in &read[side_idx(source)] {
            if linked.contains(&(source, r.id.as_str())) {
                continue;
            }
            match key_of(spec, source, &r.fields) {
                Some(k) if !known.contains(k.as_str()) => wanted.push(r),
                _ => {}
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let obj = self.obj(target);
        let err = self.connector_err(target);
        if let [only] = spec.keys.as_slice() {
            let (on_target, on_source) = field(only);
            let values: Vec<Value> = wanted
                .iter()
                .filter_map(|r| r.fields.get(&on_source).cloned())
                .collect();
            return obj.find_any(&on_target, &values).await.map_err(err);
        }
        let mut found = Vec::new();
        for r in wanted {
            let conditions: Vec<(String, Value)> = spec
                .keys
                .iter()
                .map(field)
                .map(|(t, s)| (t, r.fields.get(&s).cloned().unwrap_or(Value::Null)))
                .collect();
            found.extend(obj.find(&conditions).await.map_err(&err)?);
        }
        Ok(found)
    }

    /// Reads the records of `entries` by id on both sides (where not
    /// deleted), then plans and applies them, holding creates if `hold`.
    /// Returns how many records each side gave.
    pub(super) async fn replan(
        &mut self,
        entries: &[Entry],
        hold: bool,
    ) -> Result<[u64; 2], EngineError> {
        let mut read = [Vec::new(), Vec::new()];
        for side in [Side::A, Side::B] {
            read[side_idx(side)] = self.read_ids(side, &live_ids(entries, side)).await?;
        }
        let counts = [read[0].len() as u64, read[1].len() as u64];
        let (mut p, old) = self
            .plan_page(read, true, &UnrecordedDeletes::new())
            .await?;
        if hold {
            super::backfill::hold_creates(&mut p);
        }
        self.apply(p, &old).await?;
        Ok(counts)
    }
}
