//! Step 2: intents a crashed run left. Each announced create is looked up on
//! its target by its match key. Found: linked, with seen values set to what
//! was sent. Not found: forgotten (its source is planned again).

use std::collections::HashSet;

use puente_core::{Fields, Side, Value};
use puente_plan::{Entry, Status, SyncSpec};
use puente_state::{Commit, EntryWrite};

use super::{side_idx, Pass};
use crate::EngineError;

impl Pass<'_> {
    /// Settles the pending intents; returns how many creates were linked.
    pub(super) async fn recover_intents(&mut self) -> Result<u64, EngineError> {
        let sync = self.sync();
        let state = &self.engine.state;
        let pending = state.pending_intents(sync).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut recovered = 0;
        let mut writes = Vec::new();
        let mut taken: HashSet<(Side, String)> = HashSet::new();
        for it in &pending {
            let target = it.side;
            let src = target.other();
            let found = self.objs[side_idx(target)]
                .find(&it.conditions)
                .await
                .map_err(self.connector_err(target))?;
            let [rec] = found.as_slice() else { continue };
            if taken.contains(&(target, rec.id.clone()))
                || !state
                    .entries_by_ids(sync, target, std::slice::from_ref(&rec.id))
                    .await?
                    .is_empty()
            {
                continue;
            }
            let existing = state
                .entries_by_ids(sync, src, std::slice::from_ref(&it.source_id))
                .await?
                .into_iter()
                .next();
            let mut e = existing.clone().unwrap_or_else(|| Entry::new(0));
            // What was sent, not what the record holds now: an edit made
            // after the crash must still read as a change.
            let seen_target: Fields = self
                .spec
                .fields
                .iter()
                .map(|fm| {
                    let n = fm.name(target);
                    let v = if self.spec.field_flows(fm, src) {
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
                created: vec![target],
                conflicts: Vec::new(),
                resolved: Vec::new(),
                failed_attempt: false,
            });
        }
        self.commit(Commit {
            entries: writes,
            // The intents of one batch share its row's id.
            intents_done: pending
                .iter()
                .map(|i| i.id)
                .collect::<std::collections::BTreeSet<i64>>()
                .into_iter()
                .collect(),
            ..Commit::default()
        })
        .await?;
        Ok(recovered)
    }
}

/// Conditions that find a created record on the target: its match keys, or
/// every written value when the sync has none.
pub(crate) fn intent_conditions<'a>(
    spec: &'a SyncSpec,
    target: Side,
    payload: &'a Fields,
) -> Vec<(&'a str, &'a Value)> {
    let keyed: Vec<(&str, &Value)> = spec
        .keys
        .iter()
        .map(|k| if target == Side::A { &k.a } else { &k.b })
        .filter_map(|n| payload.get(n).map(|v| (n.as_str(), v)))
        .collect();
    if !keyed.is_empty() && keyed.len() == spec.keys.len() {
        keyed
    } else {
        payload.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
}
