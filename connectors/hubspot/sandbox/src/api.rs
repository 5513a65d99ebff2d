//! The CRM endpoints: objects v3 (and the date-versioned family), batch,
//! search, merge, properties, associations v4 and custom object schemas.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value as J};

use super::store::{assoc_types, iso, now_ms, ApiErr, PropDef, Store, Wanted};
use super::{empty, error_reply, reply, Sandbox};

type S = State<Arc<Sandbox>>;

/// Query parameters, repeated keys kept (`properties=a&properties=b`).
struct Q(Vec<(String, String)>);

impl Q {
    fn new(raw: Option<String>) -> Q {
        Q(serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default())
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    /// Every value of a list parameter, repeated or comma-separated.
    fn list(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
    fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
    fn wanted(&self) -> Wanted {
        let l = self.list("properties");
        if l.is_empty() {
            Wanted::Defaults
        } else {
            Wanted::These(l)
        }
    }
}

pub(super) fn parse_body(body: &str) -> Result<J, ApiErr> {
    serde_json::from_str(body).map_err(|e| {
        ApiErr::new(
            400,
            "VALIDATION_ERROR",
            format!(
                "Invalid input JSON on line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

pub(super) fn result(r: Result<Response, ApiErr>) -> Response {
    r.unwrap_or_else(|e| error_reply(&e))
}

pub fn router(_sb: Arc<Sandbox>) -> Router<Arc<Sandbox>> {
    let objects = Router::new()
        .route("/{ty}", get(list).post(create))
        .route("/{ty}/search", post(search))
        .route("/{ty}/merge", post(merge))
        .route("/{ty}/gdpr-delete", post(gdpr_delete))
        .route("/{ty}/batch/{op}", post(batch))
        .route("/{ty}/{id}", get(read).patch(update).delete(archive));
    let props = Router::new()
        .route("/{ty}", get(list_props).post(create_prop))
        .route(
            "/{ty}/{name}",
            get(get_prop).patch(update_prop).delete(delete_prop),
        );
    let assoc = Router::new()
        .route("/objects/{from}/{id}/associations/{to}", get(list_assoc))
        .route(
            "/objects/{from}/{id}/associations/{to}/{to_id}",
            put(put_assoc).delete(delete_assoc),
        )
        .route(
            "/objects/{from}/{id}/associations/default/{to}/{to_id}",
            put(put_default_assoc),
        )
        .route("/associations/{from}/{to}/batch/{op}", post(batch_assoc))
        .route(
            "/associations/{from}/{to}/batch/associate/default",
            post(batch_assoc_default),
        );
    let schemas = Router::new()
        .route("/", get(list_schemas).post(create_schema))
        .route("/{ty}", get(get_schema));
    Router::new()
        .nest("/crm/v3/objects", objects.clone())
        .nest("/crm/objects/2026-03", objects.clone())
        .nest("/crm/objects/2025-09", objects)
        .nest("/crm/v3/properties", props.clone())
        .nest("/crm/properties/2026-03", props)
        .nest("/crm/v4", assoc.clone())
        .nest("/crm/associations/2026-03", assoc)
        .nest("/crm-object-schemas/v3/schemas", schemas.clone())
        .nest("/crm/v3/schemas", schemas)
        .route("/_sandbox/stats", get(stats))
}

async fn stats(State(sb): S) -> Response {
    reply(200, json!(sb.stats()))
}

/// `associations` of a record as list/read answers carry them.
fn with_assoc(
    store: &Store,
    ty: &str,
    id: u64,
    to_types: &[String],
    out: &mut J,
) -> Result<(), ApiErr> {
    let mut map = Map::new();
    for to in to_types {
        let to_ty = store.type_name(to)?;
        let from_s = &store.ty(ty).singular;
        let to_s = &store.ty(&to_ty).singular;
        let (_, primary) = assoc_types(ty, &to_ty);
        let mut results = Vec::new();
        for (to_id, types) in store.edges(ty, id, &to_ty) {
            for (_, tid) in types {
                let name = if Some(tid) == primary || primary.is_none() {
                    format!("{from_s}_to_{to_s}")
                } else {
                    format!("{from_s}_to_{to_s}_unlabeled")
                };
                results.push(json!({"id": to_id.to_string(), "type": name}));
            }
        }
        if !results.is_empty() {
            map.insert(to_ty.clone(), json!({"results": results}));
        }
    }
    if !map.is_empty() {
        out["associations"] = J::Object(map);
    }
    Ok(())
}

async fn list(State(sb): S, Path(ty): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 100);
        let after: u64 = match q.get("after") {
            Some(a) => a.parse().map_err(|_| {
                ApiErr::new(
                    400,
                    "VALIDATION_ERROR",
                    format!("after {a:?} is not a valid paging cursor"),
                )
            })?,
            None => 0,
        };
        let archived = q.flag("archived");
        let wanted = q.wanted();
        let assoc = q.list("associations");
        let t = s.ty(&ty);
        let mut page = Vec::new();
        let mut next = None;
        for r in t.records.range(after..).map(|(_, r)| r) {
            if r.archived_at.is_some() != archived {
                continue;
            }
            if page.len() == limit {
                next = Some(r.id);
                break;
            }
            let mut o = s.render(&ty, r, &wanted);
            with_assoc(s, &ty, r.id, &assoc, &mut o)?;
            page.push(o);
        }
        let mut out = json!({"results": page});
        if let Some(n) = next {
            out["paging"] =
                json!({"next": {"after": n.to_string(), "link": format!("?after={n}")}});
        }
        Ok(reply(200, out))
    }))
}

async fn read(
    State(sb): S,
    Path((ty, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let rec = match q.get("idProperty") {
            Some(p) => s.by_unique(&ty, p, &id)?.and_then(|i| s.live(&ty, i)),
            None if q.flag("archived") => Store::parse_id(&id)
                .ok()
                .and_then(|i| s.ty(&ty).records.get(&i))
                .filter(|r| r.archived_at.is_some()),
            None => s.live(&ty, Store::parse_id(&id)?),
        }
        .ok_or_else(|| ApiErr::not_found(&id))?;
        let mut o = s.render(&ty, rec, &q.wanted());
        with_assoc(s, &ty, rec.id, &q.list("associations"), &mut o)?;
        Ok(reply(200, o))
    }))
}

fn props_of(input: &J) -> Result<Map<String, J>, ApiErr> {
    match input.get("properties") {
        Some(J::Object(m)) => Ok(m.clone()),
        None | Some(J::Null) => Ok(Map::new()),
        Some(_) => Err(ApiErr::new(
            400,
            "VALIDATION_ERROR",
            "properties must be an object of property name → value",
        )),
    }
}

/// Associations given at create: `[{to:{id}, types:[{associationCategory, associationTypeId}]}]`.
fn create_assoc(s: &mut Store, ty: &str, id: u64, input: &J) -> Result<(), ApiErr> {
    let Some(list) = input.get("associations").and_then(J::as_array) else {
        return Ok(());
    };
    for a in list {
        let to_id = a
            .pointer("/to/id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", "each association needs to.id"))?;
        let to_id = Store::parse_id(&to_id)?;
        for t in a.get("types").and_then(J::as_array).into_iter().flatten() {
            let tid = t.get("associationTypeId").and_then(J::as_u64).unwrap_or(0) as u32;
            let cat = t
                .get("associationCategory")
                .and_then(J::as_str)
                .unwrap_or("HUBSPOT_DEFINED");
            let to_ty = s
                .types
                .keys()
                .find(|name| {
                    let (fwd, p) = assoc_types(ty, name);
                    (fwd == tid || p == Some(tid)) && tid != 0
                })
                .cloned()
                .ok_or_else(|| {
                    ApiErr::new(
                        400,
                        "VALIDATION_ERROR",
                        format!("association type {tid} is not defined from {ty}"),
                    )
                })?;
            if s.live(&to_ty, to_id).is_none() {
                return Err(ApiErr::new(
                    400,
                    "VALIDATION_ERROR",
                    format!(
                        "{} {to_id} does not exist, so it cannot be associated",
                        s.ty(&to_ty).singular
                    ),
                ));
            }
            s.link(ty, id, &to_ty, to_id, cat, tid);
        }
    }
    Ok(())
}

async fn create(State(sb): S, Path(ty): Path<String>, body: String) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let input = parse_body(&body)?;
        let props = props_of(&input)?;
        let id = s.create(&ty, &props, now_ms())?;
        create_assoc(s, &ty, id, &input)?;
        let rec = s.live(&ty, id).expect("just created");
        Ok(reply(201, s.render(&ty, rec, &Wanted::Set)))
    }))
}

