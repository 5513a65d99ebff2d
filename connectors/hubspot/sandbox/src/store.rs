//! The sandbox's data: object types with their properties, records,
//! associations, merges, and the rules HubSpot applies on write (value
//! formats, read-only and unknown properties, unique values, required
//! properties at create).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as J};

/// Milliseconds since the epoch.
pub type Ms = i64;

pub fn now_ms() -> Ms {
    Utc::now().timestamp_millis()
}

pub fn iso(ms: Ms) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PropDef {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub field_type: String,
    pub group: String,
    pub options: Vec<(String, String)>,
    pub unique: bool,
    pub read_only: bool,
    pub calculated: bool,
    pub hubspot_defined: bool,
    pub hidden: bool,
    pub description: String,
    pub created: Ms,
}

impl PropDef {
    fn new(name: &str, ty: &str, field_type: &str) -> PropDef {
        PropDef {
            name: name.into(),
            label: label_of(name),
            ty: ty.into(),
            field_type: field_type.into(),
            group: "information".into(),
            options: vec![],
            unique: false,
            read_only: false,
            calculated: false,
            hubspot_defined: true,
            hidden: false,
            description: String::new(),
            created: 1_420_070_400_000,
        }
    }

    /// Its group: `contactinformation` for a built-in one of contacts.
    pub fn group_name(&self, object_group: &str) -> String {
        if self.group == "information" {
            format!("{object_group}information")
        } else {
            self.group.clone()
        }
    }

    pub fn to_json(&self, object_group: &str) -> J {
        let options: Vec<J> = self
            .options
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                json!({"label": label, "value": value, "displayOrder": i, "hidden": false})
            })
            .collect();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.ty,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name(object_group),
            "options": options,
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": false,
            "hasUniqueValue": self.unique,
            "hidden": self.hidden,
            "hubspotDefined": self.hubspot_defined,
            "formField": !self.read_only,
            "modificationMetadata": {
                "archivable": !self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
            "createdAt": iso(self.created),
            "updatedAt": iso(self.created),
            "archived": false,
        })
    }
}

fn label_of(name: &str) -> String {
    let s = name.trim_start_matches("hs_").replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rec {
    pub id: u64,
    pub props: BTreeMap<String, String>,
    pub created: Ms,
    pub updated: Ms,
    pub archived_at: Option<Ms>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TypeDef {
    /// `contacts`, `companies`, a custom object's name.
    pub name: String,
    pub singular: String,
    /// `0-1`, `2-123`.
    pub type_id: String,
    pub fqn: String,
    pub props: Vec<PropDef>,
    pub records: BTreeMap<u64, Rec>,
    pub lastmod: String,
    pub createdate: String,
    /// Properties returned when a read names none.
    pub defaults: Vec<String>,
    /// Required at create: every group is alternatives, each must be met.
    pub required: Vec<Vec<String>>,
    pub primary_display: String,
    pub custom: bool,
    pub labels: (String, String),
}

impl TypeDef {
    pub fn prop(&self, name: &str) -> Option<&PropDef> {
        self.props.iter().find(|p| p.name == name)
    }

    /// Properties every object answer carries whatever was asked.
    pub fn always(&self) -> [&str; 3] {
        [
            "hs_object_id",
            self.createdate.as_str(),
            self.lastmod.as_str(),
        ]
    }

    pub fn schema_json(&self) -> J {
        json!({
            "id": self.type_id.split('-').nth(1).unwrap_or("0"),
            "objectTypeId": self.type_id,
            "fullyQualifiedName": self.fqn,
            "name": self.name,
            "labels": {"singular": self.labels.0, "plural": self.labels.1},
            "primaryDisplayProperty": self.primary_display,
            "secondaryDisplayProperties": [],
            "requiredProperties": self.required.iter().flatten().collect::<Vec<_>>(),
            "searchableProperties": [self.primary_display.clone()],
            "properties": self.props.iter().map(|p| p.to_json(&self.singular)).collect::<Vec<_>>(),
            "associations": [],
            "createdAt": iso(1_420_070_400_000),
            "updatedAt": iso(1_420_070_400_000),
            "archived": false,
        })
    }
}

/// An error of one input, in HubSpot's words.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiErr {
    pub status: u16,
    pub category: &'static str,
    pub message: String,
    /// `errors[]` details: (code, message, property).
    pub details: Vec<(String, String, Option<String>)>,
    pub context: BTreeMap<String, Vec<String>>,
}

impl ApiErr {
    pub fn new(status: u16, category: &'static str, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            category,
            message: message.into(),
            details: vec![],
            context: BTreeMap::new(),
        }
    }

    pub fn not_found(id: &str) -> ApiErr {
        let mut e = ApiErr::new(
            404,
            "OBJECT_NOT_FOUND",
            "Object not found.  objectId are usually numeric.",
        );
        e.context.insert("id".into(), vec![id.to_string()]);
        e
    }

    pub fn validation(problems: Vec<(String, String, String)>) -> ApiErr {
        // HubSpot's message embeds the per-property problems as JSON.
        let inner: Vec<J> = problems
            .iter()
            .map(|(code, msg, name)| {
                json!({"isValid": false, "message": msg, "error": code, "name": name, "localizedErrorMessage": msg})
            })
            .collect();
        let mut e = ApiErr::new(
            400,
            "VALIDATION_ERROR",
            format!("Property values were not valid: {}", J::Array(inner)),
        );
        e.details = problems
            .into_iter()
            .map(|(code, msg, name)| (code, msg, Some(name)))
            .collect();
        e
    }

    /// The standard error body.
    pub fn body(&self, correlation: &str) -> J {
        let mut b = json!({
            "status": "error",
            "message": self.message,
            "correlationId": correlation,
            "category": self.category,
        });
        if !self.details.is_empty() {
            b["errors"] = J::Array(self.details.iter().map(detail_json).collect());
        }
        if !self.context.is_empty() {
            b["context"] = json!(self.context);
        }
        b
    }

    /// The entry in a batch answer's `errors[]`.
    pub fn batch_entry(&self) -> J {
        json!({
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": self.context,
            "errors": self.details.iter().map(detail_json).collect::<Vec<_>>(),
            "links": {},
        })
    }
}

