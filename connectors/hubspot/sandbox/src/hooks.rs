//! Webhooks: settings and subscriptions through HubSpot's webhooks v3 API,
//! and HubSpot's events: JSON arrays of up to 100, each event carrying its
//! `attemptNumber`, signed with the app secret (the v3 HMAC and the v1
//! hash). The kit delivers them: batches, retries with backoff on any
//! failure, a 4xx/5xx or an answer slower than 5 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use puente_sandbox_kit::{Counters, Deliveries, Delivery, DeliveryOptions};
use serde_json::{json, Value as J};
use sha2::{Digest, Sha256};

use super::api::{parse_body, result};
use super::store::{iso, now_ms, ApiErr, Change, ChangeKind, Ms};
use super::{empty, error_reply, reply, Error, Sandbox, SandboxOptions};

#[derive(Clone, Debug)]
struct Sub {
    id: u64,
    event_type: String,
    property: Option<String>,
    active: bool,
    created: Ms,
}

impl Sub {
    fn json(&self) -> J {
        let mut o = json!({"id": self.id.to_string(), "eventType": self.event_type, "active": self.active, "createdAt": iso(self.created), "updatedAt": iso(self.created)});
        if let Some(p) = &self.property {
            o["propertyName"] = J::String(p.clone());
        }
        o
    }
}

#[derive(Default)]
struct State_ {
    target: Option<String>,
    max_concurrent: u32,
    subs: Vec<Sub>,
    next_sub: u64,
    next_event: u64,
    created: Ms,
}

/// The app's webhooks: one subscriber, the app's target URL.
const APP: &str = "app";

pub struct Hooks {
    state: Arc<Mutex<State_>>,
    deliveries: Deliveries,
    portal_id: u64,
    app_id: u64,
}

impl Hooks {
    pub fn new(opts: &SandboxOptions, counters: Arc<Counters>) -> Result<Hooks, Error> {
        let state = Arc::new(Mutex::new(State_ {
            max_concurrent: 10,
            next_sub: 100,
            next_event: 1,
            ..State_::default()
        }));
        let deliveries = Deliveries::new(
            Signed {
                state: state.clone(),
                secret: opts.client_secret.clone(),
            },
            DeliveryOptions {
                retry_base: opts.webhook_retry_base,
                max_retries: opts.webhook_max_retries,
                ..DeliveryOptions::default()
            },
            counters,
        )?;
        Ok(Hooks {
            state,
            deliveries,
            portal_id: opts.portal_id,
            app_id: opts.app_id,
        })
    }

    /// Starts delivering (once; `serve` and the settings API call it).
    pub fn start(&self) {
        self.deliveries.start();
    }

    /// Turns store changes into events for the active subscriptions.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut st = self.state.lock().expect("hooks");
        if st.target.is_none() || st.subs.is_empty() {
            return;
        }
        for c in changes {
            let (kind, prop) = match &c.kind {
                ChangeKind::Creation => ("creation", None),
                ChangeKind::Property(p, v) => ("propertyChange", Some((p.clone(), v.clone()))),
                ChangeKind::Deletion => ("deletion", None),
                ChangeKind::Merge { .. } => ("merge", None),
                ChangeKind::Association { .. } => ("associationChange", None),
            };
            let event_type = format!("{}.{kind}", c.singular);
            let subs: Vec<Sub> = st
                .subs
                .iter()
                .filter(|s| {
                    s.active
                        && s.event_type == event_type
                        && (kind != "propertyChange"
                            || s.property.as_deref() == prop.as_ref().map(|p| p.0.as_str()))
                })
                .cloned()
                .collect();
            for s in subs {
                st.next_event += 1;
                let mut e = json!({
                    "eventId": st.next_event,
                    "subscriptionId": s.id,
                    "portalId": self.portal_id,
                    "appId": self.app_id,
                    "occurredAt": c.at,
                    "subscriptionType": event_type,
                    "attemptNumber": 0,
                    "objectId": c.object_id,
                    "changeSource": "API",
                });
                if let Some((p, v)) = &prop {
                    e["propertyName"] = J::String(p.clone());
                    e["propertyValue"] = J::String(v.clone());
                }
                match &c.kind {
                    ChangeKind::Merge { primary, merged } => {
                        e["primaryObjectId"] = json!(primary);
                        e["mergedObjectIds"] = json!(merged);
                    }
                    ChangeKind::Association {
                        to_type,
                        to_id,
                        removed,
                    } => {
                        e["associationType"] = J::String(format!(
                            "{}_TO_{}",
                            c.singular.to_uppercase(),
                            to_type.trim_end_matches('s').to_uppercase()
                        ));
                        e["fromObjectId"] = json!(c.object_id);
                        e["toObjectId"] = json!(to_id);
                        e["associationRemoved"] = J::Bool(*removed);
                    }
                    _ => {}
                }
                self.deliveries.enqueue(APP, e);
            }
        }
    }
}