async fn update(
    State(sb): S,
    Path((ty, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: String,
) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let input = parse_body(&body)?;
        let target = match q.get("idProperty") {
            Some(p) => s
                .by_unique(&ty, p, &id)?
                .ok_or_else(|| ApiErr::not_found(&id))?,
            None => Store::parse_id(&id)?,
        };
        let id = s.update(&ty, target, &props_of(&input)?, now_ms())?;
        let rec = s.live(&ty, id).expect("just updated");
        Ok(reply(200, s.render(&ty, rec, &Wanted::Set)))
    }))
}

async fn archive(State(sb): S, Path((ty, id)): Path<(String, String)>) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        if let Ok(id) = Store::parse_id(&id) {
            s.archive(&ty, id, now_ms());
        }
        Ok(empty(204))
    }))
}

async fn merge(State(sb): S, Path(ty): Path<String>, body: String) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let input = parse_body(&body)?;
        let id_of = |k: &str| -> Result<u64, ApiErr> {
            let v = input
                .get(k)
                .ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", format!("{k} is required")))?;
            let s = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            Store::parse_id(&s)
        };
        let (p, l) = (id_of("primaryObjectId")?, id_of("objectIdToMerge")?);
        let id = s.merge(&ty, p, l, now_ms())?;
        let rec = s.live(&ty, id).expect("merged");
        Ok(reply(200, s.render(&ty, rec, &Wanted::Defaults)))
    }))
}

