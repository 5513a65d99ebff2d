//! The CRM search API: filter groups, operators, one sort, offset paging
//! and the 10,000-result cap.

use std::cmp::Ordering;

use serde_json::{json, Value as J};

use super::store::{parse_datetime_value, ApiErr, Rec, Store, TypeDef, Wanted};

/// Caps HubSpot applies to a search request.
#[derive(Clone, Debug)]
pub struct SearchCaps {
    pub max_groups: usize,
    pub max_per_group: usize,
    pub max_filters: usize,
    pub max_results: usize,
    pub max_body: usize,
}

impl Default for SearchCaps {
    fn default() -> Self {
        SearchCaps {
            max_groups: 5,
            max_per_group: 6,
            max_filters: 18,
            max_results: 10_000,
            max_body: 3_000,
        }
    }
}

struct Filter {
    prop: String,
    op: String,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiErr {
    ApiErr::new(400, "VALIDATION_ERROR", msg)
}

fn as_text(v: &J) -> Option<String> {
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Runs a search over `records` (the live records, or the lagging index).
pub fn search<'a>(
    store: &Store,
    ty: &str,
    records: impl Iterator<Item = &'a Rec>,
    body: &J,
    raw_len: usize,
    caps: &SearchCaps,
) -> Result<J, ApiErr> {
    if raw_len > caps.max_body {
        return Err(bad(format!(
            "The request body is {raw_len} characters long; the limit is {}",
            caps.max_body
        )));
    }
    let t = store.ty(ty);
    let groups = parse_groups(body)?;
    let total_filters: usize = groups.iter().map(Vec::len).sum();
    if groups.len() > caps.max_groups
        || groups.iter().any(|g| g.len() > caps.max_per_group)
        || total_filters > caps.max_filters
    {
        return Err(bad(format!(
            "Too many filters: at most {} filter groups, {} filters per group and {} in all are allowed",
            caps.max_groups, caps.max_per_group, caps.max_filters
        )));
    }
    let sort = parse_sort(body)?;
    let limit = body.get("limit").and_then(J::as_u64).unwrap_or(10) as usize;
    if limit > 200 {
        return Err(bad("limit must be 200 or less"));
    }
    let after: usize = match body.get("after") {
        None | Some(J::Null) => 0,
        Some(v) => as_text(v)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("after must be a number"))?,
    };
    if after + limit.max(1) > caps.max_results {
        return Err(bad(format!(
            "Search results are limited to {}; narrow the filters to read further",
            caps.max_results
        )));
    }
    let query = body
        .get("query")
        .and_then(J::as_str)
        .map(|q| q.to_lowercase());
    let mut hits: Vec<&Rec> = records
        .filter(|r| r.archived_at.is_none())
        .filter(|r| {
            groups.is_empty()
                || groups
                    .iter()
                    .any(|g| g.iter().all(|f| matches(t, store, ty, r, f)))
        })
        .filter(|r| match &query {
            Some(q) => t
                .defaults
                .iter()
                .chain(std::iter::once(&t.primary_display))
                .any(|p| {
                    r.props
                        .get(p)
                        .is_some_and(|v| v.to_lowercase().contains(q.as_str()))
                }),
            None => true,
        })
        .collect();
    match &sort {
        Some((prop, desc)) => hits.sort_by(|a, b| {
            let o = compare(t, prop, a.props.get(prop), b.props.get(prop)).then(a.id.cmp(&b.id));
            if *desc {
                o.reverse()
            } else {
                o
            }
        }),
        None => hits.sort_by_key(|r| (r.created, r.id)),
    }
    let total = hits.len();
    let wanted = Wanted::from_json(body.get("properties")).unwrap_or(Wanted::Search);
    let page: Vec<J> = hits
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| store.render(ty, r, &wanted))
        .collect();
    let mut out = json!({"total": total, "results": page});
    if after + limit < total {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Ok(out)
}

fn parse_groups(body: &J) -> Result<Vec<Vec<Filter>>, ApiErr> {
    let mut out = Vec::new();
    let mut groups: Vec<&J> = body
        .get("filterGroups")
        .and_then(J::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // A bare `filters` list is one group (an older request shape).
    let bare = body.get("filters");
    if let Some(f) = bare {
        groups.push(f);
    }
    for g in groups {
        let filters = g
            .get("filters")
            .or(Some(g))
            .and_then(J::as_array)
            .cloned()
            .unwrap_or_default();
        let mut fs = Vec::new();
        for f in filters {
            let prop = f
                .get("propertyName")
                .and_then(J::as_str)
                .ok_or_else(|| bad("each filter needs a propertyName"))?;
            let op = f
                .get("operator")
                .and_then(J::as_str)
                .unwrap_or("EQ")
                .to_ascii_uppercase();
            const OPS: &[&str] = &[
                "EQ",
                "NEQ",
                "LT",
                "LTE",
                "GT",
                "GTE",
                "BETWEEN",
                "IN",
                "NOT_IN",
                "HAS_PROPERTY",
                "NOT_HAS_PROPERTY",
                "CONTAINS_TOKEN",
                "NOT_CONTAINS_TOKEN",
            ];
            if !OPS.contains(&op.as_str()) {
                return Err(bad(format!("Unknown operator {op}")));
            }
            fs.push(Filter {
                prop: prop.to_string(),
                value: f.get("value").and_then(as_text),
                high: f.get("highValue").and_then(as_text),
                values: f
                    .get("values")
                    .and_then(J::as_array)
                    .map(|a| a.iter().filter_map(as_text).collect())
                    .unwrap_or_default(),
                op,
            });
        }
        out.push(fs);
    }
    Ok(out)
}

fn parse_sort(body: &J) -> Result<Option<(String, bool)>, ApiErr> {
    let Some(sorts) = body.get("sorts").and_then(J::as_array) else {
        return Ok(None);
    };
    if sorts.len() > 1 {
        return Err(bad("Only one sort is allowed"));
    }
    Ok(sorts.first().map(|s| match s {
        J::String(s) => match s.strip_prefix('-') {
            Some(p) => (p.to_string(), true),
            None => (s.clone(), false),
        },
        other => (
            other
                .get("propertyName")
                .and_then(J::as_str)
                .unwrap_or("hs_object_id")
                .to_string(),
            other.get("direction").and_then(J::as_str) == Some("DESCENDING"),
        ),
    }))
}

fn kind(t: &TypeDef, prop: &str) -> &'static str {
    if prop == "hs_object_id" {
        return "number";
    }
    match t.prop(prop).map(|p| p.ty.as_str()) {
        Some("number") => "number",
        Some("date") | Some("datetime") => "time",
        Some("enumeration") => "enum",
        _ => "text",
    }
}