fn detail_json((code, msg, prop): &(String, String, Option<String>)) -> J {
    let mut d = json!({"message": msg, "code": code});
    if let Some(p) = prop {
        d["context"] = json!({"propertyName": [p]});
    }
    d
}

/// An event for webhook subscribers.
#[derive(Clone, Debug)]
pub struct Change {
    /// The object type's name (`contacts`) and its singular (`contact`),
    /// which names webhook events.
    pub ty: String,
    pub singular: String,
    pub kind: ChangeKind,
    pub object_id: u64,
    pub at: Ms,
}

#[derive(Clone, Debug)]
pub enum ChangeKind {
    Creation,
    Property(String, String),
    Deletion,
    Merge {
        primary: u64,
        merged: Vec<u64>,
    },
    Association {
        to_type: String,
        to_id: u64,
        removed: bool,
    },
}

/// Association type ids of HubSpot's default pairs: (from, to) →
/// (unlabeled, primary) in that direction.
pub fn assoc_types(from: &str, to: &str) -> (u32, Option<u32>) {
    match (from, to) {
        ("contacts", "companies") => (279, Some(1)),
        ("companies", "contacts") => (280, Some(2)),
        ("deals", "companies") => (341, Some(5)),
        ("companies", "deals") => (342, Some(6)),
        ("contacts", "deals") => (4, None),
        ("deals", "contacts") => (3, None),
        ("contacts", "tickets") => (15, None),
        ("tickets", "contacts") => (16, None),
        ("tickets", "companies") => (339, Some(26)),
        ("companies", "tickets") => (340, Some(25)),
        ("deals", "tickets") => (27, None),
        ("tickets", "deals") => (28, None),
        ("deals", "line_items") => (19, None),
        ("line_items", "deals") => (20, None),
        ("contacts", "notes") => (201, None),
        ("contacts", "calls") => (193, None),
        ("contacts", "tasks") => (203, None),
        ("companies", "notes") => (189, None),
        ("deals", "notes") => (213, None),
        ("deals", "calls") => (205, None),
        _ => (0, None),
    }
}

/// The reverse id of a default association type.
fn reverse_type(from: &str, to: &str, type_id: u32) -> u32 {
    let (fwd, primary) = assoc_types(from, to);
    let (rev, rev_primary) = assoc_types(to, from);
    if type_id == fwd {
        rev
    } else if Some(type_id) == primary {
        rev_primary.unwrap_or(rev)
    } else {
        type_id
    }
}

/// One association edge, stored in both directions.
pub type AssocKey = (String, u64, String);

/// Every association: key → target id → association type ids.
pub type Edges = HashMap<AssocKey, BTreeMap<u64, BTreeSet<(String, u32)>>>;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Store {
    pub portal_id: u64,
    pub next_id: u64,
    pub types: BTreeMap<String, TypeDef>,
    /// (from type, from id, to type) → to id → association type ids.
    #[serde(with = "assoc_serde")]
    pub assoc: Edges,
    /// (type, merged-away id) → surviving id.
    pub merged: BTreeMap<String, BTreeMap<u64, u64>>,
    pub custom_seq: u64,
    #[serde(skip)]
    pub changes: Vec<Change>,
    /// Reject a company whose domain another company holds (HubSpot does
    /// not; some users want the sandbox stricter).
    pub unique_company_domain: bool,
    /// type → unique property → value → live record (the API's own index).
    #[serde(skip)]
    pub unique: HashMap<String, HashMap<String, HashMap<String, u64>>>,
}

mod assoc_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    type Flat = Vec<(AssocKey, BTreeMap<u64, BTreeSet<(String, u32)>>)>;

    pub fn serialize<S: Serializer>(m: &Edges, s: S) -> Result<S::Ok, S::Error> {
        let mut flat: Flat = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        flat.sort_by(|a, b| a.0.cmp(&b.0));
        flat.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Edges, D::Error> {
        Ok(Flat::deserialize(d)?.into_iter().collect())
    }
}

pub(super) const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

fn opts(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (label_of(v), v.to_string()))
        .collect()
}

fn enum_prop(name: &str, values: &[&str]) -> PropDef {
    let mut p = PropDef::new(name, "enumeration", "select");
    p.options = opts(values);
    p
}

fn ro(mut p: PropDef) -> PropDef {
    p.read_only = true;
    p
}

fn text(name: &str) -> PropDef {
    PropDef::new(name, "string", "text")
}

fn number(name: &str) -> PropDef {
    PropDef::new(name, "number", "number")
}

fn system_props(createdate: &str, lastmod: &str) -> Vec<PropDef> {
    let mut merged = PropDef::new("hs_merged_object_ids", "enumeration", "checkbox");
    merged.read_only = true;
    vec![
        ro(number("hs_object_id")),
        ro(PropDef::new(createdate, "datetime", "date")),
        ro(PropDef::new(lastmod, "datetime", "date")),
        merged,
        ro(PropDef::new("hs_object_source", "string", "text")),
    ]
}

