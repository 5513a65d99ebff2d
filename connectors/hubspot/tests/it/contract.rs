//! The connector contract suite on the HubSpot sandbox, for contacts
//! (created by upsert on e-mail) and companies (by batch create). Out of
//! band is another client of the same account calling the API; faults are
//! the sandbox's own: 429s, 5xx, and answers dropped after the write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use puente_core::{Connector, FailureCategory, Fields, ObjectSpec, Value};
use puente_hubspot::{Auth, HubSpotConnector, Settings};
use puente_hubspot_sandbox::{Faults, Running, SandboxOptions};
use puente_testkit::contract::{
    self, Applies, BadCredentials, Fault, Harness, Invalid, Sizes, Valid,
};
use reqwest::Method;
use serde_json::{json, Value as J};

struct HubSpot {
    object: &'static str,
    /// Each reset starts a new, empty sandbox.
    sandbox: Mutex<Option<Arc<Running>>>,
    /// Records created out of band since the reset.
    created: AtomicUsize,
    /// The sandbox's fault count when faults were armed, while they are.
    armed_at: Mutex<Option<u64>>,
    /// Disarms after the first lost answer.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HubSpot {
    fn new(object: &'static str) -> HubSpot {
        HubSpot {
            object,
            sandbox: Mutex::new(None),
            created: AtomicUsize::new(0),
            armed_at: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    fn sb(&self) -> Arc<Running> {
        self.sandbox
            .lock()
            .unwrap()
            .clone()
            .expect("reset starts a sandbox")
    }

    fn contacts(&self) -> bool {
        self.object == "contacts"
    }

    /// The property that tells out-of-band records apart: e-mail or domain.
    fn unique(&self) -> &'static str {
        if self.contacts() {
            "email"
        } else {
            "domain"
        }
    }

    fn unique_value(&self, prefix: &str, n: usize) -> String {
        if self.contacts() {
            format!("{prefix}{n}@example.com")
        } else {
            format!("{prefix}{n}.example.com")
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/crm/v3/objects/{}{rest}", self.object)
    }

    fn set_faults(&self, spec: &str) {
        let sb = self.sb();
        let mut armed = self.armed_at.lock().unwrap();
        armed.get_or_insert(sb.sandbox.stats().faults);
        sb.sandbox.set_faults(Faults::parse(spec).unwrap());
    }
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[async_trait]
impl Harness for HubSpot {
    fn name(&self) -> String {
        format!("hubspot sandbox ({})", self.object)
    }

    /// HubSpot lists 100 records a call, the smallest page a read fills.
    fn sizes(&self) -> Sizes {
        Sizes {
            records: 230,
            page_size: 100,
        }
    }

    async fn reset(&self) {
        let sb = Running::start(SandboxOptions::unthrottled()).await.unwrap();
        self.disarm().await;
        *self.sandbox.lock().unwrap() = Some(Arc::new(sb));
        self.created.store(0, Ordering::Relaxed);
    }

    async fn connect(&self) -> Arc<dyn Connector> {
        let sb = self.sb();
        Arc::new(HubSpotConnector::new(Settings::new(
            Some(sb.url.clone()),
            Auth::Token(sb.token().into()),
        )))
    }

    fn spec(&self, page_size: usize) -> ObjectSpec {
        ObjectSpec {
            object: self.object.into(),
            overlap_secs: 0,
            page_size,
            ..ObjectSpec::default()
        }
    }

    fn label_field(&self) -> &str {
        if self.contacts() {
            "firstname"
        } else {
            "name"
        }
    }

    async fn create(&self, labels: &[String]) -> Vec<String> {
        let sb = self.sb();
        let from = self.created.fetch_add(labels.len(), Ordering::Relaxed);
        let keys: Vec<String> = (from..from + labels.len())
            .map(|n| self.unique_value("oob", n))
            .collect();
        let inputs: Vec<J> = keys
            .iter()
            .zip(labels)
            .map(|(k, l)| json!({"properties": {self.unique(): k, self.label_field(): l}}))
            .collect();
        let mut by_key = std::collections::HashMap::new();
        for chunk in inputs.chunks(100) {
            let answer = sb
                .call(
                    Method::POST,
                    &self.path("/batch/create"),
                    Some(json!({ "inputs": chunk })),
                )
                .await
                .unwrap();
            for r in answer["results"].as_array().unwrap() {
                let key = r["properties"][self.unique()].as_str().unwrap().to_string();
                by_key.insert(key, r["id"].as_str().unwrap().to_string());
            }
        }
        keys.iter().map(|k| by_key[k].clone()).collect()
    }

    async fn change(&self, id: &str, label: &str) {
        self.sb()
            .call(
                Method::PATCH,
                &self.path(&format!("/{id}")),
                Some(json!({"properties": {self.label_field(): label}})),
            )
            .await
            .unwrap();
    }

    async fn delete(&self, id: &str) -> Applies<()> {
        self.sb()
            .call(Method::DELETE, &self.path(&format!("/{id}")), None)
            .await
            .unwrap();
        Applies::Yes(())
    }

    fn valid(&self, n: usize) -> Applies<Valid> {
        let key = self.unique_value("new", n);
        let key = if self.contacts() {
            Value::Email(key)
        } else {
            Value::text(key)
        };
        Applies::Yes(Valid {
            fields: fields(&[
                (self.unique(), key.clone()),
                (self.label_field(), Value::text(format!("New {n}"))),
            ]),
            key: vec![(self.unique().into(), key)],
        })
    }

    fn invalid(&self) -> Applies<Vec<Invalid>> {
        let bad = |pairs: &[(&str, Value)], field: &str| Invalid {
            fields: fields(pairs),
            field: field.into(),
            category: FailureCategory::Validation,
        };
        Applies::Yes(if self.contacts() {
            vec![
                bad(
                    &[
                        ("email", Value::Email("royal@example.com".into())),
                        ("lifecyclestage", Value::Enum("royalty".into())),
                    ],
                    "lifecyclestage",
                ),
                bad(
                    &[
                        ("email", Value::text("not-an-email")),
                        ("firstname", Value::text("Nobody")),
                    ],
                    "email",
                ),
            ]
        } else {
            vec![
                bad(
                    &[
                        ("name", Value::text("Bad Industry")),
                        ("industry", Value::Enum("ALCHEMY".into())),
                    ],
                    "industry",
                ),
                bad(
                    &[
                        ("name", Value::text("Bad Size")),
                        ("numberofemployees", Value::text("many")),
                    ],
                    "numberofemployees",
                ),
            ]
        })
    }

    fn upsert(&self) -> Applies<()> {
        if self.contacts() {
            Applies::Yes(())
        } else {
            Applies::Not("companies are created by batch create, which is not idempotent: a lost create is found again by its match key (domain)")
        }
    }

    async fn arm(&self, fault: Fault) -> Applies<()> {
        self.set_faults(match fault {
            Fault::LostAnswer => "drop=1",
            Fault::RateLimited => "429=0.5",
            Fault::ServerErrors => "5xx=0.5",
            Fault::ServerDown => "5xx=1",
        });
        if fault == Fault::LostAnswer {
            // Only the next answer is lost: once the sandbox has dropped one,
            // the faults stop (well before a retry's backoff has passed).
            let sb = self.sb();
            let lost_after = self.armed_at.lock().unwrap().expect("armed");
            *self.watcher.lock().unwrap() = Some(tokio::spawn(async move {
                while sb.sandbox.stats().faults == lost_after {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                sb.sandbox.set_faults(Faults::default());
            }));
        }
        Applies::Yes(())
    }

    async fn disarm(&self) -> u64 {
        if let Some(w) = self.watcher.lock().unwrap().take() {
            w.abort();
        }
        let Some(at) = self.armed_at.lock().unwrap().take() else {
            return 0;
        };
        let sb = self.sb();
        sb.sandbox.set_faults(Faults::default());
        sb.sandbox.stats().faults - at
    }

    async fn bad_credentials(&self) -> Applies<BadCredentials> {
        let secret = "pat-contract-wrong-0000".to_string();
        let c = HubSpotConnector::new(Settings::new(
            Some(self.sb().url.clone()),
            Auth::Token(secret.clone()),
        ));
        Applies::Yes(BadCredentials {
            result: c.check().await,
            secret,
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_holds_on_hubspot_contacts() {
    contract::run(&HubSpot::new("contacts")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_holds_on_hubspot_companies() {
    contract::run(&HubSpot::new("companies")).await;
}
