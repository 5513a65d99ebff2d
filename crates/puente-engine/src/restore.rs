//! `restore`: records deleted on a side recreated from their last known
//! values (the tombstone's seen values) and linked again. It holds the
//! sync's lease like a pass, and announces every create with an intent.

use std::collections::BTreeMap;

use puente_core::{Fields, Side, WriteOp, WriteOutcome};
use puente_plan::{mapped, Entry, Status};
use puente_state::{Commit, EntryWrite, IntentRef};

use crate::pass::intent_conditions;
use crate::{Engine, EngineError, RestoreReport, SyncDef};

impl Engine {
    /// Recreates on `side` the records deleted there, and links them again.
    pub async fn restore(
        &self,
        def: &SyncDef,
        side: Side,
        dry_run: bool,
    ) -> Result<RestoreReport, EngineError> {
        let lease = self
            .take_lease(&def.name, std::time::Duration::ZERO)
            .await?;
        let result = self.restore_leased(def, side, dry_run, lease.lease()).await;
        lease.release().await;
        result
    }

    async fn restore_leased(
        &self,
        def: &SyncDef,
        side: Side,
        dry_run: bool,
        lease: &puente_state::Lease,
    ) -> Result<RestoreReport, EngineError> {
        let open = self.open_sync(def).await?;
        let obj = match side {
            Side::A => open.a.clone(),
            Side::B => open.b.clone(),
        };
        let spec = &open.spec;
        let sync = def.name.as_str();
        let mut report = RestoreReport {
            sync: sync.to_string(),
            side: side.as_str().to_string(),
            dry_run,
            ..RestoreReport::default()
        };
        let entries = self.state.deleted_on(sync, side).await?;
        let schema = obj.schema();
        let payload_of = |e: &Entry| -> Fields {
            e.seen(side)
                .cloned()
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
            let shown: Vec<String> = payload_of(e)
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
        let connector_err = |source| EngineError::Connector {
            connection: def.endpoint(side).connection.clone(),
            source,
        };
        for chunk in entries.chunks(obj.capabilities().max_batch.max(1)) {
            let payloads: Vec<Fields> = chunk.iter().map(payload_of).collect();
            let conditions: Vec<_> = payloads
                .iter()
                .map(|p| intent_conditions(spec, side, p))
                .collect();
            let other = side.other();
            let intents: Vec<_> = chunk
                .iter()
                .zip(&payloads)
                .zip(&conditions)
                .map(|((e, payload), conditions)| IntentRef {
                    side,
                    entry_id: Some(e.id),
                    source_id: e.id_on(other).map_or("", String::as_str),
                    conditions,
                    seen_source: e.seen(other),
                    payload,
                    key_source: e.key(other).map(String::as_str),
                    key_target: e.key(side).map(String::as_str),
                })
                .collect();
            let batch = self.state.add_intents(sync, &intents, Some(lease)).await?;
            let ops: Vec<WriteOp> = payloads
                .into_iter()
                .map(|fields| WriteOp::Create { fields })
                .collect();
            let outcomes = obj.write(ops).await.map_err(connector_err)?;
            let mut writes = Vec::new();
            for (e, outcome) in chunk.iter().zip(outcomes) {
                let old_id = e.id_on(side).cloned().unwrap_or_default();
                match outcome {
                    WriteOutcome::Written(rec) => {
                        let mut n = e.clone();
                        let seen = mapped(spec, side, &rec.fields);
                        n.set_side(
                            side,
                            Some(rec.id.clone()),
                            Some(seen.clone()),
                            n.key(side).cloned(),
                        );
                        match side {
                            Side::A => (n.deleted_a, n.echo_a) = (false, true),
                            Side::B => (n.deleted_b, n.echo_b) = (false, true),
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
                            created: vec![side],
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
                    entries: writes,
                    intent_batches: vec![batch],
                    lease: Some(lease.clone()),
                    ..Commit::default()
                })
                .await?;
        }
        let counts = serde_json::json!({"restored": report.restored.len(), "failed": report.failed.len(), "side": side.as_str()});
        self.state.finish_run(run_id, "ok", &counts, None).await?;
        Ok(report)
    }
}
