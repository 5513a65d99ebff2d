//! Step 3: deletes, found by comparing the ids each side lists with the
//! live links (every `delete_check_interval_secs`, or on a full pass). Ids
//! the object says were merged move their link to the survivor; the rest
//! are planned by `plan_deletes` (keep: tombstone; propagate: delete on the
//! other side).

use std::collections::HashMap;

use puente_core::Side;
use puente_plan::{plan_deletes, render, DeletePolicy, Plan};
use puente_state::Marker;
use tracing::Instrument;

use super::{now_secs, Pass};
use crate::EngineError;

/// Deletes a dry run found but did not record, by entry: (on a, on b).
pub(crate) type UnrecordedDeletes = HashMap<i64, (bool, bool)>;

impl Pass<'_> {
    pub(super) async fn detect_deletes(&mut self) -> Result<UnrecordedDeletes, EngineError> {
        let mut unrecorded = UnrecordedDeletes::new();
        let last_scan = self
            .engine
            .state
            .marker(self.sync(), Marker::DeleteScan)
            .await?
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let due =
            self.opts.full || now_secs() - last_scan >= self.def.delete_check_interval_secs as i64;
        if !due {
            return Ok(unrecorded);
        }
        for side in [Side::A, Side::B] {
            let span = tracing::debug_span!("deletes", %side);
            self.deletes_on(side, &mut unrecorded)
                .instrument(span)
                .await?;
        }
        if !self.opts.dry_run {
            self.cursors
                .push((Marker::DeleteScan, serde_json::json!(now_secs())));
        }
        Ok(unrecorded)
    }

    async fn deletes_on(
        &mut self,
        side: Side,
        unrecorded: &mut UnrecordedDeletes,
    ) -> Result<(), EngineError> {
        let sync = self.def.name.as_str();
        let state = &self.engine.state;
        let obj = self.obj(side).clone();
        if !obj.capabilities().delete_detection_by_key_diff {
            return Ok(());
        }
        let live = state.live_ids(sync, side).await?;
        if live.is_empty() {
            return Ok(());
        }
        // Sorted and searched in place: a set of a million ids beside the
        // list would double what the scan holds.
        let mut present = obj.list_ids().await.map_err(self.connector_err(side))?;
        present.sort_unstable();
        // Entries whose record is gone, and the ids they had.
        let (mut missing, gone): (Vec<i64>, Vec<String>) = live
            .iter()
            .filter(|(_, id)| present.binary_search(id).is_err())
            .map(|(e, id)| (*e, id.clone()))
            .unzip();
        drop(present);
        if missing.is_empty() {
            return Ok(());
        }
        // Merged records are relinked to their survivor, not deleted.
        let merges = obj
            .resolve_merged(&gone)
            .await
            .map_err(self.connector_err(side))?;
        if !merges.is_empty() && !self.opts.dry_run {
            let handled = state.relink_merged(sync, side, &merges).await?;
            missing.retain(|e| !handled.contains(e));
            if missing.is_empty() {
                return Ok(());
            }
        }
        if self.spec.deletes == DeletePolicy::Propagate
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
        let entries = state.entries_by_entry_ids(sync, &missing).await?;
        let p = Plan {
            items: plan_deletes(&self.spec, &entries, side),
        };
        if self.opts.dry_run {
            for it in &p.items {
                if let Some(id) = it.entry_id {
                    let e = unrecorded.entry(id).or_default();
                    e.0 |= it.deleted_a;
                    e.1 |= it.deleted_b;
                }
            }
            self.report
                .plan
                .get_or_insert_with(String::new)
                .push_str(&render(&p));
            self.report.count_plan(&p);
        } else {
            self.apply(p, &entries).await?;
        }
        Ok(())
    }
}