fn key(kind: &str, s: &str) -> Key {
    match kind {
        "number" => s
            .parse::<f64>()
            .map(Key::Num)
            .unwrap_or(Key::Text(s.to_lowercase())),
        "time" => parse_datetime_value(s)
            .map(|d| Key::Num(d.timestamp_millis() as f64))
            .unwrap_or(Key::Text(s.to_lowercase())),
        "enum" => Key::Text(s.to_string()),
        _ => Key::Text(s.to_lowercase()),
    }
}

#[derive(PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Text(String),
}

fn compare(t: &TypeDef, prop: &str, a: Option<&String>, b: Option<&String>) -> Ordering {
    let k = kind(t, prop);
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => key(k, a).partial_cmp(&key(k, b)).unwrap_or(Ordering::Equal),
    }
}

fn matches(t: &TypeDef, store: &Store, ty: &str, r: &Rec, f: &Filter) -> bool {
    if let Some(to) = f.prop.strip_prefix("associations.") {
        let to_ty = match store.type_name(to) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let want: Option<u64> = f.value.as_deref().and_then(|v| v.parse().ok());
        let linked = store
            .edges(ty, r.id, &to_ty)
            .iter()
            .any(|(id, _)| Some(*id) == want);
        return if f.op == "NEQ" { !linked } else { linked };
    }
    let k = kind(t, &f.prop);
    let v = r.props.get(&f.prop).filter(|v| !v.is_empty());
    match f.op.as_str() {
        "HAS_PROPERTY" => return v.is_some(),
        "NOT_HAS_PROPERTY" => return v.is_none(),
        _ => {}
    }
    let Some(v) = v else {
        return matches!(f.op.as_str(), "NEQ" | "NOT_IN" | "NOT_CONTAINS_TOKEN");
    };
    let multi = t.prop(&f.prop).is_some_and(|p| p.field_type == "checkbox");
    let have = key(k, v);
    let is = |x: &str| -> bool {
        if multi {
            v.split(';').any(|part| part == x)
        } else {
            have == key(k, x)
        }
    };
    match f.op.as_str() {
        "EQ" => f.value.as_deref().is_some_and(is),
        "NEQ" => !f.value.as_deref().is_some_and(is),
        "LT" => f.value.as_deref().is_some_and(|x| have < key(k, x)),
        "LTE" => f.value.as_deref().is_some_and(|x| have <= key(k, x)),
        "GT" => f.value.as_deref().is_some_and(|x| have > key(k, x)),
        "GTE" => f.value.as_deref().is_some_and(|x| have >= key(k, x)),
        "BETWEEN" => match (f.value.as_deref(), f.high.as_deref()) {
            (Some(lo), Some(hi)) => have >= key(k, lo) && have <= key(k, hi),
            _ => false,
        },
        // IN on strings wants lower-case values, as HubSpot documents.
        "IN" => f.values.iter().any(|x| is(x)),
        "NOT_IN" => !f.values.iter().any(|x| is(x)),
        "CONTAINS_TOKEN" => token_match(v, f.value.as_deref().unwrap_or("")),
        "NOT_CONTAINS_TOKEN" => !token_match(v, f.value.as_deref().unwrap_or("")),
        _ => false,
    }
}

/// Token match with `*` wildcards, case-insensitive: `*@acme.com`.
fn token_match(value: &str, pattern: &str) -> bool {
    let value = value.to_lowercase();
    let pattern = pattern.to_lowercase();
    if !pattern.contains('*') {
        return value
            .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.' && c != '-' && c != '_')
            .any(|tok| tok == pattern)
            || value == pattern;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = value.as_str();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(p) => rest = &rest[p + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_tokens() {
        assert!(token_match("ann@acme.com", "*@acme.com"));
        assert!(!token_match("ann@acme.co", "*@acme.com"));
        assert!(token_match("Hello World", "world"));
        assert!(token_match("ann@acme.com", "ann*"));
    }
}