struct Builtin {
    name: &'static str,
    singular: &'static str,
    type_id: &'static str,
    lastmod: &'static str,
    createdate: &'static str,
    defaults: &'static [&'static str],
    required: &'static [&'static [&'static str]],
    display: &'static str,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "contacts",
        singular: "contact",
        type_id: "0-1",
        lastmod: "lastmodifieddate",
        createdate: "createdate",
        defaults: &["firstname", "lastname", "email"],
        required: &[],
        display: "email",
    },
    Builtin {
        name: "companies",
        singular: "company",
        type_id: "0-2",
        lastmod: "hs_lastmodifieddate",
        createdate: "createdate",
        defaults: &["name", "domain"],
        required: &[&["name", "domain"]],
        display: "name",
    },
    Builtin {
        name: "deals",
        singular: "deal",
        type_id: "0-3",
        lastmod: "hs_lastmodifieddate",
        createdate: "createdate",
        defaults: &["dealname", "amount", "closedate", "pipeline", "dealstage"],
        required: &[&["dealname"], &["dealstage"], &["pipeline"]],
        display: "dealname",
    },
    Builtin {
        name: "tickets",
        singular: "ticket",
        type_id: "0-5",
        lastmod: "hs_lastmodifieddate",
        createdate: "createdate",
        defaults: &[
            "subject",
            "content",
            "hs_pipeline",
            "hs_pipeline_stage",
            "hs_ticket_category",
            "hs_ticket_priority",
        ],
        required: &[&["subject"], &["hs_pipeline"], &["hs_pipeline_stage"]],
        display: "subject",
    },
    Builtin {
        name: "products",
        singular: "product",
        type_id: "0-7",
        lastmod: "hs_lastmodifieddate",
        createdate: "createdate",
        defaults: &["name", "description", "price"],
        required: &[],
        display: "name",
    },
    Builtin {
        name: "line_items",
        singular: "line_item",
        type_id: "0-8",
        lastmod: "hs_lastmodifieddate",
        createdate: "createdate",
        defaults: &["name", "quantity", "price", "amount"],
        required: &[],
        display: "name",
    },
    Builtin {
        name: "tasks",
        singular: "task",
        type_id: "0-27",
        lastmod: "hs_lastmodifieddate",
        createdate: "hs_createdate",
        defaults: &["hs_task_subject", "hs_task_status"],
        required: &[&["hs_timestamp"]],
        display: "hs_task_subject",
    },
    Builtin {
        name: "notes",
        singular: "note",
        type_id: "0-46",
        lastmod: "hs_lastmodifieddate",
        createdate: "hs_createdate",
        defaults: &["hs_note_body"],
        required: &[&["hs_timestamp"]],
        display: "hs_note_body",
    },
    Builtin {
        name: "meetings",
        singular: "meeting",
        type_id: "0-47",
        lastmod: "hs_lastmodifieddate",
        createdate: "hs_createdate",
        defaults: &["hs_meeting_title"],
        required: &[&["hs_timestamp"]],
        display: "hs_meeting_title",
    },
    Builtin {
        name: "calls",
        singular: "call",
        type_id: "0-48",
        lastmod: "hs_lastmodifieddate",
        createdate: "hs_createdate",
        defaults: &["hs_call_title", "hs_call_body"],
        required: &[&["hs_timestamp"]],
        display: "hs_call_title",
    },
];

fn builtin_props(name: &str) -> Vec<PropDef> {
    let mut email = text("email");
    email.unique = true;
    let mut phone = PropDef::new("phone", "string", "phonenumber");
    phone.label = "Phone Number".into();
    let mut desc = PropDef::new("description", "string", "textarea");
    desc.label = "Description".into();
    match name {
        "contacts" => {
            let mut additional = PropDef::new("hs_additional_emails", "enumeration", "checkbox");
            additional.read_only = true;
            vec![
                email,
                text("firstname"),
                text("lastname"),
                phone,
                PropDef::new("mobilephone", "string", "phonenumber"),
                text("company"),
                text("jobtitle"),
                text("website"),
                text("address"),
                text("city"),
                text("zip"),
                text("country"),
                enum_prop("lifecyclestage", LIFECYCLE),
                enum_prop(
                    "hs_lead_status",
                    &[
                        "NEW",
                        "OPEN",
                        "IN_PROGRESS",
                        "OPEN_DEAL",
                        "UNQUALIFIED",
                        "ATTEMPTED_TO_CONTACT",
                        "CONNECTED",
                        "BAD_TIMING",
                    ],
                ),
                text("hubspot_owner_id"),
                PropDef::new("date_of_birth", "date", "date"),
                number("num_employees"),
                additional,
            ]
        }
        "companies" => vec![
            text("name"),
            text("domain"),
            phone,
            text("website"),
            text("address"),
            text("city"),
            text("zip"),
            text("country"),
            enum_prop(
                "industry",
                &[
                    "ACCOUNTING",
                    "COMPUTER_SOFTWARE",
                    "CONSTRUCTION",
                    "FINANCIAL_SERVICES",
                    "HOSPITAL_HEALTH_CARE",
                    "LOGISTICS_AND_SUPPLY_CHAIN",
                    "RETAIL",
                    "WHOLESALE",
                ],
            ),
            number("numberofemployees"),
            number("annualrevenue"),
            enum_prop("lifecyclestage", LIFECYCLE),
            text("hubspot_owner_id"),
            desc,
        ],
        "deals" => {
            let mut pipeline = enum_prop("pipeline", &["default"]);
            pipeline.options = vec![("Sales Pipeline".into(), "default".into())];
            vec![
                text("dealname"),
                number("amount"),
                PropDef::new("closedate", "datetime", "date"),
                pipeline,
                enum_prop(
                    "dealstage",
                    &[
                        "appointmentscheduled",
                        "qualifiedtobuy",
                        "presentationscheduled",
                        "decisionmakerboughtin",
                        "contractsent",
                        "closedwon",
                        "closedlost",
                    ],
                ),
                enum_prop("dealtype", &["newbusiness", "existingbusiness"]),
                text("hubspot_owner_id"),
                desc,
            ]
        }
        "tickets" => vec![
            text("subject"),
            PropDef::new("content", "string", "textarea"),
            enum_prop("hs_pipeline", &["0"]),
            enum_prop("hs_pipeline_stage", &["1", "2", "3", "4"]),
            enum_prop("hs_ticket_priority", &["LOW", "MEDIUM", "HIGH"]),
            enum_prop(
                "hs_ticket_category",
                &[
                    "PRODUCT_ISSUE",
                    "BILLING_ISSUE",
                    "FEATURE_REQUEST",
                    "GENERAL_INQUIRY",
                ],
            ),
            text("hubspot_owner_id"),
        ],
        "products" => vec![
            text("name"),
            desc,
            number("price"),
            text("hs_sku"),
            number("hs_cost_of_goods_sold"),
            enum_prop(
                "hs_recurring_billing_period",
                &["P1M", "P3M", "P6M", "P12M"],
            ),
        ],
        "line_items" => vec![
            text("name"),
            number("quantity"),
            number("price"),
            number("amount"),
            text("hs_product_id"),
            text("hs_sku"),
        ],
        "tasks" => vec![
            PropDef::new("hs_timestamp", "datetime", "date"),
            text("hs_task_subject"),
            PropDef::new("hs_task_body", "string", "textarea"),
            enum_prop(
                "hs_task_status",
                &[
                    "NOT_STARTED",
                    "IN_PROGRESS",
                    "WAITING",
                    "COMPLETED",
                    "DEFERRED",
                ],
            ),
            enum_prop("hs_task_priority", &["LOW", "MEDIUM", "HIGH"]),
            text("hubspot_owner_id"),
        ],
        "notes" => vec![
            PropDef::new("hs_timestamp", "datetime", "date"),
            PropDef::new("hs_note_body", "string", "html"),
            text("hubspot_owner_id"),
        ],
        "meetings" => vec![
            PropDef::new("hs_timestamp", "datetime", "date"),
            text("hs_meeting_title"),
            PropDef::new("hs_meeting_body", "string", "html"),
            PropDef::new("hs_meeting_start_time", "datetime", "date"),
            PropDef::new("hs_meeting_end_time", "datetime", "date"),
        ],
        "calls" => vec![
            PropDef::new("hs_timestamp", "datetime", "date"),
            text("hs_call_title"),
            PropDef::new("hs_call_body", "string", "html"),
            number("hs_call_duration"),
            enum_prop("hs_call_direction", &["INBOUND", "OUTBOUND"]),
            enum_prop(
                "hs_call_status",
                &[
                    "BUSY",
                    "CALLING_CRM_USER",
                    "CANCELED",
                    "COMPLETED",
                    "CONNECTING",
                    "FAILED",
                    "IN_PROGRESS",
                    "NO_ANSWER",
                    "QUEUED",
                    "RINGING",
                ],
            ),
            text("hs_call_from_number"),
            text("hs_call_to_number"),
        ],
        _ => vec![],
    }
}

