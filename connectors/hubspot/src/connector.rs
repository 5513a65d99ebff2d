//! The `hubspot` connector: schema from the properties API, full reads by
//! list paging, incremental reads by search on the last-modified property
//! (with overlap, and re-windowing past the 10,000-result cap), webhook
//! hints, periodic reconciliation, batch writes with per-record failures,
//! and the primary company association as a reference field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use puente_core::{
    Capabilities, ChangeDetection, Connector, ConnectorError, Cursor, ErrorKind, Failure,
    FailureCategory, FieldSchema, FieldType, Object, ObjectSchema, ObjectSpec, Page, Record, Value,
    WriteOp, WriteOutcome,
};
use reqwest::Method;
use serde_json::{json, Value as J};

use crate::client::{entries, failure, message, strings, Answer, Client, Settings};
use crate::urlencode;
use crate::webhook::{self, WebhookError};

/// The reference field that stands for a record's primary company (HubSpot's
/// own name for it on contacts).
pub const COMPANY_FIELD: &str = "associatedcompanyid";

/// Objects whose primary company is exposed as [`COMPANY_FIELD`], with the
/// association type ids (primary label) in each direction.
fn company_link(object: &str) -> Option<u32> {
    match object {
        "contacts" => Some(1),
        "deals" => Some(5),
        "tickets" => Some(26),
        _ => None,
    }
}

/// A HubSpot account (one app's credentials).
pub struct HubSpotConnector {
    client: Arc<Client>,
    /// Ids webhooks said changed, by object type, read on the next run.
    inbox: Arc<Mutex<HashMap<String, BTreeSet<String>>>>,
    /// Webhook event ids already taken (HubSpot retries deliveries).
    seen_events: Mutex<BTreeSet<u64>>,
}

impl HubSpotConnector {
    pub fn new(settings: Settings) -> HubSpotConnector {
        HubSpotConnector {
            client: Arc::new(Client::new(settings)),
            inbox: Arc::default(),
            seen_events: Mutex::default(),
        }
    }

    /// Requests sent, 429s met and retries made so far.
    pub fn stats(&self) -> puente_http::StatsSnapshot {
        self.client.stats()
    }
}

fn object_of_event(subscription_type: &str) -> Option<&'static str> {
    Some(match subscription_type.split('.').next()? {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        "ticket" => "tickets",
        "product" => "products",
        "line_item" => "line_items",
        _ => return None,
    })
}

