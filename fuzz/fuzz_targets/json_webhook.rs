//! Generic JSON webhook deliveries: arbitrary bytes with a wrong token are
//! refused before parsing; with the right one they reach the parser, which
//! must refuse or take them, never panic. Taken events are stored and read
//! back as records.
#![no_main]
use libfuzzer_sys::fuzz_target;
use puente_core::{Connector, Push};
use puente_webhook::{parse_events, WebhookAuth, WebhookConnector};

fuzz_target!(|data: &[u8]| {
    let _ = parse_events(data);
    let dir = tempfile::tempdir().unwrap();
    let c = WebhookConnector::new(
        dir.path(),
        WebhookAuth {
            secret: "fuzz-token-0123456789".into(),
            signature_header: None,
        },
    );
    let push = |token: &str| Push {
        method: "POST".into(),
        uri: "https://puente.example/webhooks/pbx?object=calls".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        body: data.to_vec(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert!(c.accept_push(&push("forged")).await.is_err());
        if let Ok(n) = c.accept_push(&push("fuzz-token-0123456789")).await {
            let o = c
                .open(&puente_core::ObjectSpec {
                    object: "calls".into(),
                    cursor: None,
                    query: None,
                    key: Some("id".into()),
                    overlap_secs: 0,
                    page_size: 100,
                    options: Default::default(),
                    writes: false,
                    reads: None,
                })
                .await
                .unwrap();
            let page = o.read(None, None).await.unwrap();
            assert!(page.records.len() <= n.max(1));
        }
    });
});