impl Store {
    /// Records a change for search and webhook subscribers.
    fn note(&mut self, ty: &str, object_id: u64, kind: ChangeKind, at: Ms) {
        let singular = self.types[ty].singular.clone();
        self.changes.push(Change {
            ty: ty.to_string(),
            singular,
            kind,
            object_id,
            at,
        });
    }

    fn is_unique(&self, ty: &str, prop: &str) -> bool {
        self.types[ty].prop(prop).is_some_and(|p| p.unique)
            || (ty == "companies" && prop == "domain" && self.unique_company_domain)
    }

    /// The unique values a record holds: (property, value).
    fn unique_values(&self, ty: &str, rec: &Rec) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &rec.props {
            if v.is_empty() {
                continue;
            }
            if k == "hs_additional_emails" {
                out.extend(v.split(';').map(|e| ("email".to_string(), e.to_string())));
            } else if self.is_unique(ty, k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    fn index_put(&mut self, ty: &str, id: u64) {
        let Some(rec) = self.types[ty]
            .records
            .get(&id)
            .filter(|r| r.archived_at.is_none())
        else {
            return;
        };
        let vals = self.unique_values(ty, rec);
        let idx = self.unique.entry(ty.to_string()).or_default();
        for (k, v) in vals {
            idx.entry(k).or_default().insert(v, id);
        }
    }

    fn index_drop(&mut self, ty: &str, id: u64) {
        let Some(rec) = self.types[ty].records.get(&id) else {
            return;
        };
        let vals = self.unique_values(ty, rec);
        if let Some(idx) = self.unique.get_mut(ty) {
            for (k, v) in vals {
                if let Some(m) = idx.get_mut(&k) {
                    if m.get(&v) == Some(&id) {
                        m.remove(&v);
                    }
                }
            }
        }
    }

    /// Rebuilds the unique-value index (after loading, or a new unique property).
    pub fn reindex(&mut self) {
        self.unique.clear();
        let all: Vec<(String, u64)> = self
            .types
            .iter()
            .flat_map(|(n, t)| t.records.keys().map(move |id| (n.clone(), *id)))
            .collect();
        for (ty, id) in all {
            self.index_put(&ty, id);
        }
    }

    fn holder(&self, ty: &str, prop: &str, value: &str) -> Option<u64> {
        self.unique.get(ty)?.get(prop)?.get(value).copied()
    }

    pub fn new(portal_id: u64) -> Store {
        let mut types = BTreeMap::new();
        for b in BUILTINS {
            let mut props = builtin_props(b.name);
            props.extend(system_props(b.createdate, b.lastmod));
            types.insert(
                b.name.to_string(),
                TypeDef {
                    name: b.name.into(),
                    singular: b.singular.into(),
                    type_id: b.type_id.into(),
                    fqn: b.name.into(),
                    props,
                    records: BTreeMap::new(),
                    lastmod: b.lastmod.into(),
                    createdate: b.createdate.into(),
                    defaults: b.defaults.iter().map(|s| s.to_string()).collect(),
                    required: b
                        .required
                        .iter()
                        .map(|g| g.iter().map(|s| s.to_string()).collect())
                        .collect(),
                    primary_display: b.display.into(),
                    custom: false,
                    labels: (label_of(b.singular), label_of(b.name)),
                },
            );
        }
        Store {
            portal_id,
            next_id: 1001,
            types,
            ..Store::default()
        }
    }

    /// The type named by a path segment: a name, a type id or a custom
    /// object's fully qualified name.
    pub fn type_name(&self, seg: &str) -> Result<String, ApiErr> {
        let seg_l = seg.to_ascii_lowercase();
        let alias = match seg_l.as_str() {
            "contact" => "contacts",
            "company" => "companies",
            "deal" => "deals",
            "ticket" => "tickets",
            "product" => "products",
            "line_item" | "lineitems" | "line_item_s" => "line_items",
            "call" => "calls",
            "note" => "notes",
            "task" => "tasks",
            "meeting" => "meetings",
            other => other,
        };
        self.types
            .values()
            .find(|t| t.name == alias || t.type_id == seg || t.fqn.eq_ignore_ascii_case(seg))
            .map(|t| t.name.clone())
            .ok_or_else(|| {
                ApiErr::new(
                    400,
                    "VALIDATION_ERROR",
                    format!("Unable to infer object type from: {seg}"),
                )
            })
    }

    pub fn ty(&self, name: &str) -> &TypeDef {
        &self.types[name]
    }

    fn alloc(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1 + (id % 7);
        id
    }

    /// Parses an id from a path or a batch input.
    pub fn parse_id(s: &str) -> Result<u64, ApiErr> {
        s.trim().parse::<u64>().map_err(|_| ApiErr::not_found(s))
    }

    /// A live record by id, following merges.
    pub fn live(&self, ty: &str, id: u64) -> Option<&Rec> {
        let t = &self.types[ty];
        let id = self.resolve(ty, id);
        t.records.get(&id).filter(|r| r.archived_at.is_none())
    }

    pub fn resolve(&self, ty: &str, mut id: u64) -> u64 {
        let mut hops = 0;
        while let Some(next) = self.merged.get(ty).and_then(|m| m.get(&id)) {
            id = *next;
            hops += 1;
            if hops > 300 {
                break;
            }
        }
        id
    }

    /// A live record found by a unique property (`idProperty`).
    pub fn by_unique(&self, ty: &str, prop: &str, value: &str) -> Result<Option<u64>, ApiErr> {
        let t = &self.types[ty];
        if prop == "hs_object_id" {
            return Ok(Store::parse_id(value)
                .ok()
                .and_then(|id| self.live(ty, id))
                .map(|r| r.id));
        }
        let Some(p) = t.prop(prop) else {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                format!("Property \"{prop}\" does not exist"),
            ));
        };
        if !p.unique {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                format!("{prop} is not a unique identifier property; use a property with unique values as idProperty"),
            ));
        }
        let needle = if prop == "email" {
            value.trim().to_lowercase()
        } else {
            value.to_string()
        };
        Ok(self
            .holder(ty, prop, &needle)
            .filter(|id| self.live(ty, *id).is_some()))
    }

    /// Checks and normalises the values of a create or update, as HubSpot
    /// would store them.
    pub fn check_props(
        &self,
        ty: &str,
        input: &serde_json::Map<String, J>,
        existing: Option<u64>,
    ) -> Result<BTreeMap<String, String>, ApiErr> {
        let t = &self.types[ty];
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, raw) in input {
            let Some(p) = t.prop(name) else {
                problems.push((
                    "PROPERTY_DOESNT_EXIST".to_string(),
                    format!("Property \"{name}\" does not exist"),
                    name.clone(),
                ));
                continue;
            };
            if p.read_only || p.calculated {
                problems.push((
                    "READ_ONLY_VALUE".to_string(),
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                    name.clone(),
                ));
                continue;
            }
            let s = match raw {
                J::Null => String::new(),
                J::String(s) => s.clone(),
                J::Number(n) => n.to_string(),
                J::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            match normalise(
                p,
                &s,
                existing
                    .and_then(|id| t.records.get(&id))
                    .and_then(|r| r.props.get(name)),
            ) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err((code, msg)) => problems.push((code.to_string(), msg, name.clone())),
            }
        }
        if !problems.is_empty() {
            return Err(ApiErr::validation(problems));
        }
        // Unique values.
        for (name, v) in &out {
            if v.is_empty() {
                continue;
            }
            if !self.is_unique(ty, name) {
                continue;
            }
            let clash = self
                .holder(ty, name, v)
                .filter(|id| Some(*id) != existing)
                .and_then(|id| t.records.get(&id))
                .filter(|r| r.archived_at.is_none());
            if let Some(r) = clash {
                let mut e = if ty == "contacts" && name == "email" {
                    ApiErr::new(
                        409,
                        "CONFLICT",
                        format!("Contact already exists. Existing ID: {}", r.id),
                    )
                } else {
                    ApiErr::new(
                        409,
                        "CONFLICT",
                        format!(
                            "A {} with the unique value {name}={v} already exists. Existing ID: {}",
                            t.singular, r.id
                        ),
                    )
                };
                e.details = vec![(
                    "CONFLICT".into(),
                    format!("{name} must be unique"),
                    Some(name.clone()),
                )];
                return Err(e);
            }
        }
        Ok(out)
    }

    fn check_required(&self, ty: &str, props: &BTreeMap<String, String>) -> Result<(), ApiErr> {
        let t = &self.types[ty];
        for group in &t.required {
            if !group
                .iter()
                .any(|p| props.get(p).is_some_and(|v| !v.is_empty()))
            {
                let name = group.join(" or ");
                return Err(ApiErr::validation(vec![(
                    "REQUIRED_FIELD".into(),
                    format!("{name} is required to create a {}", t.singular),
                    group[0].clone(),
                )]));
            }
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        ty: &str,
        input: &serde_json::Map<String, J>,
        now: Ms,
    ) -> Result<u64, ApiErr> {
        let props = self.check_props(ty, input, None)?;
        self.check_required(ty, &props)?;
        let id = self.alloc();
        let t = self.types.get_mut(ty).expect("type checked");
        let mut rec = Rec {
            id,
            props: props.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            created: now,
            updated: now,
            archived_at: None,
        };
        stamp(t, &mut rec, true);
        t.records.insert(id, rec);
        self.index_put(ty, id);
        self.note(ty, id, ChangeKind::Creation, now);
        Ok(id)
    }

    pub fn update(
        &mut self,
        ty: &str,
        id: u64,
        input: &serde_json::Map<String, J>,
        now: Ms,
    ) -> Result<u64, ApiErr> {
        let id = self.resolve(ty, id);
        if self.live(ty, id).is_none() {
            return Err(ApiErr::not_found(&id.to_string()));
        }
        let props = self.check_props(ty, input, Some(id))?;
        self.index_drop(ty, id);
        let t = self.types.get_mut(ty).expect("type checked");
        let rec = t.records.get_mut(&id).expect("live");
        let mut changed = Vec::new();
        for (k, v) in props {
            let old = rec.props.get(&k).cloned().unwrap_or_default();
            if old != v {
                if v.is_empty() {
                    rec.props.remove(&k);
                } else {
                    rec.props.insert(k.clone(), v.clone());
                }
                changed.push((k, v));
            }
        }
        if !changed.is_empty() {
            rec.updated = now.max(rec.updated + 1);
            let mut r = rec.clone();
            stamp(t, &mut r, false);
            t.records.insert(id, r);
            self.index_put(ty, id);
            for (k, v) in changed {
                self.note(ty, id, ChangeKind::Property(k, v), now);
            }
        }
        self.index_put(ty, id);
        Ok(id)
    }

    pub fn archive(&mut self, ty: &str, id: u64, now: Ms) -> bool {
        let id = self.resolve(ty, id);
        self.index_drop(ty, id);
        let t = self.types.get_mut(ty).expect("type checked");
        match t.records.get_mut(&id) {
            Some(r) if r.archived_at.is_none() => {
                r.archived_at = Some(now);
                r.updated = now.max(r.updated + 1);
                self.note(ty, id, ChangeKind::Deletion, now);
                true
            }
            _ => false,
        }
    }

    /// Merges `loser` into `primary`: the primary keeps its values, takes
    /// the loser's where it has none, its associations, and lists its id.
    pub fn merge(&mut self, ty: &str, primary: u64, loser: u64, now: Ms) -> Result<u64, ApiErr> {
        let primary = self.resolve(ty, primary);
        let loser = self.resolve(ty, loser);
        if primary == loser {
            return Err(ApiErr::new(
                400,
                "VALIDATION_ERROR",
                "Cannot merge an object with itself",
            ));
        }
        let (Some(p), Some(l)) = (
            self.live(ty, primary).cloned(),
            self.live(ty, loser).cloned(),
        ) else {
            return Err(ApiErr::not_found(&format!("{primary}, {loser}")));
        };
        self.index_drop(ty, primary);
        self.index_drop(ty, loser);
        let t = self.types.get_mut(ty).expect("type checked");
        let mut merged = p.clone();
        for (k, v) in &l.props {
            if k == "email" && merged.props.get("email").is_some_and(|e| e != v) {
                let add = merged
                    .props
                    .entry("hs_additional_emails".into())
                    .or_default();
                if !add.is_empty() {
                    add.push(';');
                }
                add.push_str(v);
                continue;
            }
            merged.props.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut ids: Vec<String> = merged
            .props
            .get("hs_merged_object_ids")
            .map(|s| s.split(';').map(str::to_string).collect())
            .unwrap_or_default();
        ids.push(loser.to_string());
        if let Some(more) = l.props.get("hs_merged_object_ids") {
            ids.extend(more.split(';').map(str::to_string));
        }
        ids.retain(|s| !s.is_empty());
        if ids.len() > 250 {
            return Err(ApiErr::new(
                414,
                "VALIDATION_ERROR",
                "The primary object has reached its merge limit",
            ));
        }
        merged
            .props
            .insert("hs_merged_object_ids".into(), ids.join(";"));
        merged.updated = now.max(merged.updated + 1);
        stamp(t, &mut merged, false);
        t.records.insert(primary, merged);
        t.records.remove(&loser);
        self.merged
            .entry(ty.to_string())
            .or_default()
            .insert(loser, primary);
        self.index_put(ty, primary);
        // Move associations.
        let keys: Vec<AssocKey> = self
            .assoc
            .keys()
            .filter(|(f, id, _)| f == ty && *id == loser)
            .cloned()
            .collect();
        for key in keys {
            let edges = self.assoc.remove(&key).unwrap_or_default();
            for (to, types) in edges {
                for (cat, tid) in types {
                    self.unlink(&key.2, to, ty, loser);
                    self.link(ty, primary, &key.2, to, &cat, tid);
                }
            }
        }
        self.note(
            ty,
            primary,
            ChangeKind::Merge {
                primary,
                merged: vec![loser],
            },
            now,
        );
        self.note(ty, loser, ChangeKind::Deletion, now);
        Ok(primary)
    }

    /// Adds an association (both directions). A primary label replaces the
    /// record's previous primary of that type.
    pub fn link(
        &mut self,
        from: &str,
        from_id: u64,
        to: &str,
        to_id: u64,
        category: &str,
        type_id: u32,
    ) {
        let (_, primary) = assoc_types(from, to);
        if primary == Some(type_id) {
            let key = (from.to_string(), from_id, to.to_string());
            let olds: Vec<u64> = self
                .assoc
                .get(&key)
                .map(|m| {
                    m.iter()
                        .filter(|(id, t)| **id != to_id && t.iter().any(|(_, x)| *x == type_id))
                        .map(|(id, _)| *id)
                        .collect()
                })
                .unwrap_or_default();
            let rev = reverse_type(from, to, type_id);
            for old in olds {
                if let Some(m) = self.assoc.get_mut(&key).and_then(|m| m.get_mut(&old)) {
                    m.retain(|(_, x)| *x != type_id);
                }
                if let Some(m) = self
                    .assoc
                    .get_mut(&(to.to_string(), old, from.to_string()))
                    .and_then(|m| m.get_mut(&from_id))
                {
                    m.retain(|(_, x)| *x != rev);
                }
            }
        }
        let (unlabeled, _) = assoc_types(from, to);
        let mut types = vec![(category.to_string(), type_id)];
        if unlabeled != 0 && type_id != unlabeled && category == "HUBSPOT_DEFINED" {
            types.push(("HUBSPOT_DEFINED".to_string(), unlabeled));
        }
        let mut added = false;
        for (cat, tid) in types {
            added |= self
                .assoc
                .entry((from.to_string(), from_id, to.to_string()))
                .or_default()
                .entry(to_id)
                .or_default()
                .insert((cat.clone(), tid));
            self.assoc
                .entry((to.to_string(), to_id, from.to_string()))
                .or_default()
                .entry(from_id)
                .or_default()
                .insert((cat, reverse_type(from, to, tid)));
        }
        if added {
            self.note(
                from,
                from_id,
                ChangeKind::Association {
                    to_type: to.to_string(),
                    to_id,
                    removed: false,
                },
                now_ms(),
            );
        }
    }

    /// Removes every association between two records.
    pub fn unlink(&mut self, from: &str, from_id: u64, to: &str, to_id: u64) -> bool {
        let a = self
            .assoc
            .get_mut(&(from.to_string(), from_id, to.to_string()))
            .and_then(|m| m.remove(&to_id))
            .is_some();
        self.assoc
            .get_mut(&(to.to_string(), to_id, from.to_string()))
            .and_then(|m| m.remove(&from_id));
        if a {
            self.note(
                from,
                from_id,
                ChangeKind::Association {
                    to_type: to.to_string(),
                    to_id,
                    removed: true,
                },
                now_ms(),
            );
        }
        a
    }

    /// Associations of one record to one type: live targets only.
    pub fn edges(&self, from: &str, from_id: u64, to: &str) -> Vec<(u64, Vec<(String, u32)>)> {
        self.assoc
            .get(&(from.to_string(), from_id, to.to_string()))
            .map(|m| {
                m.iter()
                    .filter(|(id, t)| !t.is_empty() && self.live(to, **id).is_some())
                    .map(|(id, t)| (*id, t.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a custom object type.
    pub fn add_custom(
        &mut self,
        name: &str,
        singular: &str,
        plural: &str,
        display: &str,
        required: Vec<String>,
        props: Vec<PropDef>,
    ) -> Result<&TypeDef, ApiErr> {
        if self.types.values().any(|t| t.name == name) {
            return Err(ApiErr::new(
                409,
                "CONFLICT",
                format!("Object type {name} already exists"),
            ));
        }
        self.custom_seq += 1;
        let type_id = format!("2-{}", 1_000_000 + self.custom_seq);
        let mut all = props;
        for p in &mut all {
            p.hubspot_defined = false;
        }
        all.extend(system_props("hs_createdate", "hs_lastmodifieddate"));
        let def = TypeDef {
            name: name.to_string(),
            singular: singular.to_string(),
            type_id,
            fqn: format!("p{}_{name}", self.portal_id),
            props: all,
            records: BTreeMap::new(),
            lastmod: "hs_lastmodifieddate".into(),
            createdate: "hs_createdate".into(),
            defaults: vec![display.to_string()],
            required: required.into_iter().map(|r| vec![r]).collect(),
            primary_display: display.to_string(),
            custom: true,
            labels: (singular.to_string(), plural.to_string()),
        };
        self.types.insert(name.to_string(), def);
        Ok(&self.types[name])
    }

    /// A record as the API answers it.
    pub fn render(&self, ty: &str, rec: &Rec, wanted: &Wanted) -> J {
        let t = &self.types[ty];
        let mut props = serde_json::Map::new();
        let mut put = |k: &str| {
            props.insert(
                k.to_string(),
                rec.props
                    .get(k)
                    .map(|v| J::String(v.clone()))
                    .unwrap_or(J::Null),
            );
        };
        match wanted {
            Wanted::Defaults => {
                for k in &t.defaults {
                    put(k);
                }
            }
            Wanted::Search => {
                for k in search_defaults(ty, t) {
                    put(&k);
                }
            }
            Wanted::These(list) => {
                for k in list {
                    if t.prop(k).is_some() {
                        put(k);
                    }
                }
            }
            Wanted::Set => {
                for k in rec.props.keys() {
                    put(k);
                }
            }
        }
        for k in t.always() {
            put(k);
        }
        let mut o = json!({
            "id": rec.id.to_string(),
            "properties": props,
            "createdAt": iso(rec.created),
            "updatedAt": iso(rec.updated),
            "archived": rec.archived_at.is_some(),
        });
        if let Some(a) = rec.archived_at {
            o["archivedAt"] = J::String(iso(a));
        }
        o
    }
}

fn search_defaults(ty: &str, t: &TypeDef) -> Vec<String> {
    if ty == "contacts" {
        [
            "createdate",
            "email",
            "firstname",
            "lastname",
            "hs_object_id",
            "lastmodifieddate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        let mut v = t.defaults.clone();
        v.extend([
            t.createdate.clone(),
            "hs_lastmodifieddate".into(),
            "hs_object_id".into(),
        ]);
        v
    }
}

/// Which properties an answer carries.
pub enum Wanted {
    Defaults,
    Search,
    These(Vec<String>),
    /// What was just written (batch answers).
    Set,
}

impl Wanted {
    pub fn from_list(list: Option<&str>) -> Wanted {
        match list.map(str::trim).filter(|s| !s.is_empty()) {
            Some(l) => Wanted::These(l.split(',').map(|s| s.trim().to_string()).collect()),
            None => Wanted::Defaults,
        }
    }

    pub fn from_json(v: Option<&J>) -> Option<Wanted> {
        let list: Vec<String> = v?
            .as_array()?
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        (!list.is_empty()).then_some(Wanted::These(list))
    }
}

fn stamp(t: &TypeDef, rec: &mut Rec, created: bool) {
    rec.props.insert("hs_object_id".into(), rec.id.to_string());
    if created {
        rec.props.insert(t.createdate.clone(), iso(rec.created));
    }
    rec.props.insert(t.lastmod.clone(), iso(rec.updated));
}

/// A value as HubSpot stores it, or why it is refused.
fn normalise(p: &PropDef, s: &str, old: Option<&String>) -> Result<String, (&'static str, String)> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.len() > 65_536 {
        return Err((
            "INVALID_STRING_LENGTH",
            format!("{} is longer than 65536 characters", p.name),
        ));
    }
    match p.ty.as_str() {
        "number" => {
            let d: Decimal = s.trim().parse().or_else(|_| Decimal::from_scientific(s.trim())).map_err(|_| {
                ("INVALID_DECIMAL", format!("{s} was not a valid number."))
            })?;
            Ok(d.normalize().to_string())
        }
        "bool" => match s.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(("INVALID_BOOLEAN", format!("{s} was not a valid boolean. Expected true or false."))),
        },
        "date" => parse_date_value(s)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .ok_or(("INVALID_DATE", format!("{s} was not a valid date. Use YYYY-MM-DD or epoch milliseconds at midnight UTC."))),
        "datetime" => parse_datetime_value(s)
            .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
            .ok_or(("INVALID_DATETIME", format!("{s} was not a valid datetime. Use ISO 8601 or epoch milliseconds."))),
        "enumeration" => {
            let multi = p.field_type == "checkbox";
            let (append, list) = match s.strip_prefix(';') {
                Some(rest) if multi => (true, rest),
                _ => (false, s),
            };
            let mut values: Vec<String> = if multi {
                list.split(';').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
            } else {
                vec![list.to_string()]
            };
            if !p.options.is_empty() {
                for v in &values {
                    if !p.options.iter().any(|(_, o)| o == v) {
                        let allowed: Vec<&str> = p.options.iter().map(|(_, o)| o.as_str()).collect();
                        return Err(("INVALID_OPTION", format!("{v} was not one of the allowed options: [{}]", allowed.join(", "))));
                    }
                }
            }
            if append {
                let mut all: Vec<String> = old.map(|o| o.split(';').map(str::to_string).collect()).unwrap_or_default();
                for v in values {
                    if !all.contains(&v) {
                        all.push(v);
                    }
                }
                values = all;
            }
            Ok(values.join(";"))
        }
        _ if p.name == "email" => {
            let e = s.trim().to_lowercase();
            let ok = e.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !e.contains(char::is_whitespace) && e.matches('@').count() == 1
            });
            if ok {
                Ok(e)
            } else {
                Err(("INVALID_EMAIL", format!("Email address {s} is invalid")))
            }
        }
        _ => Ok(s.to_string()),
    }
}

fn parse_epoch(s: &str) -> Option<DateTime<Utc>> {
    let ms: i64 = s.trim().parse().ok()?;
    Utc.timestamp_millis_opt(ms).single()
}

pub fn parse_date_value(s: &str) -> Option<NaiveDate> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Some(d);
    }
    let dt = parse_epoch(s)?;
    (dt.timestamp_millis() % 86_400_000 == 0).then(|| dt.date_naive())
}

pub fn parse_datetime_value(s: &str) -> Option<DateTime<Utc>> {
    parse_epoch(s)
        .or_else(|| {
            DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|d| d.with_timezone(&Utc))
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> serde_json::Map<String, J> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), J::String(v.to_string())))
            .collect()
    }

    #[test]
    fn contacts_are_unique_by_email_case_insensitively() {
        let mut s = Store::new(1);
        let id = s
            .create("contacts", &props(&[("email", "Ann@Example.com")]), 1)
            .unwrap();
        assert_eq!(
            s.live("contacts", id).unwrap().props["email"],
            "ann@example.com"
        );
        let e = s
            .create("contacts", &props(&[("email", "ann@example.com")]), 2)
            .unwrap_err();
        assert_eq!(e.status, 409);
        assert_eq!(
            e.message,
            format!("Contact already exists. Existing ID: {id}")
        );
    }

    #[test]
    fn bad_values_are_refused_with_hubspot_codes() {
        let s = Store::new(1);
        for (field, value, code) in [
            ("email", "not-an-email", "INVALID_EMAIL"),
            ("lifecyclestage", "king", "INVALID_OPTION"),
            ("num_employees", "ten", "INVALID_DECIMAL"),
            ("date_of_birth", "31/12/1990", "INVALID_DATE"),
            ("nope", "x", "PROPERTY_DOESNT_EXIST"),
            ("lastmodifieddate", "2024-01-01", "READ_ONLY_VALUE"),
        ] {
            let e = s
                .check_props("contacts", &props(&[(field, value)]), None)
                .unwrap_err();
            assert_eq!(e.details[0].0, code, "{field}={value}");
            assert_eq!(e.category, "VALIDATION_ERROR");
        }
    }

    #[test]
    fn primary_company_replaces_the_previous_primary() {
        let mut s = Store::new(1);
        let c = s
            .create("contacts", &props(&[("email", "a@b.co")]), 1)
            .unwrap();
        let x = s.create("companies", &props(&[("name", "X")]), 1).unwrap();
        let y = s.create("companies", &props(&[("name", "Y")]), 1).unwrap();
        s.link("contacts", c, "companies", x, "HUBSPOT_DEFINED", 1);
        s.link("contacts", c, "companies", y, "HUBSPOT_DEFINED", 1);
        let edges = s.edges("contacts", c, "companies");
        let primary: Vec<u64> = edges
            .iter()
            .filter(|(_, t)| t.iter().any(|(_, id)| *id == 1))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(primary, vec![y]);
        assert_eq!(
            edges.len(),
            2,
            "the old primary stays associated, unlabeled"
        );
    }

    #[test]
    fn a_merge_keeps_the_primary_and_redirects_the_loser() {
        let mut s = Store::new(1);
        let a = s
            .create("contacts", &props(&[("email", "a@b.co")]), 1)
            .unwrap();
        let b = s
            .create(
                "contacts",
                &props(&[("email", "b@b.co"), ("phone", "+1 555")]),
                1,
            )
            .unwrap();
        s.merge("contacts", a, b, 5).unwrap();
        let r = s.live("contacts", b).unwrap();
        assert_eq!(r.id, a);
        assert_eq!(r.props["hs_merged_object_ids"], b.to_string());
        assert_eq!(r.props["phone"], "+1 555");
        assert_eq!(s.by_unique("contacts", "email", "b@b.co").unwrap(), Some(a));
    }
}