#[async_trait]
impl Connector for HubSpotConnector {
    fn kind(&self) -> &'static str {
        "hubspot"
    }

    fn usage(&self) -> Option<puente_core::Usage> {
        Some(self.client.usage())
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        let a = self
            .client
            .call(
                Method::GET,
                "/crm/v3/objects/contacts?limit=1",
                "/crm/v3/objects/{type}",
                None,
                true,
            )
            .await?;
        if a.status >= 400 {
            return Err(ConnectorError::new(
                ErrorKind::External,
                format!("HubSpot answered {}: {}", a.status, message(&a.body)),
            ));
        }
        Ok(())
    }

    async fn open(&self, spec: &ObjectSpec) -> Result<Arc<dyn Object>, ConnectorError> {
        let object = spec.object.trim().to_string();
        if spec.query.is_some() {
            return Err(ConnectorError::config(format!(
                "{object}: a HubSpot object takes no query"
            ))
            .with_hint("remove query; use filter to narrow the records"));
        }
        let a = self
            .client
            .call(
                Method::GET,
                &format!("/crm/v3/properties/{object}"),
                "/crm/v3/properties/{type}",
                None,
                true,
            )
            .await?;
        if a.status == 400 || a.status == 404 {
            return Err(ConnectorError::config(format!("HubSpot has no object {object:?}: {}", message(&a.body)))
                .with_hint("use contacts, companies, deals, tickets, products, line_items, a custom object's name or its type id (2-…)"));
        }
        if a.status >= 300 {
            return Err(ConnectorError::new(
                ErrorKind::External,
                format!(
                    "reading the properties of {object}: HubSpot answered {}",
                    a.status
                ),
            ));
        }
        let schema = schema_of(&object, &a.body);
        let lastmod = if object == "contacts" || object == "0-1" {
            "lastmodifieddate"
        } else {
            "hs_lastmodifieddate"
        };
        let opt = |k: &str, d: u64| {
            spec.options
                .get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let props: Vec<String> = schema
            .fields
            .iter()
            .filter(|f| f.name != COMPANY_FIELD)
            .map(|f| f.name.clone())
            .collect();
        Ok(Arc::new(HubSpotObject {
            client: self.client.clone(),
            inbox: self.inbox.clone(),
            company_type: company_link(&object).filter(|_| schema.field(COMPANY_FIELD).is_some()),
            object,
            lastmod: lastmod.to_string(),
            properties: props,
            schema,
            overlap_ms: spec.overlap_secs as i64 * 1000,
            page_records: spec.page_size.clamp(100, 2000),
            reconcile_ms: opt("reconcile_secs", 3600) as i64 * 1000,
            search_cap: opt("search_cap", 10_000) as usize,
        }))
    }

    async fn accept_push(&self, push: &puente_core::Push) -> Result<usize, ConnectorError> {
        let secret = self.client.settings.webhook_secret.as_deref().ok_or_else(|| {
            ConnectorError::config("this HubSpot connection has no webhook_secret, so webhooks cannot be verified")
                .with_hint("set webhook_secret = { env = \"HUBSPOT_CLIENT_SECRET\" } (the app's client secret)")
        })?;
        let events = webhook::verify_and_parse(secret, push, Utc::now()).map_err(|e| match e {
            WebhookError::Rejected(m) => ConnectorError::new(ErrorKind::Auth, m),
            WebhookError::Malformed(m) => ConnectorError::new(ErrorKind::External, m),
        })?;
        let mut n = 0;
        let mut seen = self.seen_events.lock().expect("events");
        let mut inbox = self.inbox.lock().expect("inbox");
        for e in events {
            if !seen.insert(e.event_id) {
                continue;
            }
            if let Some(obj) = object_of_event(&e.subscription_type) {
                let ids = inbox.entry(obj.to_string()).or_default();
                ids.insert(e.object_id.to_string());
                if let Some(p) = e.primary_object_id {
                    ids.insert(p.to_string());
                }
                n += 1;
            }
        }
        if seen.len() > 100_000 {
            let keep: BTreeSet<u64> = seen.iter().rev().take(50_000).copied().collect();
            *seen = keep;
        }
        Ok(n)
    }
}

/// HubSpot's property list → our schema.
fn schema_of(object: &str, body: &J) -> ObjectSchema {
    let required: &[&str] = match object {
        "deals" => &["dealname", "pipeline", "dealstage"],
        "tickets" => &["subject", "hs_pipeline", "hs_pipeline_stage"],
        _ => &[],
    };
    let mut fields = Vec::new();
    for p in entries(body, "results") {
        let Some(name) = p.get("name").and_then(J::as_str) else {
            continue;
        };
        let ty = p.get("type").and_then(J::as_str).unwrap_or("string");
        let ft = p.get("fieldType").and_then(J::as_str).unwrap_or("text");
        let options: Vec<String> = p
            .get("options")
            .and_then(J::as_array)
            .map(|o| {
                o.iter()
                    .filter_map(|x| x.get("value").and_then(J::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let fty = match (ty, ft) {
            (_, "booleancheckbox") | ("bool", _) => FieldType::Boolean,
            ("number", _) => FieldType::Decimal { scale: None },
            ("date", _) => FieldType::Date,
            ("datetime", _) => FieldType::DateTime,
            ("enumeration", "checkbox") => FieldType::MultiEnum { options },
            ("enumeration", _) => FieldType::Enum { options },
            ("phone_number", _) | (_, "phonenumber") => FieldType::Phone,
            _ if name == "email" => FieldType::Email,
            _ => FieldType::Text {
                max_len: Some(65_536),
            },
        };
        let mut f = FieldSchema::new(name, fty);
        f.native_type = format!("{ty}/{ft}");
        f.unique = p
            .get("hasUniqueValue")
            .and_then(J::as_bool)
            .unwrap_or(false);
        f.read_only = p
            .pointer("/modificationMetadata/readOnlyValue")
            .and_then(J::as_bool)
            .unwrap_or(false)
            || p.get("calculated").and_then(J::as_bool).unwrap_or(false)
            || name == "hs_object_id";
        f.required = required.contains(&name);
        fields.push(f);
    }
    if company_link(object).is_some() && !fields.iter().any(|f| f.name == COMPANY_FIELD) {
        let mut f = FieldSchema::new(COMPANY_FIELD, FieldType::Reference);
        f.native_type = "association/primary company".into();
        fields.push(f);
    }
    ObjectSchema {
        absent: false,
        name: object.to_string(),
        id_field: "hs_object_id".into(),
        fields,
        open: false,
    }
}

pub struct HubSpotObject {
    client: Arc<Client>,
    inbox: Arc<Mutex<HashMap<String, BTreeSet<String>>>>,
    object: String,
    schema: ObjectSchema,
    lastmod: String,
    /// Properties asked for on every read.
    properties: Vec<String>,
    /// The primary-company association type id, when the field is mapped.
    company_type: Option<u32>,
    overlap_ms: i64,
    page_records: usize,
    reconcile_ms: i64,
    search_cap: usize,
}

/// Where a paged read stands (the page token).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Token {
    /// Listing everything: HubSpot's `after`.
    List {
        after: Option<String>,
        started: i64,
        max: i64,
    },
    /// Searching `lastmod >= lo`, at an offset.
    Search {
        lo: i64,
        after: usize,
        started: i64,
        max: i64,
        inbox_done: bool,
    },
    /// More than a window's worth share one timestamp: by id within it.
    Tie {
        at: i64,
        id: u64,
        started: i64,
        max: i64,
    },
}

/// The cursor: the newest modification seen, and when the last full
/// reconciliation started.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Mark {
    m: i64,
    full: i64,
}

fn ms_of(v: &J) -> Option<i64> {
    let s = v.as_str()?;
    s.parse::<i64>().ok().or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
    })
}

