//! HubSpot webhook deliveries: correctly signed bodies of arbitrary bytes
//! reach the parser (which must refuse, never panic); the same bytes with a
//! wrong signature are always refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use puente_core::Push;
use puente_hubspot_sandbox::sign_v3;
use puente_hubspot::webhook::{verify_and_parse, WebhookError};

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc::now();
    let ts = now.timestamp_millis();
    let uri = "https://puente.example/hooks/hubspot";
    let signed = Push {
        method: "POST".into(),
        uri: uri.into(),
        headers: vec![
            ("x-hubspot-signature-v3".into(), sign_v3("secret", "POST", uri, data, ts)),
            ("x-hubspot-request-timestamp".into(), ts.to_string()),
        ],
        body: data.to_vec(),
    };
    let _ = verify_and_parse("secret", &signed, now);
    let mut forged = signed.clone();
    forged.headers[0].1 = sign_v3("other", "POST", uri, data, ts);
    assert!(matches!(verify_and_parse("secret", &forged, now), Err(WebhookError::Rejected(_))));
});