async fn gdpr_delete(State(sb): S, Path(ty): Path<String>, body: String) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        if ty != "contacts" {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                "GDPR delete applies to contacts",
            ));
        }
        let input = parse_body(&body)?;
        let key = input
            .get("objectId")
            .and_then(J::as_str)
            .unwrap_or_default()
            .to_string();
        let id = match input.get("idProperty").and_then(J::as_str) {
            Some(p) => s.by_unique(&ty, p, &key)?,
            None => Store::parse_id(&key)
                .ok()
                .filter(|i| s.live(&ty, *i).is_some()),
        };
        if let Some(id) = id {
            s.archive(&ty, id, now_ms());
            s.types.get_mut(&ty).expect("contacts").records.remove(&id);
        }
        Ok(empty(204))
    }))
}

fn inputs(v: &J, max: usize) -> Result<Vec<J>, ApiErr> {
    let list = v
        .get("inputs")
        .and_then(J::as_array)
        .ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", "inputs is required"))?;
    if list.len() > max {
        return Err(ApiErr::new(
            400,
            "VALIDATION_ERROR",
            format!("Batch input size {} exceeds the limit of {max}", list.len()),
        ));
    }
    Ok(list.clone())
}

fn id_str(v: Option<&J>) -> String {
    match v {
        Some(J::String(s)) => s.clone(),
        Some(J::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn batch_reply(results: Vec<J>, errors: Vec<J>, ok_status: u16) -> Response {
    let now = iso(now_ms());
    let mut out = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": now,
        "startedAt": now,
        "completedAt": now,
    });
    if errors.is_empty() {
        reply(ok_status, out)
    } else {
        out["numErrors"] = json!(errors.len());
        out["errors"] = J::Array(errors);
        reply(207, out)
    }
}

async fn batch(
    State(sb): S,
    Path((ty, op)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: String,
) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let input = parse_body(&body)?;
        let now = now_ms();
        match op.as_str() {
            "read" => {
                let history = input.get("propertiesWithHistory").and_then(J::as_array).is_some_and(|a| !a.is_empty());
                let list = inputs(&input, if history { 50 } else { 100 })?;
                let wanted = Wanted::from_json(input.get("properties")).unwrap_or(Wanted::Defaults);
                let id_prop = input.get("idProperty").and_then(J::as_str);
                let archived = q.flag("archived");
                let mut results = Vec::new();
                let mut missing = Vec::new();
                for i in &list {
                    let key = id_str(i.get("id"));
                    let found = match id_prop {
                        Some(p) => s.by_unique(&ty, p, &key)?.and_then(|id| s.live(&ty, id)),
                        None if archived => Store::parse_id(&key).ok().and_then(|id| s.ty(&ty).records.get(&id)).filter(|r| r.archived_at.is_some()),
                        None => Store::parse_id(&key).ok().and_then(|id| s.live(&ty, id)),
                    };
                    match found {
                        Some(r) => results.push(s.render(&ty, r, &wanted)),
                        None => missing.push(key),
                    }
                }
                let errors = if missing.is_empty() {
                    vec![]
                } else {
                    let mut e = ApiErr::new(404, "OBJECT_NOT_FOUND", format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", s.ty(&ty).singular.to_uppercase()));
                    e.context.insert("ids".into(), missing);
                    vec![e.batch_entry()]
                };
                Ok(batch_reply(results, errors, 200))
            }
            "create" => {
                let list = inputs(&input, 100)?;
                let traced = !list.is_empty() && list.iter().all(|i| i.get("objectWriteTraceId").and_then(J::as_str).is_some());
                if !traced {
                    // All or nothing: check every input first.
                    let mut seen = std::collections::HashSet::new();
                    for i in &list {
                        let p = props_of(i)?;
                        let checked = s.check_props(&ty, &p, None)?;
                        if let Some(e) = checked.get("email").filter(|e| !e.is_empty()) {
                            if ty == "contacts" && !seen.insert(e.clone()) {
                                return Err(ApiErr::new(409, "CONFLICT", format!("Duplicate email {e} within the batch")));
                            }
                        }
                    }
                }
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for i in &list {
                    let attempt = props_of(i).and_then(|p| s.create(&ty, &p, now)).and_then(|id| {
                        create_assoc(s, &ty, id, i)?;
                        Ok(id)
                    });
                    match attempt {
                        Ok(id) => {
                            let r = s.live(&ty, id).expect("created");
                            let mut o = s.render(&ty, r, &Wanted::Set);
                            if let Some(t) = i.get("objectWriteTraceId") {
                                o["objectWriteTraceId"] = t.clone();
                            }
                            results.push(o);
                        }
                        Err(e) if traced => {
                            let mut e = e;
                            e.context.insert("objectWriteTraceId".into(), vec![id_str(i.get("objectWriteTraceId"))]);
                            errors.push(e.batch_entry());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(batch_reply(results, errors, 201))
            }
            "update" => {
                let list = inputs(&input, 100)?;
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for i in &list {
                    let key = id_str(i.get("id"));
                    let attempt = (|| {
                        let id = match i.get("idProperty").and_then(J::as_str) {
                            Some(p) => s.by_unique(&ty, p, &key)?.ok_or_else(|| ApiErr::not_found(&key))?,
                            None => {
                                let id = Store::parse_id(&key)?;
                                // A batch update does not follow merges.
                                s.ty(&ty).records.get(&id).filter(|r| r.archived_at.is_none()).ok_or_else(|| ApiErr::not_found(&key))?;
                                id
                            }
                        };
                        s.update(&ty, id, &props_of(i)?, now)
                    })();
                    match attempt {
                        Ok(id) => results.push(s.render(&ty, s.live(&ty, id).expect("updated"), &Wanted::Set)),
                        Err(mut e) => {
                            e.context.insert("ids".into(), vec![key]);
                            errors.push(e.batch_entry());
                        }
                    }
                }
                Ok(batch_reply(results, errors, 200))
            }
            "upsert" => {
                let list = inputs(&input, 100)?;
                let by_email = list.iter().any(|i| i.get("idProperty").and_then(J::as_str) == Some("email"));
                if by_email {
                    // Partial upserts are not supported on email: check all first.
                    for i in &list {
                        let key = id_str(i.get("id"));
                        let existing = s.by_unique(&ty, "email", &key)?;
                        let mut p = props_of(i)?;
                        p.insert("email".into(), J::String(key.clone()));
                        s.check_props(&ty, &p, existing)?;
                    }
                }
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for i in &list {
                    let key = id_str(i.get("id"));
                    let prop = i.get("idProperty").and_then(J::as_str).unwrap_or("hs_object_id").to_string();
                    let attempt = (|| -> Result<(u64, bool), ApiErr> {
                        let mut p = props_of(i)?;
                        match s.by_unique(&ty, &prop, &key)? {
                            Some(id) => Ok((s.update(&ty, id, &p, now)?, false)),
                            None => {
                                if prop != "hs_object_id" {
                                    p.insert(prop.clone(), J::String(key.clone()));
                                }
                                Ok((s.create(&ty, &p, now)?, true))
                            }
                        }
                    })();
                    match attempt {
                        Ok((id, new)) => {
                            let mut o = s.render(&ty, s.live(&ty, id).expect("upserted"), &Wanted::Set);
                            o["new"] = J::Bool(new);
                            results.push(o);
                        }
                        Err(mut e) => {
                            e.context.insert("ids".into(), vec![key]);
                            errors.push(e.batch_entry());
                        }
                    }
                }
                Ok(batch_reply(results, errors, 200))
            }
            "archive" => {
                for i in inputs(&input, 100)? {
                    if let Ok(id) = Store::parse_id(&id_str(i.get("id"))) {
                        s.archive(&ty, id, now);
                    }
                }
                Ok(empty(204))
            }
            other => Err(ApiErr::new(404, "OBJECT_NOT_FOUND", format!("Unknown batch operation {other}"))),
        }
    }))
}

async fn search(State(sb): S, Path(ty): Path<String>, body: String) -> Response {
    let ty = match sb.with_store(|s| s.type_name(&ty)) {
        Ok(t) => t,
        Err(e) => return error_reply(&e),
    };
    result(
        parse_body(&body)
            .and_then(|v| sb.search(&ty, &v, body.len()))
            .map(|v| reply(200, v)),
    )
}

// ---- properties ----

async fn list_props(State(sb): S, Path(ty): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let t = s.ty(&ty);
        let results: Vec<J> = if q.flag("archived") {
            vec![]
        } else {
            t.props.iter().map(|p| p.to_json(&t.singular)).collect()
        };
        Ok(reply(200, json!({"results": results})))
    }))
}

