//! Generic JSON webhooks as a source: a PBX posting calls, a web form posting
//! leads, a shop posting orders. `POST /webhooks/{connection}?object=calls`
//! with a JSON object, an array of objects, or `{"events": [...]}`.
//!
//! The sender proves itself before anything is parsed: with a shared token
//! (`Authorization: Bearer …` or `X-Puente-Token`), or with an HMAC-SHA256
//! of the body in a header the config names (hex, optionally `sha256=`).
//! Both are compared in constant time.
//!
//! An accepted delivery is appended to the object's inbox file
//! (`DIR/OBJECT.jsonl`) and flushed to disk before the sender gets its 200,
//! so nothing acknowledged is lost to a crash. Syncs read the inbox like a
//! table: the endpoint's `key` names the field that identifies a record, the
//! latest event of a key wins, and the cursor is the byte offset read up to.
//! Replays are harmless: the same event again changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use puente_core::{
    Capabilities, ChangeDetection, Connector, ConnectorError, Cursor, ErrorKind, FieldSchema,
    FieldType, Object, ObjectSchema, ObjectSpec, Page, Push, Record, Value, WriteOp, WriteOutcome,
};
use serde_json::Value as J;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

pub mod config;

pub use config::{WebhookConfig, KIND};

/// The most events one delivery may carry.
pub const MAX_EVENTS: usize = 1_000;

/// How a sender proves itself.
#[derive(Clone)]
pub struct WebhookAuth {
    /// The shared token, or the HMAC key when `signature_header` is set.
    pub secret: String,
    /// Header holding the body's HMAC-SHA256 (hex); `None`: a bearer token.
    pub signature_header: Option<String>,
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        f.debug_struct("WebhookAuth")
            .field("secret", &"***")
            .field("signature_header", &self.signature_header)
            .finish()
    }
}

pub struct WebhookConnector {
    dir: PathBuf,
    auth: WebhookAuth,
    /// One writer per inbox file at a time.
    append: Mutex<()>,
    /// Per object: the fields its events carry, and how far the inbox was
    /// scanned for them (each open scans only what came since).
    fields: Mutex<HashMap<String, Discovered>>,
}

/// How far an inbox was scanned, and the fields found in it.
type Discovered = (u64, BTreeMap<String, FieldType>);

impl WebhookConnector {
    pub fn new(dir: impl Into<PathBuf>, auth: WebhookAuth) -> WebhookConnector {
        WebhookConnector {
            dir: dir.into(),
            auth,
            append: Mutex::new(()),
            fields: Mutex::new(HashMap::new()),
        }
    }

    fn verify(&self, push: &Push) -> Result<(), ConnectorError> {
        let refused = |why: &str| {
            ConnectorError::new(ErrorKind::Auth, format!("webhook refused: {why}"))
                .with_hint("the sender must send the connection's token (or sign the body with it)")
        };
        match &self.auth.signature_header {
            Some(h) => {
                let given = push
                    .header(h)
                    .ok_or_else(|| refused(&format!("no {h} header")))?;
                let given = given.trim();
                let hex = given.strip_prefix("sha256=").unwrap_or(given);
                let bytes = hex::decode(hex).map_err(|_| refused("the signature is not hex"))?;
                let mut mac = Hmac::<Sha256>::new_from_slice(self.auth.secret.as_bytes())
                    .expect("HMAC takes any key length");
                mac.update(&push.body);
                // verify_slice compares in constant time.
                mac.verify_slice(&bytes)
                    .map_err(|_| refused("the signature does not match the body"))
            }
            None => {
                let given = push
                    .header("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .or_else(|| push.header("x-puente-token"))
                    .ok_or_else(|| refused("no token"))?;
                if puente_core::secret_eq(given.trim(), &self.auth.secret) {
                    Ok(())
                } else {
                    Err(refused("wrong token"))
                }
            }
        }
    }

    fn inbox(&self, object: &str) -> PathBuf {
        self.dir.join(format!("{object}.jsonl"))
    }
}

/// The object a delivery is for: `?object=NAME`, else `events`.
fn object_of(uri: &str) -> Result<String, ConnectorError> {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let name = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "object")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "events".to_string());
    checked_object(name)
}

/// An object name, which names a file: letters, digits, `-` and `_`.
fn checked_object(name: String) -> Result<String, ConnectorError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConnectorError::config(format!(
            "webhook object {name:?}: use letters, digits, - and _ only"
        )));
    }
    Ok(name)
}

