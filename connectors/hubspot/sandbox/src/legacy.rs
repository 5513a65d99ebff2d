//! HubSpot's older property endpoints, which integrations written before
//! CRM v3 still call and HubSpot still answers: `GET
//! /properties/v1/{contacts|companies|deals}/properties`, `GET
//! /properties/v2/{objectType}/properties` and `GET
//! /companies/v2/properties`. Each answers a JSON array (no `results`
//! wrapper) of property definitions in the legacy shape, from the same
//! property store as `/crm/v3/properties`.
//!
//! The shape follows HubSpot's legacy reference (name, label, description,
//! groupName, type, fieldType, options, displayOrder, formField,
//! readOnlyValue, readOnlyDefinition, hidden, mutableDefinitionNotDeletable,
//! favorited, favoritedOrder, calculated, externalOptions, displayMode,
//! deleted, hubspotDefined, createdAt, updatedAt, createdUserId,
//! updatedUserId) and answers captured from HubSpot: timestamps are epoch
//! milliseconds, and HubSpot's own properties carry `hubspotDefined: true`
//! with null timestamps while custom ones carry `hubspotDefined: null`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value as J};

use super::api::result;
use super::store::PropDef;
use super::{not_found, reply, Sandbox};

/// The objects the v1 properties API has.
const V1_OBJECTS: &[&str] = &["contacts", "companies", "deals"];

pub fn router() -> Router<Arc<Sandbox>> {
    let mut r = Router::new();
    // HubSpot answers with or without the trailing slash (hubspot3 sends it).
    for slash in ["", "/"] {
        r = r
            .route(&format!("/properties/v1/{{ty}}/properties{slash}"), get(v1))
            .route(&format!("/properties/v2/{{ty}}/properties{slash}"), get(v2))
            .route(
                &format!("/companies/v2/properties{slash}"),
                get(companies_v2),
            );
    }
    r
}

async fn v1(State(sb): State<Arc<Sandbox>>, Path(ty): Path<String>) -> Response {
    if !V1_OBJECTS.contains(&ty.as_str()) {
        return not_found().await;
    }
    listing(&sb, &ty)
}

async fn v2(State(sb): State<Arc<Sandbox>>, Path(ty): Path<String>) -> Response {
    listing(&sb, &ty)
}

async fn companies_v2(State(sb): State<Arc<Sandbox>>) -> Response {
    listing(&sb, "companies")
}

fn listing(sb: &Sandbox, ty: &str) -> Response {
    result(sb.with_store(|s| {
        let name = s.type_name(ty)?;
        let t = s.ty(&name);
        let all: Vec<J> = t
            .props
            .iter()
            .map(|p| legacy_json(p, &t.singular))
            .collect();
        Ok(reply(200, J::Array(all)))
    }))
}

/// A property definition as the legacy endpoints write it.
pub fn legacy_json(p: &PropDef, object_group: &str) -> J {
    let options: Vec<J> = p
        .options
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            json!({
                "label": label,
                "value": value,
                "displayOrder": i,
                "hidden": false,
                "readOnly": false,
                "description": null,
                "doubleData": 0.0,
            })
        })
        .collect();
    let custom = !p.hubspot_defined;
    let when = if custom { json!(p.created) } else { J::Null };
    json!({
        "name": p.name,
        "label": p.label,
        "description": p.description,
        "groupName": p.group_name(object_group),
        "type": p.ty,
        "fieldType": p.field_type,
        "options": options,
        "displayOrder": -1,
        "formField": !p.read_only,
        "readOnlyValue": p.read_only,
        "readOnlyDefinition": p.hubspot_defined,
        "hidden": p.hidden,
        "mutableDefinitionNotDeletable": p.hubspot_defined,
        "favorited": false,
        "favoritedOrder": -1,
        "calculated": p.calculated,
        "externalOptions": false,
        "displayMode": "current_value",
        "deleted": if custom { json!(false) } else { J::Null },
        "hubspotDefined": if custom { J::Null } else { json!(true) },
        "hasUniqueValue": p.unique,
        "searchableInGlobalSearch": false,
        "createdAt": when,
        "updatedAt": when,
        "createdUserId": null,
        "updatedUserId": null,
        "showCurrencySymbol": null,
        "currencyPropertyName": null,
        "numberDisplayHint": null,
        "textDisplayHint": null,
        "optionsAreMutable": null,
        "referencedObjectType": null,
        "isCustomizedDefault": false,
    })
}