/// The v3 signature of a delivery, as HubSpot computes it.
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: Ms) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// HubSpot's deliveries: to the app's target URL as it is now, the
/// events with their attempt number, signed v1 and v3 with the app secret.
struct Signed {
    state: Arc<Mutex<State_>>,
    secret: String,
}

impl Delivery for Signed {
    fn target(&self, _subscriber: &str) -> Option<String> {
        self.state.lock().expect("hooks").target.clone()
    }

    fn body(&self, events: &[J], attempt: u32) -> Vec<u8> {
        let events: Vec<J> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e["attemptNumber"] = json!(attempt);
                e
            })
            .collect();
        serde_json::to_vec(&events).expect("events serialise")
    }

    fn sign(&self, target: &str, body: &[u8], _attempt: u32) -> Vec<(String, String)> {
        let ts = now_ms();
        let v1 = {
            let mut h = Sha256::new();
            h.update(self.secret.as_bytes());
            h.update(body);
            format!("{:x}", h.finalize())
        };
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-hubspot-signature-version".into(), "v1".into()),
            ("x-hubspot-signature".into(), v1),
            (
                "x-hubspot-signature-v3".into(),
                sign_v3(&self.secret, "POST", target, body, ts),
            ),
            ("x-hubspot-request-timestamp".into(), ts.to_string()),
        ]
    }
}

pub fn router(sb: Arc<Sandbox>) -> Router<Arc<Sandbox>> {
    Router::new()
        .route(
            "/webhooks/v3/{app}/settings",
            get(get_settings).put(put_settings).delete(delete_settings),
        )
        .route(
            "/webhooks/v3/{app}/subscriptions",
            get(list_subs).post(create_sub),
        )
        .route(
            "/webhooks/v3/{app}/subscriptions/{id}",
            get(get_sub).patch(patch_sub).delete(delete_sub),
        )
        .route_layer(axum::middleware::from_fn_with_state(sb, allowed))
}

/// Every webhooks call: the developer key (`?hapikey=`) or a valid token,
/// and the sandbox's app id.
async fn allowed(
    State(sb): State<Arc<Sandbox>>,
    Path(params): Path<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    req: Request,
    next: Next,
) -> Response {
    let key_ok = q.as_deref().is_some_and(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .unwrap_or_default()
            .iter()
            .any(|(k, v)| k == "hapikey" && *v == sb.opts.developer_key)
    });
    if !key_ok {
        if let Err(e) = sb.authenticate(req.headers()) {
            return error_reply(&e);
        }
    }
    let app = params.get("app").map(String::as_str).unwrap_or("");
    if app != sb.opts.app_id.to_string() {
        return error_reply(&ApiErr::new(
            404,
            "OBJECT_NOT_FOUND",
            format!("app {app} does not exist"),
        ));
    }
    next.run(req).await
}

type S = State<Arc<Sandbox>>;

fn invalid(message: impl Into<String>) -> ApiErr {
    ApiErr::new(400, "VALIDATION_ERROR", message)
}

fn settings_json(st: &State_) -> J {
    json!({"targetUrl": st.target, "throttling": {"maxConcurrentRequests": st.max_concurrent, "period": "SECONDLY"}, "createdAt": iso(st.created), "updatedAt": iso(st.created)})
}

async fn get_settings(State(sb): S) -> Response {
    let st = sb.hooks.state.lock().expect("hooks");
    if st.target.is_none() {
        return error_reply(&ApiErr::new(
            404,
            "OBJECT_NOT_FOUND",
            "No settings found for this app",
        ));
    }
    reply(200, settings_json(&st))
}