/// The events of a verified body: an object, an array of objects, or
/// `{"events": [...]}`.
pub fn parse_events(body: &[u8]) -> Result<Vec<serde_json::Map<String, J>>, String> {
    let v: J = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = match v {
        J::Array(a) => a,
        J::Object(mut o) => match o.remove("events") {
            Some(J::Array(a)) if o.is_empty() => a,
            Some(other) => {
                o.insert("events".into(), other);
                vec![J::Object(o)]
            }
            None => vec![J::Object(o)],
        },
        _ => return Err("expected a JSON object or an array of objects".into()),
    };
    if list.len() > MAX_EVENTS {
        return Err(format!(
            "{} events in one delivery; at most {MAX_EVENTS}",
            list.len()
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            J::Object(o) => Ok(o),
            _ => Err(format!("event {} is not a JSON object", i + 1)),
        })
        .collect()
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| {
            ConnectorError::config(format!(
                "cannot create the inbox folder {}: {e}",
                self.dir.display()
            ))
            .with_hint("fix `dir` of the connection, or the folder's permissions")
        })
    }

    async fn open(&self, spec: &ObjectSpec) -> Result<Arc<dyn Object>, ConnectorError> {
        let key = spec.key.clone().ok_or_else(|| {
            ConnectorError::config(format!(
                "webhook object {}: no key; set key = \"FIELD\" on the endpoint (the field that identifies a record, e.g. call_id)",
                spec.object
            ))
        })?;
        let name = checked_object(spec.object.clone())?;
        let path = self.inbox(&name);
        // Fields seen so far, typed by their first non-null value.
        let mut known = self.fields.lock().await;
        let (scanned, fields) = known.entry(name.clone()).or_default();
        for s in events(&path, *scanned).await? {
            for (k, v) in &s.event {
                if !v.is_null() && !fields.contains_key(k) {
                    fields.insert(k.clone(), type_of(v));
                }
            }
            *scanned = s.end;
        }
        let mut fields = fields.clone();
        drop(known);
        fields.entry(key.clone()).or_insert_with(FieldType::text);
        Ok(Arc::new(Inbox {
            schema: ObjectSchema {
                absent: false,
                name: name.clone(),
                id_field: key.clone(),
                fields: fields
                    .into_iter()
                    .map(|(n, ty)| FieldSchema::new(&n, ty))
                    .collect(),
                open: true,
            },
            path,
            name,
            key,
            page_size: spec.page_size.max(1),
        }))
    }

    async fn accept_push(&self, push: &Push) -> Result<usize, ConnectorError> {
        self.verify(push)?;
        let object = object_of(&push.uri)?;
        let events = parse_events(&push.body)
            .map_err(|e| ConnectorError::new(ErrorKind::Config, format!("webhook body: {e}")))?;
        let received = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut lines = String::new();
        for e in &events {
            let line = serde_json::json!({ "received_at": received, "event": e });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        // The folder exists: `check` made it when the connection opened.
        let _one = self.append.lock().await;
        let path = self.inbox(&object);
        let io = |e: std::io::Error| {
            ConnectorError::new(
                ErrorKind::Internal,
                format!("cannot keep the delivery in {}: {e}", path.display()),
            )
            .with_hint("the sender should retry; check the disk and the folder's permissions")
        };
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io)?;
        f.write_all(lines.as_bytes()).await.map_err(io)?;
        // On disk before the sender hears "accepted".
        f.sync_data().await.map_err(io)?;
        Ok(events.len())
    }
}

/// One object's inbox file.
struct Inbox {
    path: PathBuf,
    name: String,
    key: String,
    page_size: usize,
    schema: ObjectSchema,
}

/// One stored event: where it ends in the file, when it came, its fields.
struct Stored {
    end: u64,
    received: Option<DateTime<Utc>>,
    event: serde_json::Map<String, J>,
}

/// The events an inbox file holds from byte `from` on (none if the file
/// does not exist yet). Only that part of the file is read.
async fn events(path: &std::path::Path, from: u64) -> Result<Vec<Stored>, ConnectorError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let failed = |e: std::io::Error| {
        ConnectorError::new(
            ErrorKind::Internal,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(e)),
    };
    f.seek(std::io::SeekFrom::Start(from))
        .await
        .map_err(failed)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).await.map_err(failed)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // A line still being appended (no newline yet) is left for later.
        let Some(nl) = bytes[at..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let line = &bytes[at..at + nl];
        at += nl + 1;
        let end = from + at as u64;
        let Ok(J::Object(mut v)) = serde_json::from_slice::<J>(line) else {
            tracing::warn!(
                file = %path.display(),
                byte = end,
                "an inbox line is not JSON; skipped"
            );
            continue;
        };
        let received = v
            .get("received_at")
            .and_then(J::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        if let Some(J::Object(event)) = v.remove("event") {
            out.push(Stored {
                end,
                received,
                event,
            });
        }
    }
    Ok(out)
}

