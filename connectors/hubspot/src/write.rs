//! Writing HubSpot records: creates (contacts with an e-mail by upsert on
//! it, the rest by batch create with trace ids, so each failure stays with
//! its record), batch updates and archives, then the primary company
//! associations once both ends exist; one outcome per operation.

use std::collections::{BTreeMap, HashMap};

use puente_core::{ConnectorError, Failure, FailureCategory, Record, Value, WriteOp, WriteOutcome};
use reqwest::Method;
use serde_json::{json, Value as J};

use crate::client::{entries, failure, strings};
use crate::connector::HubSpotObject;
use crate::schema::COMPANY_FIELD;

impl HubSpotObject {
    pub(crate) async fn write_ops(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                WriteOp::Create { fields } => creates.push((i, fields)),
                WriteOp::Update { id, fields } => updates.push((i, id.as_str(), fields)),
                WriteOp::Delete { id } => deletes.push((i, id.clone())),
            }
        }
        self.create(&creates, &mut out).await?;
        self.update(&updates, &mut out).await?;
        for chunk in deletes.chunks(100) {
            let inputs: Vec<J> = chunk.iter().map(|(_, id)| json!({"id": id})).collect();
            let a = self
                .client
                .call(
                    Method::POST,
                    &self.path("/batch/archive"),
                    "/crm/v3/objects/{type}/batch/archive",
                    Some(&json!({"inputs": inputs})),
                    true,
                )
                .await?;
            for (i, id) in chunk {
                out[*i] = Some(if a.status < 300 {
                    WriteOutcome::Deleted
                } else {
                    WriteOutcome::Failed(failure(&a.body, &format!("{} {id}", self.object)))
                });
            }
        }
        // Associations, once both ends exist.
        if self.company_type.is_some() {
            let mut wanted = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let fields = match op {
                    WriteOp::Create { fields } | WriteOp::Update { fields, .. } => fields,
                    WriteOp::Delete { .. } => continue,
                };
                if let (Some(v), Some(WriteOutcome::Written(r))) =
                    (fields.get(COMPANY_FIELD), &out[i])
                {
                    wanted.push((i, r.id.clone(), v.clone()));
                }
            }
            let failed = self.write_companies(&wanted).await?;
            for (i, _, v) in &wanted {
                match failed.get(i) {
                    Some(f) => out[*i] = Some(WriteOutcome::Failed(f.clone())),
                    None => {
                        if let Some(WriteOutcome::Written(r)) = &mut out[*i] {
                            r.fields.insert(
                                COMPANY_FIELD.into(),
                                if v.is_empty() {
                                    Value::Null
                                } else {
                                    Value::Ref(v.to_text().unwrap_or_default())
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    WriteOutcome::Failed(Failure::new(FailureCategory::Server, "not written"))
                })
            })
            .collect())
    }

    /// Writes the primary company of written records; returns failures by index.
    async fn write_companies(
        &self,
        wanted: &[(usize, String, Value)],
    ) -> Result<BTreeMap<usize, Failure>, ConnectorError> {
        let mut failed = BTreeMap::new();
        let Some(primary) = self.company_type else {
            return Ok(failed);
        };
        let sets: Vec<&(usize, String, Value)> =
            wanted.iter().filter(|(_, _, v)| !v.is_empty()).collect();
        for chunk in sets.chunks(2000) {
            let inputs: Vec<J> = chunk
                .iter()
                .map(|(_, id, v)| json!({"from": {"id": id}, "to": {"id": v.to_text().unwrap_or_default()}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": primary}]}))
                .collect();
            let a = self
                .client
                .call(
                    Method::POST,
                    &format!(
                        "/crm/v4/associations/{}/companies/batch/create",
                        self.object
                    ),
                    "/crm/v4/associations/{from}/{to}/batch/create",
                    Some(&json!({"inputs": inputs})),
                    true,
                )
                .await?;
            if a.status == 207 || a.status >= 400 {
                for e in entries(&a.body, "errors") {
                    let ids: Vec<&str> = strings(e, "/context/fromObjectId").collect();
                    for (i, id, v) in chunk.iter().copied() {
                        if ids.contains(&id.as_str()) {
                            let f = failure(
                                e,
                                &format!("the company {} of {} {id}", v.describe(), self.object),
                            );
                            failed.insert(*i, f.with_hint("the company does not exist in HubSpot any more: restore it, or clear the link"));
                        }
                    }
                }
                if a.status >= 400 && a.status != 207 {
                    for (i, _, _) in chunk.iter().copied() {
                        failed
                            .entry(*i)
                            .or_insert_with(|| failure(&a.body, "an association"));
                    }
                }
            }
        }
        // Cleared links: remove the current primary company.
        let clears: Vec<&(usize, String, Value)> =
            wanted.iter().filter(|(_, _, v)| v.is_empty()).collect();
        if !clears.is_empty() {
            let mut recs: Vec<Record> = clears
                .iter()
                .map(|(_, id, _)| Record::new(id.clone()))
                .collect();
            self.fill_companies(&mut recs).await?;
            let inputs: Vec<J> = recs
                .iter()
                .filter_map(|r| match r.get(COMPANY_FIELD) {
                    Value::Ref(c) => Some(json!({"from": {"id": r.id}, "to": [{"id": c}]})),
                    _ => None,
                })
                .collect();
            if !inputs.is_empty() {
                let a = self
                    .client
                    .call(
                        Method::POST,
                        &format!(
                            "/crm/v4/associations/{}/companies/batch/archive",
                            self.object
                        ),
                        "/crm/v4/associations/{from}/{to}/batch/archive",
                        Some(&json!({"inputs": inputs})),
                        true,
                    )
                    .await?;
                a.ok("unlinking companies of", &self.object)?;
            }
        }
        Ok(failed)
    }

    fn body_of(&self, fields: &puente_core::Fields) -> serde_json::Map<String, J> {
        fields
            .iter()
            .filter(|(k, _)| k.as_str() != COMPANY_FIELD && k.as_str() != "hs_object_id")
            .map(|(k, v)| (k.clone(), J::String(v.to_text().unwrap_or_default())))
            .collect()
    }

    /// Creates: contacts with an e-mail by upsert on email (idempotent, so
    /// a lost answer can be retried); the rest by batch create with trace
    /// ids, so each failure stays with its record.
    async fn create(
        &self,
        items: &[(usize, &puente_core::Fields)],
        out: &mut [Option<WriteOutcome>],
    ) -> Result<(), ConnectorError> {
        let (upserts, creates): (Vec<_>, Vec<_>) = items.iter().copied().partition(|(_, f)| {
            self.object == "contacts" && f.get("email").is_some_and(|e| !e.is_empty())
        });
        for chunk in upserts.chunks(100) {
            self.upsert(chunk, out).await?;
        }
        for chunk in creates.chunks(100) {
            self.create_traced(chunk, out).await?;
        }
        Ok(())
    }

    /// Upserts contacts on email. HubSpot refuses such a batch as a whole
    /// when one input is bad, so a refused batch is halved until the bad
    /// input stands alone (the rest written, still idempotently).
    fn upsert<'a>(
        &'a self,
        chunk: &'a [(usize, &'a puente_core::Fields)],
        out: &'a mut [Option<WriteOutcome>],
    ) -> futures::future::BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let inputs: Vec<J> = chunk
                .iter()
                .map(|(_, f)| {
                    let mut props = self.body_of(f);
                    let email = props
                        .remove("email")
                        .and_then(|e| e.as_str().map(str::to_string))
                        .unwrap_or_default();
                    json!({"id": email, "idProperty": "email", "properties": props})
                })
                .collect();
            let a = self
                .client
                .call(
                    Method::POST,
                    &self.path("/batch/upsert"),
                    "/crm/v3/objects/{type}/batch/upsert",
                    Some(&json!({"inputs": inputs})),
                    true,
                )
                .await?;
            if a.status >= 400 {
                if let [(i, f)] = chunk {
                    out[*i] = Some(WriteOutcome::Failed(failure(
                        &a.body,
                        &describe_new(&self.object, f),
                    )));
                    return Ok(());
                }
                let (left, right) = chunk.split_at(chunk.len() / 2);
                self.upsert(left, out).await?;
                return self.upsert(right, out).await;
            }
            let mut by_email: HashMap<String, Record> = HashMap::new();
            for o in entries(&a.body, "results") {
                if let Some(r) = self.record(o) {
                    if let Some(e) = r.get("email").to_text() {
                        by_email.insert(e.to_lowercase(), r);
                    }
                }
            }
            for (i, f) in chunk {
                let email = f
                    .get("email")
                    .and_then(|e| e.to_text())
                    .unwrap_or_default()
                    .trim()
                    .to_lowercase();
                out[*i] = Some(match by_email.remove(&email) {
                    Some(r) => WriteOutcome::Written(r),
                    None => WriteOutcome::Failed(Failure::new(
                        FailureCategory::Server,
                        format!("HubSpot's upsert answer has no contact {email}"),
                    )),
                });
            }
            Ok(())
        })
    }

    async fn create_traced(
        &self,
        items: &[(usize, &puente_core::Fields)],
        out: &mut [Option<WriteOutcome>],
    ) -> Result<(), ConnectorError> {
        let inputs: Vec<J> = items
            .iter()
            .map(|(i, f)| json!({"properties": self.body_of(f), "associations": [], "objectWriteTraceId": format!("op{i}")}))
            .collect();
        let a = self
            .client
            .call(
                Method::POST,
                &self.path("/batch/create"),
                "/crm/v3/objects/{type}/batch/create",
                Some(&json!({"inputs": inputs})),
                false,
            )
            .await?;
        if a.status >= 400 && a.status != 207 {
            for (i, f) in items {
                out[*i] = Some(WriteOutcome::Failed(failure(
                    &a.body,
                    &describe_new(&self.object, f),
                )));
            }
            return Ok(());
        }
        let mut by_trace: HashMap<String, Record> = HashMap::new();
        let results = a
            .body
            .get("results")
            .and_then(J::as_array)
            .cloned()
            .unwrap_or_default();
        for (n, o) in results.iter().enumerate() {
            let trace = o
                .get("objectWriteTraceId")
                .and_then(J::as_str)
                .map(str::to_string);
            if let Some(r) = self.record(o) {
                // Without trace ids in the answer, HubSpot keeps input order.
                let key = trace.unwrap_or_else(|| {
                    format!("op{}", items.get(n).map(|x| x.0).unwrap_or(usize::MAX))
                });
                by_trace.insert(key, r);
            }
        }
        let mut errors: HashMap<String, Failure> = HashMap::new();
        for e in entries(&a.body, "errors") {
            for t in strings(e, "/context/objectWriteTraceId") {
                let i: usize = t.trim_start_matches("op").parse().unwrap_or(usize::MAX);
                let who = items
                    .iter()
                    .find(|(x, _)| *x == i)
                    .map(|(_, f)| describe_new(&self.object, f))
                    .unwrap_or_default();
                errors.insert(t.to_string(), failure(e, &who));
            }
        }
        for (i, _) in items {
            let key = format!("op{i}");
            out[*i] = Some(match (by_trace.remove(&key), errors.remove(&key)) {
                (Some(r), _) => WriteOutcome::Written(r),
                (None, Some(f)) => WriteOutcome::Failed(f),
                (None, None) => WriteOutcome::Failed(Failure::new(
                    FailureCategory::Server,
                    "HubSpot's batch answer does not mention this record",
                )),
            });
        }
        Ok(())
    }

    async fn update(
        &self,
        items: &[(usize, &str, &puente_core::Fields)],
        out: &mut [Option<WriteOutcome>],
    ) -> Result<(), ConnectorError> {
        for chunk in items.chunks(100) {
            // Each record's properties; those whose only change is their
            // company have none.
            let (with_props, only_links): (Vec<_>, Vec<_>) = chunk
                .iter()
                .map(|(_, id, f)| (*id, self.body_of(f)))
                .partition(|(_, props)| !props.is_empty());
            let mut by_id: HashMap<String, Record> = HashMap::new();
            let mut errors: HashMap<String, Failure> = HashMap::new();
            if !with_props.is_empty() {
                let inputs: Vec<J> = with_props
                    .iter()
                    .map(|(id, props)| json!({"id": id, "properties": props}))
                    .collect();
                let a = self
                    .client
                    .call(
                        Method::POST,
                        &self.path("/batch/update"),
                        "/crm/v3/objects/{type}/batch/update",
                        Some(&json!({"inputs": inputs})),
                        true,
                    )
                    .await?;
                if a.status >= 400 && a.status != 207 {
                    for (id, _) in &with_props {
                        errors.insert(
                            id.to_string(),
                            failure(&a.body, &format!("{} {id}", self.object)),
                        );
                    }
                } else {
                    for o in entries(&a.body, "results") {
                        if let Some(r) = self.record(o) {
                            by_id.insert(r.id.clone(), r);
                        }
                    }
                    for e in entries(&a.body, "errors") {
                        for id in strings(e, "/context/ids") {
                            errors.insert(
                                id.to_string(),
                                failure(e, &format!("{} {id}", self.object)),
                            );
                        }
                    }
                }
            }
            // Records whose only change is their company: read them back.
            let only_links: Vec<String> = only_links
                .into_iter()
                .map(|(id, _)| id.to_string())
                .collect();
            if !only_links.is_empty() {
                for r in self.read_ids(&only_links).await? {
                    by_id.insert(r.id.clone(), r);
                }
            }
            for (i, id, _) in chunk {
                out[*i] = Some(match (by_id.remove(*id), errors.remove(*id)) {
                    (_, Some(f)) => WriteOutcome::Failed(f),
                    (Some(r), None) => WriteOutcome::Written(r),
                    (None, None) => WriteOutcome::Failed(Failure::new(
                        FailureCategory::NotFound,
                        format!("{} {id} is not in HubSpot any more", self.object),
                    )),
                });
            }
        }
        Ok(())
    }
}

fn describe_new(object: &str, f: &puente_core::Fields) -> String {
    let hint = ["email", "name", "dealname", "subject", "domain", "hs_sku"]
        .iter()
        .find_map(|k| {
            f.get(*k)
                .and_then(|v| v.to_text())
                .map(|v| format!("{k}={v}"))
        });
    match hint {
        Some(h) => format!("the new {object} record ({h})"),
        None => format!("a new {object} record"),
    }
}
