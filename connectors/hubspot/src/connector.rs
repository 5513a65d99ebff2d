//! The `hubspot` connector: the `Connector` and `Object` impls that tie
//! the roles together. `client` talks to HubSpot, `schema` maps its
//! properties, `read` and `write` move records, `push` takes webhooks.

use std::sync::Arc;

use async_trait::async_trait;
use puente_core::{
    Capabilities, ChangeDetection, Connector, ConnectorError, Cursor, ErrorKind, Object,
    ObjectSchema, ObjectSpec, Page, Record, Value, WriteOp, WriteOutcome,
};
use reqwest::Method;

use crate::client::{message, Client};
use crate::config::Settings;
use crate::push::Inbox;
use crate::schema::{company_link, schema_of, COMPANY_FIELD};

/// A HubSpot account (one app's credentials).
pub struct HubSpotConnector {
    client: Arc<Client>,
    /// What webhooks said changed, read on the next run.
    inbox: Arc<Inbox>,
}

impl HubSpotConnector {
    pub fn new(settings: Settings) -> HubSpotConnector {
        HubSpotConnector {
            client: Arc::new(Client::new(settings)),
            inbox: Arc::default(),
        }
    }

    /// Requests sent, 429s met and retries made so far.
    pub fn stats(&self) -> puente_http::StatsSnapshot {
        self.client.stats()
    }
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
        // Only what the sync uses (and the last-modified time, for the
        // cursor): every other property would be sent, parsed and dropped.
        let mut props: Vec<String> = schema
            .fields
            .iter()
            .filter(|f| f.name != COMPANY_FIELD)
            .filter(|f| {
                f.name == lastmod || spec.reads.as_ref().is_none_or(|r| r.contains(&f.name))
            })
            .map(|f| f.name.clone())
            .collect();
        props.sort();
        Ok(Arc::new(HubSpotObject {
            client: self.client.clone(),
            inbox: self.inbox.clone(),
            // The primary company, when the sync uses it.
            company_type: company_link(&object).filter(|_| {
                schema.field(COMPANY_FIELD).is_some()
                    && spec
                        .reads
                        .as_ref()
                        .is_none_or(|r| r.contains(COMPANY_FIELD))
            }),
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
        self.inbox
            .accept(self.client.settings.webhook_secret.as_deref(), push)
    }
}

/// One HubSpot object type (contacts, deals, a custom object…).
pub struct HubSpotObject {
    pub(crate) client: Arc<Client>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) object: String,
    pub(crate) schema: ObjectSchema,
    pub(crate) lastmod: String,
    /// Properties asked for on every read (those the sync uses), sorted.
    pub(crate) properties: Vec<String>,
    /// The primary-company association type id, when the field is mapped.
    pub(crate) company_type: Option<u32>,
    pub(crate) overlap_ms: i64,
    pub(crate) page_records: usize,
    pub(crate) reconcile_ms: i64,
    pub(crate) search_cap: usize,
}

impl HubSpotObject {
    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/crm/v3/objects/{}{rest}", self.object)
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
        self.read_page(since, page).await
    }

    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        self.read_ids(ids).await
    }

    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError> {
        self.list_all_ids().await
    }

    fn merged_ids(&self, record: &Record) -> Vec<String> {
        self.merged_ids_of(record)
    }

    async fn resolve_merged(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        self.resolve_merged_ids(ids).await
    }

    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError> {
        self.find_matching(conditions).await
    }

    /// HubSpot's search compares text without regard to case, and the
    /// values are sent trimmed.
    fn folds_case(&self, _field: &str) -> bool {
        true
    }

    async fn find_any(&self, field: &str, values: &[Value]) -> Result<Vec<Record>, ConnectorError> {
        self.find_any_of(field, values).await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        self.write_ops(ops).await
    }
}
