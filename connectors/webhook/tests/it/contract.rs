//! The connector contract suite on a webhook inbox: calls a PBX posts,
//! keyed by `call_id`. Out of band is what a sender does: it posts events,
//! taken by another connector instance on the same folder (the server's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use puente_core::{Connector, ObjectSpec, Push};
use puente_testkit::contract::{self, Applies, BadCredentials, Fault, Harness, Invalid, Valid};
use puente_webhook::{WebhookAuth, WebhookConnector};

const TOKEN: &str = "contract-token-0123456789";

struct Inbox {
    root: tempfile::TempDir,
    /// Each reset makes a new inbox folder.
    resets: AtomicUsize,
    dir: Mutex<std::path::PathBuf>,
    created: AtomicUsize,
}

impl Inbox {
    fn new() -> Inbox {
        let root = tempfile::tempdir().unwrap();
        let dir = Mutex::new(root.path().to_path_buf());
        Inbox {
            root,
            resets: AtomicUsize::new(0),
            dir,
            created: AtomicUsize::new(0),
        }
    }

    fn connector(&self, secret: &str) -> WebhookConnector {
        WebhookConnector::new(
            self.dir.lock().unwrap().clone(),
            WebhookAuth {
                secret: secret.into(),
                signature_header: None,
            },
        )
    }

    /// Posts events as the sender does, with the token.
    async fn post(&self, events: serde_json::Value) {
        let n = self
            .connector(TOKEN)
            .accept_push(&push(TOKEN, &events))
            .await
            .unwrap();
        assert!(n > 0);
    }
}

fn push(token: &str, body: &serde_json::Value) -> Push {
    Push {
        method: "POST".into(),
        uri: "http://127.0.0.1/webhooks/pbx?object=calls".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        body: body.to_string().into_bytes(),
    }
}

#[async_trait]
impl Harness for Inbox {
    fn name(&self) -> String {
        "webhook (an inbox of calls keyed by call_id)".into()
    }

    async fn reset(&self) {
        let n = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = self.root.path().join(format!("inbox_{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        *self.dir.lock().unwrap() = dir;
        self.created.store(0, Ordering::Relaxed);
    }

    async fn connect(&self) -> Arc<dyn Connector> {
        let c = self.connector(TOKEN);
        c.check().await.unwrap();
        Arc::new(c)
    }

    fn spec(&self, page_size: usize) -> ObjectSpec {
        ObjectSpec {
            object: "calls".into(),
            key: Some("call_id".into()),
            page_size,
            ..ObjectSpec::default()
        }
    }

    fn label_field(&self) -> &str {
        "note"
    }

    async fn create(&self, labels: &[String]) -> Vec<String> {
        let from = self.created.fetch_add(labels.len(), Ordering::Relaxed);
        let ids: Vec<String> = (from..from + labels.len())
            .map(|n| format!("call-{n}"))
            .collect();
        let events: Vec<serde_json::Value> = ids
            .iter()
            .zip(labels)
            .map(|(id, l)| serde_json::json!({"call_id": id, "note": l, "secs": 30}))
            .collect();
        self.post(serde_json::json!({ "events": events })).await;
        ids
    }

    async fn change(&self, id: &str, label: &str) {
        self.post(serde_json::json!({"call_id": id, "note": label, "secs": 45}))
            .await;
    }

    async fn delete(&self, _id: &str) -> Applies<()> {
        Applies::Not("an inbox keeps every event a sender posted: a sender deletes nothing")
    }

    fn valid(&self, _n: usize) -> Applies<Valid> {
        Applies::Not("the inbox is read-only: it is written by senders, never by a sync")
    }

    fn invalid(&self) -> Applies<Vec<Invalid>> {
        Applies::Not("the inbox is read-only")
    }

    fn upsert(&self) -> Applies<()> {
        Applies::Not("the inbox is read-only")
    }

    async fn arm(&self, fault: Fault) -> Applies<()> {
        Applies::Not(match fault {
            Fault::LostAnswer => {
                "the inbox is read-only: it sends no writes whose answer could be lost"
            }
            Fault::RateLimited => "the inbox is read from a file, which has no request rate limit",
            Fault::ServerErrors | Fault::ServerDown => {
                "the inbox is read from a file, which answers with no HTTP status"
            }
        })
    }

    /// A delivery with the wrong token, refused before its body is read.
    async fn bad_credentials(&self) -> Applies<BadCredentials> {
        let secret = "contract-wrong-token-9876543210".to_string();
        let result = self
            .connector(TOKEN)
            .accept_push(&push(&secret, &serde_json::json!({"call_id": "x"})))
            .await
            .map(|_| ());
        Applies::Yes(BadCredentials { result, secret })
    }
}

#[tokio::test]
async fn the_contract_holds_on_the_webhook_inbox() {
    contract::run(&Inbox::new()).await;
}
