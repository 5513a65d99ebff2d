//! Incoming HubSpot webhooks: the v3 signature (HMAC-SHA256 over method,
//! URI, body and timestamp, keyed with the app secret) checked in constant
//! time, a timestamp older than 5 minutes refused, the size capped, and
//! only then the body parsed into events; the ids they name kept in the
//! [`Inbox`], which the next read takes first (`accept_push`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use puente_core::{ConnectorError, ErrorKind, Push};
use serde::Deserialize;
use sha2::Sha256;

/// The largest body taken (HubSpot sends at most 100 events a request).
pub const MAX_BODY: usize = 1 << 20;
/// How old a request's timestamp may be.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// Not from HubSpot, or replayed: refused before parsing.
    #[error("webhook refused: {0}")]
    Rejected(String),
    /// Signed, but not a list of events.
    #[error("webhook body unreadable: {0}")]
    Malformed(String),
}

/// One event of a delivery.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: u64,
    pub subscription_type: String,
    pub object_id: u64,
    #[serde(default)]
    pub occurred_at: i64,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default)]
    pub primary_object_id: Option<u64>,
    #[serde(default)]
    pub merged_object_ids: Vec<u64>,
}

/// HubSpot decodes these escapes in the URI before signing.
fn decode_uri(uri: &str) -> String {
    const KEEP: &[(&str, &str)] = &[
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut out = uri.to_string();
    for (from, to) in KEEP {
        out = out.replace(from, to).replace(&from.to_lowercase(), to);
    }
    out
}

/// Checks a delivery's v3 signature and age, then parses its events.
pub fn verify_and_parse(
    secret: &str,
    push: &Push,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, WebhookError> {
    if push.body.len() > MAX_BODY {
        return Err(WebhookError::Rejected(format!(
            "body of {} bytes is over the {MAX_BODY}-byte limit",
            push.body.len()
        )));
    }
    let sig = push
        .header("x-hubspot-signature-v3")
        .ok_or_else(|| WebhookError::Rejected("no X-HubSpot-Signature-v3 header".into()))?;
    let ts_raw = push
        .header("x-hubspot-request-timestamp")
        .ok_or_else(|| WebhookError::Rejected("no X-HubSpot-Request-Timestamp header".into()))?;
    let ts: i64 = ts_raw
        .trim()
        .parse()
        .map_err(|_| WebhookError::Rejected(format!("timestamp {ts_raw:?} is not a number")))?;
    let age = now.timestamp_millis() - ts;
    if age > MAX_AGE_MS {
        return Err(WebhookError::Rejected(format!(
            "timestamp is {} s old (the limit is 300 s): a replay or a delayed delivery",
            age / 1000
        )));
    }
    if age < -MAX_AGE_MS {
        return Err(WebhookError::Rejected("timestamp is in the future".into()));
    }
    let expected = base64::engine::general_purpose::STANDARD
        .decode(sig.trim())
        .map_err(|_| WebhookError::Rejected("signature is not base64".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(push.method.to_uppercase().as_bytes());
    mac.update(decode_uri(&push.uri).as_bytes());
    mac.update(&push.body);
    mac.update(ts_raw.trim().as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).map_err(|_| {
        WebhookError::Rejected(
            "signature does not match (wrong webhook_secret, or the body or URL was altered)"
                .into(),
        )
    })?;
    serde_json::from_slice::<Vec<Event>>(&push.body)
        .map_err(|e| WebhookError::Malformed(e.to_string()))
}

/// What webhooks said changed: ids by object type, read on the next run,
/// and the event ids already taken (HubSpot retries deliveries).
#[derive(Default)]
pub(crate) struct Inbox {
    ids: Mutex<HashMap<String, BTreeSet<String>>>,
    seen: Mutex<BTreeSet<u64>>,
}

fn object_of_event(subscription_type: &str) -> Option<&'static str> {
    Some(match subscription_type.split('.').next()? {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        "ticket" => "tickets",
        "product" => "products",
        "line_item" => "line_items",
        _ => return None,
    })
}

impl Inbox {
    /// Verifies a delivery with the connection's webhook secret, then keeps
    /// the ids its events name (a merge's survivor too); how many events
    /// were new.
    pub(crate) fn accept(
        &self,
        secret: Option<&str>,
        push: &Push,
    ) -> Result<usize, ConnectorError> {
        let secret = secret.ok_or_else(|| {
            ConnectorError::config("this HubSpot connection has no webhook_secret, so webhooks cannot be verified")
                .with_hint("set webhook_secret = { env = \"HUBSPOT_CLIENT_SECRET\" } (the app's client secret)")
        })?;
        let events = verify_and_parse(secret, push, Utc::now()).map_err(|e| match e {
            WebhookError::Rejected(m) => ConnectorError::new(ErrorKind::Auth, m),
            WebhookError::Malformed(m) => ConnectorError::new(ErrorKind::External, m),
        })?;
        let mut n = 0;
        let mut seen = self.seen.lock().expect("events");
        let mut inbox = self.ids.lock().expect("inbox");
        for e in events {
            if !seen.insert(e.event_id) {
                continue;
            }
            if let Some(obj) = object_of_event(&e.subscription_type) {
                let ids = inbox.entry(obj.to_string()).or_default();
                ids.insert(e.object_id.to_string());
                if let Some(p) = e.primary_object_id {
                    ids.insert(p.to_string());
                }
                n += 1;
            }
        }
        if seen.len() > 100_000 {
            let keep: BTreeSet<u64> = seen.iter().rev().take(50_000).copied().collect();
            *seen = keep;
        }
        Ok(n)
    }

    /// The ids webhooks named for an object type since the last take.
    pub(crate) fn take(&self, object: &str) -> Vec<String> {
        self.ids
            .lock()
            .expect("inbox")
            .remove(object)
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// Forgets an object type's ids (a full read saw everything).
    pub(crate) fn clear(&self, object: &str) {
        self.ids.lock().expect("inbox").remove(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use puente_hubspot_sandbox::sign_v3;

    fn push(body: &str, ts: i64, sig: String) -> Push {
        Push {
            method: "POST".into(),
            uri: "https://puente.example/hooks/hubspot?x=1".into(),
            headers: vec![
                ("x-hubspot-signature-v3".into(), sig),
                ("x-hubspot-request-timestamp".into(), ts.to_string()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    const BODY: &str = r#"[{"eventId":7,"subscriptionId":1,"portalId":2,"appId":3,"occurredAt":1,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":42,"changeSource":"API","propertyName":"email","propertyValue":"a@b.co"}]"#;

    #[test]
    fn a_signed_fresh_delivery_is_taken_and_anything_else_refused() {
        let now = Utc::now();
        let ts = now.timestamp_millis();
        let uri = "https://puente.example/hooks/hubspot?x=1";
        let good = push(
            BODY,
            ts,
            sign_v3("s3cret", "POST", uri, BODY.as_bytes(), ts),
        );
        let events = verify_and_parse("s3cret", &good, now).unwrap();
        assert_eq!(events[0].object_id, 42);
        assert_eq!(events[0].subscription_type, "contact.propertyChange");

        let wrong_secret = verify_and_parse("other", &good, now).unwrap_err();
        assert!(
            matches!(wrong_secret, WebhookError::Rejected(_)),
            "{wrong_secret}"
        );

        let tampered = push(
            &BODY.replace("42", "43"),
            ts,
            sign_v3("s3cret", "POST", uri, BODY.as_bytes(), ts),
        );
        assert!(matches!(
            verify_and_parse("s3cret", &tampered, now),
            Err(WebhookError::Rejected(_))
        ));

        let old = ts - 6 * 60 * 1000;
        let stale = push(
            BODY,
            old,
            sign_v3("s3cret", "POST", uri, BODY.as_bytes(), old),
        );
        let e = verify_and_parse("s3cret", &stale, now).unwrap_err();
        assert!(e.to_string().contains("old"), "{e}");

        let junk = "not json";
        let signed_junk = push(
            junk,
            ts,
            sign_v3("s3cret", "POST", uri, junk.as_bytes(), ts),
        );
        assert!(matches!(
            verify_and_parse("s3cret", &signed_junk, now),
            Err(WebhookError::Malformed(_))
        ));

        let mut unsigned = good.clone();
        unsigned.headers.remove(0);
        assert!(matches!(
            verify_and_parse("s3cret", &unsigned, now),
            Err(WebhookError::Rejected(_))
        ));
    }

    #[test]
    fn escaped_characters_in_the_uri_are_decoded_before_checking() {
        let now = Utc::now();
        let ts = now.timestamp_millis();
        let signed_uri = "https://puente.example/hooks/hubspot?a=b:c";
        let mut p = push(
            BODY,
            ts,
            sign_v3("k", "POST", signed_uri, BODY.as_bytes(), ts),
        );
        p.uri = "https://puente.example/hooks/hubspot?a=b%3Ac".into();
        assert!(verify_and_parse("k", &p, now).is_ok());
    }
}