async fn get_prop(State(sb): S, Path((ty, name)): Path<(String, String)>) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let t = s.ty(&ty);
        let p = t.prop(&name).ok_or_else(|| {
            ApiErr::new(
                404,
                "OBJECT_NOT_FOUND",
                format!("Unable to find property {name} on {ty}"),
            )
        })?;
        Ok(reply(200, p.to_json(&t.singular)))
    }))
}

/// A property definition from a create request.
fn prop_from(v: &J) -> Result<PropDef, ApiErr> {
    let need = |k: &str| -> Result<String, ApiErr> {
        v.get(k)
            .and_then(J::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ApiErr::new(
                    400,
                    "VALIDATION_ERROR",
                    format!("{k} is required to create a property"),
                )
            })
    };
    let (name, label, ty, field_type, group) = (
        need("name")?,
        need("label")?,
        need("type")?,
        need("fieldType")?,
        need("groupName")?,
    );
    const TYPES: &[(&str, &[&str])] = &[
        (
            "string",
            &["text", "textarea", "html", "file", "phonenumber"],
        ),
        ("number", &["number"]),
        ("date", &["date"]),
        ("datetime", &["date"]),
        (
            "enumeration",
            &["select", "radio", "checkbox", "booleancheckbox"],
        ),
        ("bool", &["booleancheckbox"]),
        ("phone_number", &["phonenumber", "text"]),
    ];
    match TYPES.iter().find(|(t, _)| *t == ty) {
        None => return Err(ApiErr::new(400, "VALIDATION_ERROR", format!("{ty} is not a property type; use string, number, date, datetime, enumeration, bool or phone_number"))),
        Some((_, fields)) if !fields.contains(&field_type.as_str()) => {
            return Err(ApiErr::new(400, "VALIDATION_ERROR", format!("fieldType {field_type} does not go with type {ty}; use one of {}", fields.join(", "))))
        }
        _ => {}
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.is_empty()
    {
        return Err(ApiErr::new(
            400,
            "VALIDATION_ERROR",
            format!("property name {name:?} must be lower-case letters, digits and underscores"),
        ));
    }
    let options = v
        .get("options")
        .and_then(J::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    Some((
                        o.get("label")?.as_str()?.to_string(),
                        o.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(PropDef {
        name,
        label,
        ty,
        field_type,
        group,
        options,
        unique: v
            .get("hasUniqueValue")
            .and_then(J::as_bool)
            .unwrap_or(false),
        read_only: false,
        calculated: false,
        hubspot_defined: false,
        hidden: v.get("hidden").and_then(J::as_bool).unwrap_or(false),
        description: v
            .get("description")
            .and_then(J::as_str)
            .unwrap_or("")
            .to_string(),
        created: now_ms(),
    })
}

async fn create_prop(State(sb): S, Path(ty): Path<String>, body: String) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let p = prop_from(&parse_body(&body)?)?;
        let t = s.types.get_mut(&ty).expect("type");
        if t.prop(&p.name).is_some() {
            return Err(ApiErr::new(
                409,
                "OBJECT_ALREADY_EXISTS",
                format!(
                    "Object already exists: a property named {} already exists on {ty}",
                    p.name
                ),
            ));
        }
        if p.unique
            && t.props
                .iter()
                .filter(|x| x.unique && !x.hubspot_defined)
                .count()
                >= 10
        {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                "An object can have at most 10 unique-value properties",
            ));
        }
        let out = p.to_json(&t.singular);
        let unique = p.unique;
        t.props.push(p);
        if unique {
            s.reindex();
        }
        Ok(reply(201, out))
    }))
}