impl HubSpotObject {
    fn path(&self, rest: &str) -> String {
        format!("/crm/v3/objects/{}{rest}", self.object)
    }

    /// One record of an answer in canonical form.
    fn record(&self, o: &J) -> Option<Record> {
        let id = o.get("id").and_then(J::as_str)?.to_string();
        let mut r = Record::new(id);
        let props = o.get("properties").and_then(J::as_object);
        for f in &self.schema.fields {
            if f.name == COMPANY_FIELD {
                continue;
            }
            let raw = props
                .and_then(|p| p.get(&f.name))
                .and_then(J::as_str)
                .unwrap_or("");
            let v = if raw.is_empty() {
                Value::Null
            } else {
                match Value::text(raw).convert(&f.ty, &f.name) {
                    Ok(v) => v,
                    // A value HubSpot holds but the schema does not allow
                    // (an option removed since): keep it as text.
                    Err(_)
                        if matches!(f.ty, FieldType::Enum { .. } | FieldType::MultiEnum { .. }) =>
                    {
                        Value::text(raw)
                    }
                    Err(e) => {
                        r.unreadable.insert(f.name.clone(), e.to_string());
                        continue;
                    }
                }
            };
            r.fields.insert(f.name.clone(), v);
        }
        r.modified_at = o
            .get("updatedAt")
            .and_then(ms_of)
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        if let Some(assoc) = o
            .pointer("/associations/companies/results")
            .and_then(J::as_array)
        {
            let primary = assoc
                .iter()
                .find(|a| {
                    a.get("type")
                        .and_then(J::as_str)
                        .is_some_and(|t| !t.ends_with("_unlabeled"))
                })
                .and_then(|a| a.get("id").and_then(J::as_str));
            r.fields.insert(
                COMPANY_FIELD.into(),
                primary
                    .map(|p| Value::Ref(p.to_string()))
                    .unwrap_or(Value::Null),
            );
        } else if self.company_type.is_some() {
            r.fields.insert(COMPANY_FIELD.into(), Value::Null);
        }
        Some(r)
    }

    fn records(&self, body: &J) -> Vec<Record> {
        entries(body, "results")
            .filter_map(|o| self.record(o))
            .collect()
    }

    fn ok(&self, a: Answer, what: &str) -> Result<J, ConnectorError> {
        if a.status >= 400 {
            return Err(ConnectorError::new(
                ErrorKind::External,
                format!(
                    "{what} {}: HubSpot answered {} ({})",
                    self.object,
                    a.status,
                    message(&a.body)
                ),
            ));
        }
        Ok(a.body)
    }