async fn put_settings(State(sb): S, body: String) -> Response {
    result(parse_body(&body).and_then(|v| {
        let target = v
            .get("targetUrl")
            .and_then(J::as_str)
            .ok_or_else(|| invalid("targetUrl is required"))?;
        if !(target.starts_with("http://") || target.starts_with("https://")) {
            return Err(invalid("targetUrl must be an http(s) URL"));
        }
        sb.hooks.start();
        let mut st = sb.hooks.state.lock().expect("hooks");
        st.target = Some(target.to_string());
        st.max_concurrent = v
            .pointer("/throttling/maxConcurrentRequests")
            .and_then(J::as_u64)
            .unwrap_or(10) as u32;
        st.created = now_ms();
        Ok(reply(200, settings_json(&st)))
    }))
}

async fn delete_settings(State(sb): S) -> Response {
    sb.hooks.state.lock().expect("hooks").target = None;
    empty(204)
}

async fn list_subs(State(sb): S) -> Response {
    let st = sb.hooks.state.lock().expect("hooks");
    reply(
        200,
        json!({"results": st.subs.iter().map(Sub::json).collect::<Vec<_>>()}),
    )
}

const EVENT_OBJECTS: &[&str] = &[
    "contact",
    "company",
    "deal",
    "ticket",
    "product",
    "line_item",
];
const EVENT_KINDS: &[&str] = &[
    "creation",
    "deletion",
    "propertyChange",
    "merge",
    "restore",
    "associationChange",
    "privacyDeletion",
];

async fn create_sub(State(sb): S, body: String) -> Response {
    result(parse_body(&body).and_then(|v| {
        let event_type = v.get("eventType").and_then(J::as_str).unwrap_or("");
        let valid = event_type
            .split_once('.')
            .is_some_and(|(o, k)| EVENT_OBJECTS.contains(&o) && EVENT_KINDS.contains(&k));
        if !valid {
            return Err(invalid(format!("Unknown eventType {event_type:?}")));
        }
        let property = v
            .get("propertyName")
            .and_then(J::as_str)
            .map(str::to_string);
        if event_type.ends_with(".propertyChange") && property.is_none() {
            return Err(invalid(
                "propertyName is required for propertyChange subscriptions",
            ));
        }
        let mut st = sb.hooks.state.lock().expect("hooks");
        if st.subs.len() >= 1000 {
            return Err(invalid("An app can have at most 1000 subscriptions"));
        }
        st.next_sub += 1;
        let sub = Sub {
            id: st.next_sub,
            event_type: event_type.to_string(),
            property,
            active: v.get("active").and_then(J::as_bool).unwrap_or(false),
            created: now_ms(),
        };
        let out = sub.json();
        st.subs.push(sub);
        Ok(reply(201, out))
    }))
}

async fn get_sub(State(sb): S, Path((_, id)): Path<(String, String)>) -> Response {
    let st = sb.hooks.state.lock().expect("hooks");
    match st.subs.iter().find(|s| s.id.to_string() == id) {
        Some(s) => reply(200, s.json()),
        None => error_reply(&ApiErr::not_found(&id)),
    }
}

async fn patch_sub(State(sb): S, Path((_, id)): Path<(String, String)>, body: String) -> Response {
    let v: J = serde_json::from_str(&body).unwrap_or(J::Null);
    let mut st = sb.hooks.state.lock().expect("hooks");
    match st.subs.iter_mut().find(|s| s.id.to_string() == id) {
        Some(s) => {
            if let Some(a) = v.get("active").and_then(J::as_bool) {
                s.active = a;
            }
            reply(200, s.json())
        }
        None => error_reply(&ApiErr::not_found(&id)),
    }
}

async fn delete_sub(State(sb): S, Path((_, id)): Path<(String, String)>) -> Response {
    let mut st = sb.hooks.state.lock().expect("hooks");
    let before = st.subs.len();
    st.subs.retain(|s| s.id.to_string() != id);
    if st.subs.len() == before {
        return error_reply(&ApiErr::not_found(&id));
    }
    empty(204)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_signature_matches_a_known_value() {
        // HMAC-SHA256("secret", "POST" + uri + body + ts), base64, as computed
        // independently by Python's hmac module (what HubSpot's Python
        // client's Signature uses).
        let s = sign_v3(
            "secret",
            "POST",
            "https://example.com/hook",
            b"[]",
            1_700_000_000_000,
        );
        assert_eq!(s, "0/4DF+YUcmbqY3ggukl+oIJILQ/DMu3iavl4482uHT4=");
        assert_ne!(
            s,
            sign_v3(
                "secret",
                "POST",
                "https://example.com/hook",
                b"[ ]",
                1_700_000_000_000
            )
        );
    }
}