async fn update_prop(
    State(sb): S,
    Path((ty, name)): Path<(String, String)>,
    body: String,
) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let v = parse_body(&body)?;
        let t = s.types.get_mut(&ty).expect("type");
        let singular = t.singular.clone();
        let p = t.props.iter_mut().find(|p| p.name == name).ok_or_else(|| {
            ApiErr::new(
                404,
                "OBJECT_NOT_FOUND",
                format!("Unable to find property {name}"),
            )
        })?;
        if p.hubspot_defined && v.get("options").is_none() && v.get("label").is_some() {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                "HubSpot-defined properties cannot be relabelled",
            ));
        }
        if let Some(l) = v.get("label").and_then(J::as_str) {
            p.label = l.to_string();
        }
        if let Some(o) = v.get("options").and_then(J::as_array) {
            p.options = o
                .iter()
                .filter_map(|o| {
                    Some((
                        o.get("label")?.as_str()?.to_string(),
                        o.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect();
        }
        Ok(reply(200, p.to_json(&singular)))
    }))
}

async fn delete_prop(State(sb): S, Path((ty, name)): Path<(String, String)>) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        let t = s.types.get_mut(&ty).expect("type");
        match t.props.iter().position(|p| p.name == name) {
            Some(i) if t.props[i].hubspot_defined => Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                "HubSpot-defined properties cannot be archived",
            )),
            Some(i) => {
                t.props.remove(i);
                Ok(empty(204))
            }
            None => Err(ApiErr::new(
                404,
                "OBJECT_NOT_FOUND",
                format!("Unable to find property {name}"),
            )),
        }
    }))
}

