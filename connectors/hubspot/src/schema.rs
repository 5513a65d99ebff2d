//! HubSpot's properties → our schema: property types and field types,
//! unique, read-only and required properties, and the primary company as a
//! reference field.

use puente_core::{FieldSchema, FieldType, ObjectSchema};
use serde_json::Value as J;

use crate::client::entries;

/// The reference field that stands for a record's primary company (HubSpot's
/// own name for it on contacts).
pub const COMPANY_FIELD: &str = "associatedcompanyid";

/// Objects whose primary company is exposed as [`COMPANY_FIELD`], with the
/// association type ids (primary label) in each direction.
pub(crate) fn company_link(object: &str) -> Option<u32> {
    match object {
        "contacts" => Some(1),
        "deals" => Some(5),
        "tickets" => Some(26),
        _ => None,
    }
}

/// HubSpot's property list → our schema.
pub(crate) fn schema_of(object: &str, body: &J) -> ObjectSchema {
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
