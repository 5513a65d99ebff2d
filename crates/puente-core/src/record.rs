use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::Value;

/// Field name → canonical value.
pub type Fields = BTreeMap<String, Value>;

/// One record as a connector read it: its id on that side, its fields in
/// canonical form, and when the source last modified it (when known).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    pub fields: Fields,
    pub modified_at: Option<DateTime<Utc>>,
    /// Fields the connector could not read (field → why), such as bytes
    /// that are not UTF-8. The record fails with the field named instead of
    /// syncing an altered value.
    pub unreadable: BTreeMap<String, String>,
}

impl Record {
    pub fn new(id: impl Into<String>) -> Record {
        Record {
            id: id.into(),
            fields: Fields::new(),
            modified_at: None,
            unreadable: BTreeMap::new(),
        }
    }

    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Record {
        self.fields.insert(field.to_string(), value.into());
        self
    }

    /// The value of `field`, `Value::Null` when absent.
    pub fn get(&self, field: &str) -> &Value {
        self.fields.get(field).unwrap_or(&Value::Null)
    }
}