// ---- associations v4 ----

fn types_json(types: &[(String, u32)], primary: Option<u32>) -> Vec<J> {
    types
        .iter()
        .map(|(cat, tid)| json!({"category": cat, "typeId": tid, "label": if Some(*tid) == primary { J::String("Primary".into()) } else { J::Null }}))
        .collect()
}

async fn list_assoc(
    State(sb): S,
    Path((from, id, to)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Q::new(q);
    result(sb.with_store(|s| {
        let from = s.type_name(&from)?;
        let to = s.type_name(&to)?;
        let id = s.resolve(&from, Store::parse_id(&id)?);
        s.live(&from, id).ok_or_else(|| ApiErr::not_found(&id.to_string()))?;
        let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(500).clamp(1, 500);
        let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
        let (_, primary) = assoc_types(&from, &to);
        let edges: Vec<_> = s.edges(&from, id, &to).into_iter().filter(|(t, _)| *t >= after).collect();
        let page: Vec<J> = edges.iter().take(limit).map(|(tid, types)| json!({"toObjectId": tid, "associationTypes": types_json(types, primary)})).collect();
        let mut out = json!({"results": page});
        if let Some((next, _)) = edges.get(limit) {
            out["paging"] = json!({"next": {"after": next.to_string()}});
        }
        Ok(reply(200, out))
    }))
}

fn live_pair(
    s: &Store,
    from: &str,
    id: &str,
    to: &str,
    to_id: &str,
) -> Result<(String, u64, String, u64), ApiErr> {
    let from = s.type_name(from)?;
    let to = s.type_name(to)?;
    let id = s.resolve(&from, Store::parse_id(id)?);
    let to_id = s.resolve(&to, Store::parse_id(to_id)?);
    s.live(&from, id)
        .ok_or_else(|| ApiErr::not_found(&id.to_string()))?;
    s.live(&to, to_id)
        .ok_or_else(|| ApiErr::not_found(&to_id.to_string()))?;
    Ok((from, id, to, to_id))
}

async fn put_assoc(
    State(sb): S,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
    body: String,
) -> Response {
    result(sb.with_store(|s| {
        let (from, id, to, to_id) = live_pair(s, &from, &id, &to, &to_id)?;
        let v = parse_body(&body)?;
        let specs = v.as_array().cloned().ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", "the body must be a list of {associationCategory, associationTypeId}"))?;
        for sp in &specs {
            let cat = sp.get("associationCategory").and_then(J::as_str).unwrap_or("HUBSPOT_DEFINED");
            let tid = sp.get("associationTypeId").and_then(J::as_u64).ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", "associationTypeId is required"))? as u32;
            s.link(&from, id, &to, to_id, cat, tid);
        }
        let (_, primary) = assoc_types(&from, &to);
        let labels: Vec<J> = s.edges(&from, id, &to).into_iter().filter(|(t, _)| *t == to_id).flat_map(|(_, ts)| ts).filter(|(_, t)| Some(*t) == primary).map(|_| J::String("Primary".into())).collect();
        Ok(reply(201, json!({"fromObjectTypeId": s.ty(&from).type_id, "fromObjectId": id, "toObjectTypeId": s.ty(&to).type_id, "toObjectId": to_id, "labels": labels})))
    }))
}

async fn put_default_assoc(
    State(sb): S,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    result(sb.with_store(|s| {
        let (from, id, to, to_id) = live_pair(s, &from, &id, &to, &to_id)?;
        let (unlabeled, _) = assoc_types(&from, &to);
        s.link(&from, id, &to, to_id, "HUBSPOT_DEFINED", unlabeled);
        Ok(batch_reply(vec![json!({"from": {"id": id.to_string()}, "to": {"id": to_id.to_string()}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": unlabeled}})], vec![], 200))
    }))
}

async fn delete_assoc(
    State(sb): S,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    result(sb.with_store(|s| {
        let from = s.type_name(&from)?;
        let to = s.type_name(&to)?;
        s.unlink(&from, Store::parse_id(&id)?, &to, Store::parse_id(&to_id)?);
        Ok(empty(204))
    }))
}

async fn batch_assoc(
    State(sb): S,
    Path((from, to, op)): Path<(String, String, String)>,
    body: String,
) -> Response {
    result(sb.with_store(|s| {
        let from = s.type_name(&from)?;
        let to = s.type_name(&to)?;
        let v = parse_body(&body)?;
        let (_, primary) = assoc_types(&from, &to);
        match op.as_str() {
            "read" => {
                let list = inputs(&v, 1000)?;
                let mut results = Vec::new();
                let mut missing = Vec::new();
                for i in list {
                    let key = id_str(i.get("id"));
                    match Store::parse_id(&key).ok().map(|id| s.resolve(&from, id)).filter(|id| s.live(&from, *id).is_some()) {
                        Some(id) => {
                            let edges = s.edges(&from, id, &to);
                            if edges.is_empty() {
                                missing.push(key);
                                continue;
                            }
                            let tos: Vec<J> = edges.iter().map(|(tid, types)| json!({"toObjectId": tid, "associationTypes": types_json(types, primary)})).collect();
                            results.push(json!({"from": {"id": key}, "to": tos}));
                        }
                        None => missing.push(key),
                    }
                }
                let errors = if missing.is_empty() {
                    vec![]
                } else {
                    let mut e = ApiErr::new(404, "OBJECT_NOT_FOUND", format!("No {} is associated with {} {}.", s.ty(&to).singular, s.ty(&from).singular, missing.join(", ")));
                    e.context.insert("fromObjectId".into(), missing);
                    vec![e.batch_entry()]
                };
                Ok(batch_reply(results, errors, 200))
            }
            "create" => {
                let list = inputs(&v, 2000)?;
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for i in list {
                    let a = id_str(i.pointer("/from/id"));
                    let b = id_str(i.pointer("/to/id"));
                    match live_pair(s, &from, &a, &to, &b) {
                        Ok((f, id, t, to_id)) => {
                            for sp in i.get("types").and_then(J::as_array).into_iter().flatten() {
                                let cat = sp.get("associationCategory").and_then(J::as_str).unwrap_or("HUBSPOT_DEFINED");
                                let tid = sp.get("associationTypeId").and_then(J::as_u64).unwrap_or(0) as u32;
                                s.link(&f, id, &t, to_id, cat, tid);
                            }
                            let labels: Vec<J> = i.get("types").and_then(J::as_array).into_iter().flatten().filter(|sp| sp.get("associationTypeId").and_then(J::as_u64).map(|x| x as u32) == primary).map(|_| J::String("Primary".into())).collect();
                            results.push(json!({"fromObjectTypeId": s.ty(&f).type_id, "fromObjectId": id, "toObjectTypeId": s.ty(&t).type_id, "toObjectId": to_id, "labels": labels}));
                        }
                        Err(mut e) => {
                            e.context.insert("fromObjectId".into(), vec![a]);
                            e.context.insert("toObjectId".into(), vec![b]);
                            errors.push(e.batch_entry());
                        }
                    }
                }
                Ok(batch_reply(results, errors, 201))
            }
            "archive" => {
                for i in inputs(&v, 2000)? {
                    let Ok(a) = Store::parse_id(&id_str(i.pointer("/from/id"))) else { continue };
                    for t in i.get("to").and_then(J::as_array).into_iter().flatten() {
                        if let Ok(b) = Store::parse_id(&id_str(t.get("id"))) {
                            s.unlink(&from, a, &to, b);
                        }
                    }
                }
                Ok(empty(204))
            }
            other => Err(ApiErr::new(404, "OBJECT_NOT_FOUND", format!("Unknown batch operation {other}"))),
        }
    }))
}

async fn batch_assoc_default(
    State(sb): S,
    Path((from, to)): Path<(String, String)>,
    body: String,
) -> Response {
    result(sb.with_store(|s| {
        let v = parse_body(&body)?;
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for i in inputs(&v, 2000)? {
            let a = id_str(i.pointer("/from/id"));
            let b = id_str(i.pointer("/to/id"));
            match live_pair(s, &from, &a, &to, &b) {
                Ok((f, id, t, to_id)) => {
                    let (unlabeled, _) = assoc_types(&f, &t);
                    s.link(&f, id, &t, to_id, "HUBSPOT_DEFINED", unlabeled);
                    results.push(json!({"from": {"id": id.to_string()}, "to": {"id": to_id.to_string()}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": unlabeled}}));
                }
                Err(e) => errors.push(e.batch_entry()),
            }
        }
        Ok(batch_reply(results, errors, 200))
    }))
}

// ---- custom object schemas ----

async fn list_schemas(State(sb): S) -> Response {
    sb.with_store(|s| {
        let results: Vec<J> = s
            .types
            .values()
            .filter(|t| t.custom)
            .map(|t| t.schema_json())
            .collect();
        reply(200, json!({"results": results}))
    })
}

async fn get_schema(State(sb): S, Path(ty): Path<String>) -> Response {
    result(sb.with_store(|s| {
        let ty = s.type_name(&ty)?;
        Ok(reply(200, s.ty(&ty).schema_json()))
    }))
}

async fn create_schema(State(sb): S, body: String) -> Response {
    result(sb.with_store(|s| {
        let v = parse_body(&body)?;
        let name = v
            .get("name")
            .and_then(J::as_str)
            .ok_or_else(|| ApiErr::new(400, "VALIDATION_ERROR", "name is required"))?;
        let singular = v
            .pointer("/labels/singular")
            .and_then(J::as_str)
            .unwrap_or(name);
        let plural = v
            .pointer("/labels/plural")
            .and_then(J::as_str)
            .unwrap_or(name);
        let mut props = Vec::new();
        for p in v
            .get("properties")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            let mut p = p.clone();
            if p.get("groupName").is_none() {
                p["groupName"] = J::String(format!("{name}_information"));
            }
            if p.get("fieldType").is_none() {
                let ft = match p.get("type").and_then(J::as_str) {
                    Some("number") => "number",
                    Some("date") | Some("datetime") => "date",
                    Some("enumeration") => "select",
                    Some("bool") => "booleancheckbox",
                    _ => "text",
                };
                p["fieldType"] = J::String(ft.into());
            }
            props.push(prop_from(&p)?);
        }
        let display = v
            .get("primaryDisplayProperty")
            .and_then(J::as_str)
            .map(str::to_string)
            .or_else(|| props.first().map(|p| p.name.clone()))
            .unwrap_or_default();
        let required: Vec<String> = v
            .get("requiredProperties")
            .and_then(J::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for r in &required {
            if !props.iter().any(|p| &p.name == r) {
                return Err(ApiErr::new(
                    400,
                    "VALIDATION_ERROR",
                    format!("required property {r} is not among the schema's properties"),
                ));
            }
        }
        let t = s.add_custom(name, singular, plural, &display, required, props)?;
        Ok(reply(201, t.schema_json()))
    }))
}