impl Inbox {
    async fn events(&self, from: u64) -> Result<Vec<Stored>, ConnectorError> {
        events(&self.path, from).await
    }

    /// The key an event carries, if it has one.
    fn key_of(&self, s: &Stored) -> Option<String> {
        s.event
            .get(&self.key)
            .map(value_of)
            .and_then(|v| v.to_text())
            .filter(|id| !id.is_empty())
    }

    /// The latest event of each key among `events`, in the order keys last
    /// appeared.
    fn records(&self, events: Vec<Stored>) -> Vec<Record> {
        let mut latest: HashMap<String, (usize, Record)> = HashMap::new();
        let mut keyless = Vec::new();
        for (i, s) in events.into_iter().enumerate() {
            let mut r = Record::new(String::new());
            r.modified_at = s.received;
            for (k, v) in &s.event {
                r.fields.insert(k.clone(), value_of(v));
            }
            match self.key_of(&s) {
                Some(id) => {
                    r.id = id.clone();
                    latest.insert(id, (i, r));
                }
                _ => {
                    // Named, so the record fails saying which field is missing.
                    r.id = format!("event-ending-at-byte-{}", s.end);
                    r.unreadable.insert(
                        self.key.clone(),
                        format!(
                            "the event has no {} (its key); the sender must include it",
                            self.key
                        ),
                    );
                    keyless.push((i, r));
                }
            }
        }
        let mut all: Vec<(usize, Record)> = latest.into_values().chain(keyless).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    }
}

fn type_of(v: &J) -> FieldType {
    match v {
        J::Bool(_) => FieldType::Boolean,
        J::Number(n) if n.is_i64() || n.is_u64() => FieldType::Integer,
        J::Number(_) => FieldType::Decimal { scale: None },
        _ => FieldType::text(),
    }
}

fn value_of(v: &J) -> Value {
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n
                .to_string()
                .parse::<rust_decimal::Decimal>()
                .map(Value::decimal)
                .unwrap_or_else(|_| Value::text(n.to_string())),
        },
        J::String(s) => Value::text(s.clone()),
        other => Value::text(other.to_string()),
    }
}