    /// Fills the primary company of records read without associations
    /// (search, batch read): one call per 1,000 records.
    async fn fill_companies(&self, records: &mut [Record]) -> Result<(), ConnectorError> {
        let Some(primary) = self.company_type else {
            return Ok(());
        };
        for chunk in records.chunks_mut(1000) {
            let inputs: Vec<J> = chunk.iter().map(|r| json!({"id": r.id})).collect();
            let a = self
                .client
                .call(
                    Method::POST,
                    &format!("/crm/v4/associations/{}/companies/batch/read", self.object),
                    "/crm/v4/associations/{from}/{to}/batch/read",
                    Some(&json!({"inputs": inputs})),
                    true,
                )
                .await?;
            let body = self.ok(a, "reading the companies of")?;
            let mut by_id: HashMap<String, String> = HashMap::new();
            for res in entries(&body, "results") {
                let from = res
                    .pointer("/from/id")
                    .and_then(J::as_str)
                    .unwrap_or_default()
                    .to_string();
                for to in entries(res, "to") {
                    let is_primary = to
                        .get("associationTypes")
                        .and_then(J::as_array)
                        .is_some_and(|ts| {
                            ts.iter().any(|t| {
                                t.get("typeId").and_then(J::as_u64) == Some(primary as u64)
                            })
                        });
                    if is_primary {
                        let id = to
                            .get("toObjectId")
                            .map(|v| {
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            })
                            .unwrap_or_default();
                        by_id.insert(from.clone(), id);
                    }
                }
            }
            for r in chunk.iter_mut() {
                let v = by_id
                    .get(&r.id)
                    .map(|c| Value::Ref(c.clone()))
                    .unwrap_or(Value::Null);
                r.fields.insert(COMPANY_FIELD.into(), v);
            }
        }
        Ok(())
    }

    /// One page of the object's list: the answer and the next `after`.
    async fn list(
        &self,
        after: Option<&str>,
        properties: &str,
        associations: bool,
    ) -> Result<(J, Option<String>), ConnectorError> {
        let mut q = vec![("limit", "100"), ("properties", properties)];
        if associations {
            q.push(("associations", "companies"));
        }
        if let Some(a) = after {
            q.push(("after", a));
        }
        let qs = serde_urlencoded::to_string(&q).expect("query encodes");
        let a = self
            .client
            .call(
                Method::GET,
                &self.path(&format!("?{qs}")),
                "/crm/v3/objects/{type}",
                None,
                true,
            )
            .await?;
        let body = self.ok(a, "listing")?;
        let next = body
            .pointer("/paging/next/after")
            .and_then(J::as_str)
            .map(str::to_string);
        Ok((body, next))
    }

    /// Ids (and last-modified times) of a search page.
    async fn search_ids(
        &self,
        filters: Vec<J>,
        sort: &str,
        after: usize,
    ) -> Result<(Vec<(String, i64)>, Option<usize>), ConnectorError> {
        let body = json!({
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": ["hs_object_id", self.lastmod],
            "limit": 200,
            "after": after.to_string(),
        });
        let a = self
            .client
            .call(
                Method::POST,
                &self.path("/search"),
                "/crm/v3/objects/{type}/search",
                Some(&body),
                true,
            )
            .await?;
        let body = self.ok(a, "searching")?;
        let next = body
            .pointer("/paging/next/after")
            .and_then(J::as_str)
            .and_then(|s| s.parse().ok());
        let found = entries(&body, "results")
            .filter_map(|o| {
                let id = o.get("id")?.as_str()?.to_string();
                let m = o
                    .pointer(&format!("/properties/{}", self.lastmod))
                    .and_then(ms_of)
                    .unwrap_or(0);
                Some((id, m))
            })
            .collect();
        Ok((found, next))
    }

    /// The records a search found, read by id: search's index lags writes,
    /// so its copies may be stale, and a stale copy must never read as a
    /// change (it would undo the newer value).
    async fn fresh(&self, found: &[(String, i64)]) -> Result<Vec<Record>, ConnectorError> {
        let ids: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
        self.read_by_ids(&ids).await
    }

