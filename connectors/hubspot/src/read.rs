//! Reading HubSpot records: full reads by list paging (also the periodic
//! reconciliation), increments by search on the last-modified property
//! (with overlap, re-windowed past the search cap) whose ids are read back
//! by id, ids webhooks named read first, reads by id with the primary
//! company, id listings, merges, and lookups by value.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use puente_core::{ConnectorError, Cursor, ErrorKind, FieldType, Page, Record, Value};
use reqwest::Method;
use serde_json::{json, Value as J};

use crate::client::{entries, message};
use crate::connector::HubSpotObject;
use crate::schema::COMPANY_FIELD;
use crate::urlencode;

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
    /// One record of an answer in canonical form.
    pub(crate) fn record(&self, o: &J) -> Option<Record> {
        let id = o.get("id").and_then(J::as_str)?.to_string();
        let mut r = Record::new(id);
        let props = o.get("properties").and_then(J::as_object);
        for f in &self.schema.fields {
            if f.name == COMPANY_FIELD || self.properties.binary_search(&f.name).is_err() {
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

    pub(crate) fn records(&self, body: &J) -> Vec<Record> {
        entries(body, "results")
            .filter_map(|o| self.record(o))
            .collect()
    }

    /// (search, batch read): one call per 1,000 records.
    pub(crate) async fn fill_companies(
        &self,
        records: &mut [Record],
    ) -> Result<(), ConnectorError> {
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
            let body = a.ok("reading the companies of", &self.object)?;
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
        let body = a.ok("listing", &self.object)?;
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
        let body = a.ok("searching", &self.object)?;
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
        self.read_ids(&ids).await
    }

    fn lastmod_ms(&self, r: &Record) -> i64 {
        match r.get(&self.lastmod) {
            Value::DateTime(d) => d.timestamp_millis(),
            _ => r.modified_at.map(|d| d.timestamp_millis()).unwrap_or(0),
        }
    }

    pub(crate) async fn read_page(
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
                            self.inbox.clear(&self.object);
                            // A record edited on a page already read carries a
                            // time after the read began, as does one a later
                            // page saw edited: the cursor goes no further than
                            // that start, so the next search finds the first.
                            return Ok(Page {
                                records,
                                next: None,
                                cursor: Some(Cursor(json!(Mark {
                                    m: max.min(started),
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
                        let ids = self.inbox.take(&self.object);
                        if !ids.is_empty() {
                            records.extend(self.read_ids(&ids).await?);
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

    pub(crate) async fn read_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        self.batch_read(ids, None).await
    }

    /// Reads records 100 at a time by id, or by a unique property
    /// (`id_property`), with their primary company; ones not found are left
    /// out.
    async fn batch_read(
        &self,
        keys: &[String],
        id_property: Option<&str>,
    ) -> Result<Vec<Record>, ConnectorError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let inputs: Vec<J> = chunk.iter().map(|id| json!({"id": id})).collect();
            let mut body = json!({"properties": self.properties, "propertiesWithHistory": [], "inputs": inputs});
            if let Some(p) = id_property {
                body["idProperty"] = json!(p);
            }
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
                        "reading {} by {}: HubSpot answered {} ({})",
                        self.object,
                        id_property.unwrap_or("id"),
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

    pub(crate) async fn list_all_ids(&self) -> Result<Vec<String>, ConnectorError> {
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

    pub(crate) fn merged_ids_of(&self, record: &Record) -> Vec<String> {
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
    pub(crate) async fn resolve_merged_ids(
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

    /// The records whose `field` holds one of `values`: one search per 100
    /// values (HubSpot's `IN` operator), each read back by id.
    pub(crate) async fn find_any_of(
        &self,
        field: &str,
        values: &[Value],
    ) -> Result<Vec<Record>, ConnectorError> {
        let texts: Vec<String> = values
            .iter()
            .filter_map(Value::to_text)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let mut out: Vec<Record> = Vec::new();
        for chunk in texts.chunks(100) {
            let filters = vec![json!({"propertyName": field, "operator": "IN", "values": chunk})];
            let mut after = 0;
            loop {
                let (found, next) = self
                    .search_ids(filters.clone(), "hs_object_id", after)
                    .await?;
                out.extend(self.fresh(&found).await?);
                match next {
                    Some(n) => after = n,
                    None => break,
                }
            }
        }
        // Search lags writes: a contact's e-mail is also looked up by the
        // unique index, a batch of 100 at a time, where search found none.
        if self.object == "contacts" && field == "email" {
            let have: HashSet<String> = out
                .iter()
                .filter_map(|r| r.get("email").to_text())
                .map(|e| e.to_lowercase())
                .collect();
            let missing: Vec<String> = texts
                .iter()
                .filter(|t| !have.contains(&t.to_lowercase()))
                .cloned()
                .collect();
            out.extend(self.batch_read(&missing, Some("email")).await?);
        }
        Ok(out)
    }

    pub(crate) async fn find_matching(
        &self,
        conditions: &[(String, Value)],
    ) -> Result<Vec<Record>, ConnectorError> {
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
}

/// One record per id (a webhook and a search may both name it).
fn dedupe(records: Vec<Record>) -> Vec<Record> {
    let mut seen = BTreeSet::new();
    records
        .into_iter()
        .filter(|r| seen.insert(r.id.clone()))
        .collect()
}