#[async_trait]
impl Object for Inbox {
    fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: 1,
            change_detection: ChangeDetection::Push,
            delete_detection_by_key_diff: false,
            rate_limit_per_sec: None,
            writable: false,
        }
    }

    /// Events from the cursor (a byte offset) on; pages are byte offsets too.
    /// A key with events past the page is left to the page that holds its
    /// latest one, so a read returns each record once, as it is now.
    async fn read(
        &self,
        since: Option<&Cursor>,
        page: Option<String>,
    ) -> Result<Page, ConnectorError> {
        let from = match page {
            Some(p) => p.parse::<u64>().unwrap_or(0),
            None => since.and_then(|c| c.0.as_u64()).unwrap_or(0),
        };
        let mut events = self.events(from).await?;
        let mut later = HashSet::new();
        let next = (events.len() > self.page_size).then(|| {
            later = events
                .split_off(self.page_size)
                .iter()
                .filter_map(|s| self.key_of(s))
                .collect();
            events.last().map(|e| e.end.to_string()).unwrap_or_default()
        });
        let end = events.last().map(|e| e.end).unwrap_or(from);
        let mut records = self.records(events);
        records.retain(|r| !later.contains(&r.id));
        Ok(Page {
            records,
            cursor: next.is_none().then(|| Cursor(J::from(end))),
            next,
        })
    }

    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let want: HashSet<&String> = ids.iter().collect();
        Ok(self
            .records(self.events(0).await?)
            .into_iter()
            .filter(|r| want.contains(&r.id))
            .collect())
    }

    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(self
            .records(self.events(0).await?)
            .into_iter()
            .filter(|r| r.unreadable.is_empty())
            .map(|r| r.id)
            .collect())
    }

    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError> {
        Ok(self
            .records(self.events(0).await?)
            .into_iter()
            .filter(|r| conditions.iter().all(|(f, v)| r.get(f) == v))
            .collect())
    }

    async fn write(&self, _ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        Err(ConnectorError::config(format!(
            "webhook object {} is read-only: make it the source of a one-way sync (direction = \"a-to-b\" with it as a)",
            self.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(uri: &str, headers: &[(&str, &str)], body: &str) -> Push {
        Push {
            method: "POST".into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn spec(object: &str, key: &str) -> ObjectSpec {
        ObjectSpec {
            object: object.into(),
            cursor: None,
            query: None,
            key: Some(key.into()),
            overlap_secs: 0,
            page_size: 2,
            options: BTreeMap::new(),
            writes: false,
            reads: None,
        }
    }

    fn sign(secret: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[tokio::test]
    async fn tokens_and_signatures_are_checked_before_the_body_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = WebhookConnector::new(
            dir.path(),
            WebhookAuth {
                secret: "pbx-secret".into(),
                signature_header: None,
            },
        );
        let uri = "http://h/webhooks/pbx?object=calls";
        // Not JSON, but refused for its token first.
        for h in [vec![], vec![("authorization", "Bearer nope")]] {
            let e = c.accept_push(&push(uri, &h, "{{{")).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        }
        let ok = [("authorization", "Bearer pbx-secret")];
        let e = c.accept_push(&push(uri, &ok, "{{{")).await.unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        assert_eq!(
            c.accept_push(&push(
                uri,
                &ok,
                r#"{"call_id": "c1", "from": "+4930901820"}"#
            ))
            .await
            .unwrap(),
            1
        );

        let signed = WebhookConnector::new(
            dir.path(),
            WebhookAuth {
                secret: "form-key".into(),
                signature_header: Some("x-signature".into()),
            },
        );
        let body = r#"[{"lead_id": 7, "email": "a@example.com"}]"#;
        let good = format!("sha256={}", sign("form-key", body));
        let uri = "http://h/webhooks/forms?object=leads";
        assert_eq!(
            signed
                .accept_push(&push(uri, &[("x-signature", &good)], body))
                .await
                .unwrap(),
            1
        );
        let tampered = body.replace('7', "8");
        let e = signed
            .accept_push(&push(uri, &[("x-signature", &good)], &tampered))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(!format!("{e:?} {:?}", signed.auth).contains("form-key"));
    }

    #[tokio::test]
    async fn the_inbox_reads_like_a_table_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let c = WebhookConnector::new(
            dir.path(),
            WebhookAuth {
                secret: "t".into(),
                signature_header: None,
            },
        );
        let h = [("x-puente-token", "t")];
        let uri = "http://h/webhooks/pbx?object=calls";
        c.accept_push(&push(
            uri,
            &h,
            r#"{"events": [{"call_id": "c1", "secs": 10}, {"call_id": "c2", "secs": 1.5}, {"secs": 3}]}"#,
        ))
        .await
        .unwrap();
        let o = c.open(&spec("calls", "call_id")).await.unwrap();
        let s = o.schema();
        assert_eq!(s.field("secs").unwrap().ty, FieldType::Integer);
        assert!(s.open);
        // Pages of two events, then the cursor.
        let p1 = o.read(None, None).await.unwrap();
        assert_eq!(p1.records.len(), 2);
        assert!(p1.cursor.is_none());
        let p2 = o.read(None, p1.next).await.unwrap();
        assert_eq!(p2.records.len(), 1);
        let keyless = &p2.records[0];
        assert!(keyless.unreadable["call_id"].contains("has no call_id"));
        let cursor = p2.cursor.unwrap();
        // Nothing new: nothing read. A later event of c1 wins over the first.
        assert!(o
            .read(Some(&cursor), None)
            .await
            .unwrap()
            .records
            .is_empty());
        c.accept_push(&push(uri, &h, r#"{"call_id": "c1", "secs": 12}"#))
            .await
            .unwrap();
        let p = o.read(Some(&cursor), None).await.unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].get("secs"), &Value::Int(12));
        assert_eq!(o.list_ids().await.unwrap().len(), 2);
        let c1 = o.read_by_ids(&["c1".into()]).await.unwrap();
        assert_eq!(c1[0].get("secs"), &Value::Int(12));
        // Read-only, with the fix in the message.
        let e = o.write(vec![]).await.unwrap_err();
        assert!(e.to_string().contains("a-to-b"), "{e}");
    }
}