    fn lastmod_ms(&self, r: &Record) -> i64 {
        match r.get(&self.lastmod) {
            Value::DateTime(d) => d.timestamp_millis(),
            _ => r.modified_at.map(|d| d.timestamp_millis()).unwrap_or(0),
        }
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
                self.ok(a, "unlinking companies of")?;
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
                for r in self.read_by_ids(&only_links).await? {
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

/// One record per id (a webhook and a search may both name it).
fn dedupe(records: Vec<Record>) -> Vec<Record> {
    let mut seen = BTreeSet::new();
    records
        .into_iter()
        .filter(|r| seen.insert(r.id.clone()))
        .collect()
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

#[async_trait]
impl Object for HubSpotObject {
    fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: 100,
            change_detection: ChangeDetection::Push,
            delete_detection_by_key_diff: true,
            rate_limit_per_sec: Some(self.client.settings.rate_limit_per_10s as f64 / 10.0),
            writable: true,
        }
    }

    async fn read(
        &self,
        since: Option<&Cursor>,
        page: Option<String>,
    ) -> Result<Page, ConnectorError> {
        let now = Utc::now().timestamp_millis();
        let mark: Mark = since
            .and_then(|c| serde_json::from_value(c.0.clone()).ok())
            .unwrap_or_default();
        let token: Token = match page {
            Some(p) => serde_json::from_str(&p)
                .map_err(|_| ConnectorError::internal("unreadable HubSpot page token"))?,
            None if since.is_none() || now - mark.full >= self.reconcile_ms => Token::List {
                after: None,
                started: now,
                max: mark.m,
            },
            None => Token::Search {
                lo: mark.m - self.overlap_ms,
                after: 0,
                started: mark.full,
                max: mark.m,
                inbox_done: false,
            },
        };
        let mut records = Vec::new();
        let mut token = Some(token);
        // Fill a page of `page_records` from several API pages.
        while let Some(t) = token.take() {
            match t {
                Token::List {
                    after,
                    started,
                    mut max,
                } => {
                    let (body, next) = self
                        .list(
                            after.as_deref(),
                            &self.properties.join(","),
                            self.company_type.is_some(),
                        )
                        .await?;
                    let rs = self.records(&body);
                    for r in &rs {
                        max = max.max(self.lastmod_ms(r));
                    }
                    records.extend(rs);
                    match next {
                        Some(n) => {
                            token = Some(Token::List {
                                after: Some(n),
                                started,
                                max,
                            })
                        }
                        None => {
                            // A full read also clears the webhook inbox: it saw everything.
                            self.inbox.lock().expect("inbox").remove(&self.object);
                            return Ok(Page {
                                records,
                                next: None,
                                cursor: Some(Cursor(json!(Mark {
                                    m: max,
                                    full: started
                                }))),
                            });
                        }
                    }
                }
                Token::Search {
                    lo,
                    after,
                    started,
                    mut max,
                    inbox_done,
                } => {
                    if !inbox_done {
                        let ids: Vec<String> = self
                            .inbox
                            .lock()
                            .expect("inbox")
                            .remove(&self.object)
                            .unwrap_or_default()
                            .into_iter()
                            .collect();
                        if !ids.is_empty() {
                            records.extend(self.read_by_ids(&ids).await?);
                        }
                    }
                    let filters = vec![
                        json!({"propertyName": self.lastmod, "operator": "GTE", "value": lo.to_string()}),
                    ];
                    let (found, next) = self.search_ids(filters, &self.lastmod, after).await?;
                    let last = found.last().map(|(_, m)| *m);
                    let last_id = found
                        .last()
                        .and_then(|(id, _)| id.parse::<u64>().ok())
                        .unwrap_or(0);
                    for (_, m) in &found {
                        max = max.max(*m);
                    }
                    records.extend(self.fresh(&found).await?);
                    token = match next {
                        None => None,
                        // Past the cap: start a new window at the last timestamp read.
                        Some(n) if n + 200 > self.search_cap => match last {
                            Some(l) if l > lo => Some(Token::Search {
                                lo: l,
                                after: 0,
                                started,
                                max,
                                inbox_done: true,
                            }),
                            _ => Some(Token::Tie {
                                at: lo,
                                id: last_id,
                                started,
                                max,
                            }),
                        },
                        Some(n) => Some(Token::Search {
                            lo,
                            after: n,
                            started,
                            max,
                            inbox_done: true,
                        }),
                    };
                    if token.is_none() {
                        return Ok(Page {
                            records: dedupe(records),
                            next: None,
                            cursor: Some(Cursor(json!(Mark {
                                m: max,
                                full: started
                            }))),
                        });
                    }
                }
                Token::Tie {
                    at,
                    id,
                    started,
                    max,
                } => {
                    let filters = vec![
                        json!({"propertyName": self.lastmod, "operator": "EQ", "value": at.to_string()}),
                        json!({"propertyName": "hs_object_id", "operator": "GT", "value": id.to_string()}),
                    ];
                    let (found, next) = self.search_ids(filters, "hs_object_id", 0).await?;
                    let last_id = found.last().and_then(|(id, _)| id.parse::<u64>().ok());
                    records.extend(self.fresh(&found).await?);
                    token = match (next, last_id) {
                        (Some(_), Some(l)) => Some(Token::Tie {
                            at,
                            id: l,
                            started,
                            max,
                        }),
                        _ => Some(Token::Search {
                            lo: at + 1,
                            after: 0,
                            started,
                            max,
                            inbox_done: true,
                        }),
                    };
                }
            }
            if records.len() >= self.page_records {
                break;
            }
        }
        let next = token.map(|t| serde_json::to_string(&t).expect("token encodes"));
        Ok(Page {
            records: dedupe(records),
            next,
            cursor: None,
        })
    }

    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let inputs: Vec<J> = chunk.iter().map(|id| json!({"id": id})).collect();
            let body = json!({"properties": self.properties, "propertiesWithHistory": [], "inputs": inputs});
            let a = self
                .client
                .call(
                    Method::POST,
                    &self.path("/batch/read"),
                    "/crm/v3/objects/{type}/batch/read",
                    Some(&body),
                    true,
                )
                .await?;
            if a.status >= 400 && a.status != 207 && a.status != 404 {
                return Err(ConnectorError::new(
                    ErrorKind::External,
                    format!(
                        "reading {} by id: HubSpot answered {} ({})",
                        self.object,
                        a.status,
                        message(&a.body)
                    ),
                ));
            }
            out.extend(self.records(&a.body));
        }
        self.fill_companies(&mut out).await?;
        Ok(out)
    }

    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (body, next) = self.list(after.as_deref(), "hs_object_id", false).await?;
            ids.extend(
                entries(&body, "results")
                    .filter_map(|o| o.get("id").and_then(J::as_str).map(str::to_string)),
            );
            after = next;
            if after.is_none() {
                return Ok(ids);
            }
        }
    }

    fn merged_ids(&self, record: &Record) -> Vec<String> {
        match record.get("hs_merged_object_ids") {
            Value::MultiEnum(ids) => ids.iter().cloned().collect(),
            Value::Null => Vec::new(),
            other => other
                .to_text()
                .map(|t| {
                    t.split(';')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// HubSpot answers a read of a merged-away id with the survivor, whose
    /// id differs. Probes at most 500 ids a scan (the rest next scan).
    async fn resolve_merged(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        let mut out = Vec::new();
        for id in ids.iter().take(500) {
            let a = self
                .client
                .call(
                    Method::GET,
                    &self.path(&format!("/{}?properties=hs_object_id", urlencode(id))),
                    "/crm/v3/objects/{type}/{id}",
                    None,
                    true,
                )
                .await?;
            if a.status == 200 {
                if let Some(new) = a.body.get("id").and_then(J::as_str).filter(|n| *n != id) {
                    out.push((id.clone(), new.to_string()));
                }
            }
        }
        Ok(out)
    }

    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError> {
        if conditions.is_empty() {
            return Ok(vec![]);
        }
        let filters: Vec<J> = conditions
            .iter()
            .map(|(k, v)| match v.to_text().filter(|t| !t.is_empty()) {
                Some(t) => json!({"propertyName": k, "operator": "EQ", "value": t}),
                None => json!({"propertyName": k, "operator": "NOT_HAS_PROPERTY"}),
            })
            .collect();
        let (found, _) = self.search_ids(filters, "hs_object_id", 0).await?;
        let mut rs = self.fresh(&found).await?;
        // Search lags writes: an e-mail lookup also goes by the unique index.
        if rs.is_empty() && self.object == "contacts" {
            if let Some((_, v)) = conditions.iter().find(|(k, _)| k == "email") {
                if let Some(e) = v.to_text() {
                    let qs = serde_urlencoded::to_string([
                        ("idProperty", "email"),
                        ("properties", &self.properties.join(",")),
                    ])
                    .expect("encodes");
                    let a = self
                        .client
                        .call(
                            Method::GET,
                            &self.path(&format!("/{}?{qs}", urlencode(&e))),
                            "/crm/v3/objects/{type}/{id}",
                            None,
                            true,
                        )
                        .await?;
                    if a.status == 200 {
                        rs.extend(self.record(&a.body));
                        self.fill_companies(&mut rs).await?;
                    }
                }
            }
        }
        Ok(rs)
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError> {
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
}
