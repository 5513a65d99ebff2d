//! HubSpot (its sandbox) ↔ PostgreSQL, two-way: contacts and companies with
//! the contact → primary company association, edits on both sides, a
//! conflict, a deleted record kept and restored, and a change that arrives
//! by webhook while search lags.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use puente_core::{Push, Side};
use puente_engine::RunOptions;
use puente_hubspot_sandbox::{Running, SandboxOptions};
use serde_json::{json, Value as J};

use crate::fixtures::{Db, Pair};

/// Calls the sandbox's API as any HubSpot client would.
struct Api<'a>(&'a Running);

impl Api<'_> {
    /// One call; a 429 (the search limit is 5 a second) waits and retries.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<J>) -> J {
        self.0.call(method, path, body).await.unwrap()
    }

    async fn create(&self, ty: &str, props: J) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/crm/v3/objects/{ty}"),
                Some(json!({"properties": props})),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn update(&self, ty: &str, id: &str, props: J) {
        self.call(
            reqwest::Method::PATCH,
            &format!("/crm/v3/objects/{ty}/{id}"),
            Some(json!({"properties": props})),
        )
        .await;
    }

    async fn find(&self, ty: &str, prop: &str, value: &str) -> Vec<J> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/crm/v3/objects/{ty}/search"),
                Some(json!({"filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}], "properties": ["email", "firstname", "lastname", "name", "domain"], "limit": 100})),
            )
            .await;
        v["results"].as_array().unwrap().clone()
    }

    async fn primary_company(&self, contact: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/crm/v4/objects/contacts/{contact}/associations/companies"),
                None,
            )
            .await;
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["associationTypes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["typeId"] == 1)
            })
            .map(|r| r["toObjectId"].to_string())
    }
}

fn config(sandbox: &str, token: &str, pg: &Db) -> String {
    format!(
        r#"
[state]
url = "sqlite://state.db"

[connections.crm]
kind = "hubspot"
base_url = "{sandbox}"
token = "{token}"
webhook_secret = "sandbox-client-secret"

[connections.db]
kind = "postgres"
url = "{pg}"

[[syncs]]
name = "companies"
winner = "a"
delete_check_interval_secs = 0
a = {{ connection = "crm", object = "companies" }}
b = {{ connection = "db", object = "accounts", cursor = "updated_at" }}
match = [{{ a = "domain", b = "website" }}]
fields = [
  {{ a = "name", b = "name" }},
  {{ a = "domain", b = "website" }},
]

[[syncs]]
name = "contacts"
winner = "a"
delete_check_interval_secs = 0
a = {{ connection = "crm", object = "contacts" }}
b = {{ connection = "db", object = "people", cursor = "updated_at" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "firstname", b = "first_name" }},
  {{ a = "lastname", b = "last_name" }},
  {{ a = "associatedcompanyid", b = "account_id", ref = "companies" }},
]
"#,
        pg = pg.url()
    )
}

async fn run_all(p: &Pair, opts: RunOptions) {
    for def in p.engine.config.syncs.clone() {
        let r = p
            .engine
            .run(&def, &opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.a.failed + r.b.failed, 0, "{r:?}");
    }
}

#[derive(Clone)]
struct Hooked {
    connector: Arc<dyn puente_core::Connector>,
    taken: Arc<AtomicUsize>,
    uri: String,
}

async fn receive(
    State(h): State<Hooked>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let push = Push {
        method: "POST".into(),
        uri: h.uri.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    };
    match h.connector.accept_push(&push).await {
        Ok(n) => {
            h.taken.fetch_add(n, Ordering::SeqCst);
            axum::http::StatusCode::NO_CONTENT
        }
        Err(_) => axum::http::StatusCode::UNAUTHORIZED,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_and_postgres_stay_in_sync_both_ways() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let api = Api(&sb);
    let pg = Db::pg().await;
    pg.exec("CREATE TABLE accounts (id SERIAL PRIMARY KEY, name TEXT NOT NULL, website TEXT UNIQUE, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())").await;
    pg.exec("CREATE TABLE people (id SERIAL PRIMARY KEY, email TEXT UNIQUE, first_name TEXT, last_name TEXT, account_id INT REFERENCES accounts(id), updated_at TIMESTAMPTZ NOT NULL DEFAULT now())").await;

    // HubSpot: a company and two contacts, one of them also in PostgreSQL.
    let acme = api
        .create(
            "companies",
            json!({"name": "Acme", "domain": "acme.example"}),
        )
        .await;
    let ann = api
        .create(
            "contacts",
            json!({"email": "ann@acme.example", "firstname": "Ann", "lastname": "Archer"}),
        )
        .await;
    api.call(
        reqwest::Method::PUT,
        &format!("/crm/v4/objects/contacts/{ann}/associations/companies/{acme}"),
        Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}])),
    )
    .await;
    let bob = api
        .create(
            "contacts",
            json!({"email": "bob@acme.example", "firstname": "Bob"}),
        )
        .await;
    // PostgreSQL: another company with its contact, and Bob (upper case, no first name).
    pg.exec("INSERT INTO accounts (name, website) VALUES ('Globex', 'globex.example')")
        .await;
    pg.exec("INSERT INTO people (email, first_name, last_name, account_id) VALUES ('cy@globex.example', 'Cy', 'Cole', 1)").await;
    pg.exec("INSERT INTO people (email, last_name) VALUES ('BOB@ACME.EXAMPLE', 'Baker')")
        .await;

    let text = config(&sb.url, sb.token(), &pg);
    let p = Pair::with_config(pg, Db::sqlite(), &text).await;
    let db = &p.a;
    run_all(&p, RunOptions::default()).await;

    // Companies both ways.
    assert_eq!(
        db.one("SELECT name AS x FROM accounts WHERE website = 'acme.example'")
            .await,
        "Acme"
    );
    assert_eq!(
        api.find("companies", "domain", "globex.example")
            .await
            .len(),
        1
    );
    // Contacts both ways, Bob matched by e-mail, not duplicated.
    assert_eq!(db.count("SELECT COUNT(*) AS x FROM people").await, 3);
    assert_eq!(
        api.find("contacts", "email", "bob@acme.example")
            .await
            .len(),
        1
    );
    assert_eq!(
        db.one("SELECT first_name AS x FROM people WHERE LOWER(email) = 'bob@acme.example'")
            .await,
        "Bob"
    );
    assert_eq!(
        api.find("contacts", "email", "bob@acme.example").await[0]["properties"]["lastname"],
        "Baker"
    );
    // Associations: Ann's company reached PostgreSQL, Cy's reached HubSpot.
    assert_eq!(
        db.one("SELECT a.website AS x FROM people p JOIN accounts a ON a.id = p.account_id WHERE p.email = 'ann@acme.example'").await,
        "acme.example"
    );
    let cy = api.find("contacts", "email", "cy@globex.example").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let globex = api.find("companies", "domain", "globex.example").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.primary_company(&cy).await, Some(globex.clone()));

    // Nothing changed: nothing written.
    for def in p.engine.config.syncs.clone() {
        let r = p.engine.run(&def, &RunOptions::default()).await.unwrap();
        assert_eq!(
            (r.a.created, r.a.updated, r.b.created, r.b.updated),
            (0, 0, 0, 0),
            "{r:?}"
        );
    }

    // Edits on both sides, and a conflict that HubSpot (the winner) takes.
    api.update("contacts", &ann, json!({"lastname": "Archer-Smith"}))
        .await;
    db.exec("UPDATE people SET first_name = 'Cyrus', updated_at = now() WHERE email = 'cy@globex.example'").await;
    api.update("contacts", &bob, json!({"firstname": "Robert"}))
        .await;
    db.exec("UPDATE people SET first_name = 'Bobby', updated_at = now() WHERE LOWER(email) = 'bob@acme.example'").await;
    // Cy moves to Acme in PostgreSQL: the association follows.
    db.exec("UPDATE people SET account_id = (SELECT id FROM accounts WHERE website = 'acme.example'), updated_at = now() WHERE email = 'cy@globex.example'").await;
    run_all(&p, RunOptions::default()).await;
    assert_eq!(
        db.one("SELECT last_name AS x FROM people WHERE email = 'ann@acme.example'")
            .await,
        "Archer-Smith"
    );
    assert_eq!(
        api.find("contacts", "email", "cy@globex.example").await[0]["properties"]["firstname"],
        "Cyrus"
    );
    assert_eq!(
        db.one("SELECT first_name AS x FROM people WHERE LOWER(email) = 'bob@acme.example'")
            .await,
        "Robert"
    );
    assert_eq!(
        api.find("contacts", "email", "bob@acme.example").await[0]["properties"]["firstname"],
        "Robert"
    );
    assert_eq!(api.primary_company(&cy).await, Some(acme.clone()));

    // An association changed in HubSpot alone (no property changes) is
    // found by the full reconciliation.
    api.call(
        reqwest::Method::PUT,
        &format!("/crm/v4/objects/contacts/{ann}/associations/companies/{globex}"),
        Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}])),
    )
    .await;
    run_all(
        &p,
        RunOptions {
            full: true,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(
        db.one("SELECT a.website AS x FROM people p JOIN accounts a ON a.id = p.account_id WHERE p.email = 'ann@acme.example'").await,
        "globex.example"
    );

    // A contact deleted in HubSpot is kept in PostgreSQL, shown as deleted,
    // and restored on HubSpot with its values and company.
    api.call(
        reqwest::Method::DELETE,
        &format!("/crm/v3/objects/contacts/{cy}"),
        None,
    )
    .await;
    run_all(&p, RunOptions::default()).await;
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM people WHERE email = 'cy@globex.example'")
            .await,
        1
    );
    assert!(api
        .find("contacts", "email", "cy@globex.example")
        .await
        .is_empty());
    let contacts = p.engine.config.syncs[1].clone();
    let restored = p.engine.restore(&contacts, Side::A, false).await.unwrap();
    assert_eq!(restored.restored.len(), 1, "{restored:?}");
    let back = api.find("contacts", "email", "cy@globex.example").await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["properties"]["firstname"], "Cyrus");
    let new_cy = back[0]["id"].as_str().unwrap().to_string();
    run_all(&p, RunOptions::default()).await;
    assert_eq!(api.primary_company(&new_cy).await, Some(acme.clone()));

    // A merge in HubSpot: the linked record is merged into a newer one. The
    // survivor takes over the link; nothing is deleted or duplicated.
    db.exec("INSERT INTO people (email, first_name) VALUES ('dee@acme.example', 'Dee')")
        .await;
    run_all(&p, RunOptions::default()).await;
    let dee = api.find("contacts", "email", "dee@acme.example").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deirdre = api
        .create(
            "contacts",
            json!({"email": "dee.work@acme.example", "firstname": "Deirdre"}),
        )
        .await;
    api.call(
        reqwest::Method::POST,
        "/crm/v3/objects/contacts/merge",
        Some(json!({"primaryObjectId": deirdre, "objectIdToMerge": dee})),
    )
    .await;
    for def in p.engine.config.syncs.clone() {
        let r = p.engine.run(&def, &RunOptions::default()).await.unwrap();
        assert_eq!(
            (
                r.a.deleted,
                r.b.deleted,
                r.b.created,
                r.a.failed + r.b.failed
            ),
            (0, 0, 0, 0),
            "{r:?}"
        );
    }
    assert_eq!(
        db.count("SELECT COUNT(*) AS x FROM people WHERE email LIKE 'dee%'")
            .await,
        1
    );
    assert_eq!(
        db.one("SELECT email AS x FROM people WHERE email LIKE 'dee%'")
            .await,
        "dee.work@acme.example"
    );
    assert_eq!(
        db.one("SELECT first_name AS x FROM people WHERE email LIKE 'dee%'")
            .await,
        "Deirdre"
    );

    // Webhooks: with search lagging an hour behind, a change still arrives,
    // because the webhook named the record.
    let connector = p.engine.connector("crm").await.unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks/hubspot", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks/hubspot", axum::routing::post(receive))
        .with_state(Hooked {
            connector,
            taken: taken.clone(),
            uri: hook_url.clone(),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    sb.subscribe(&hook_url, &[("contact.propertyChange", Some("lastname"))])
        .await
        .unwrap();
    sb.sandbox.set_search_lag(Duration::from_secs(3600));
    api.update("contacts", &ann, json!({"lastname": "Hooked"}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while taken.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = p
        .engine
        .run(&contacts, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.b.updated, 1, "{r:?}");
    assert_eq!(
        db.one("SELECT last_name AS x FROM people WHERE email = 'ann@acme.example'")
            .await,
        "Hooked"
    );
}

/// Hostile values on their way into HubSpot: each bad one fails its own
/// record with the field named; awkward but valid ones arrive unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_into_hubspot_fails_alone_and_awkward_values_arrive_intact() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let api = Api(&sb);
    let pg = Db::pg().await;
    let long = "x".repeat(70_000);
    pg.exec(&format!(
        "CREATE TABLE src (id SERIAL PRIMARY KEY, email TEXT, first TEXT, stage TEXT, born DATE, staff NUMERIC(40,10), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO src (email, first, stage, born, staff) VALUES
           ('emoji@example.com', '🚀 Zoë 👩🏽‍💻', 'lead', '1899-12-31', 12345678901234567.25),
           ('rtl@example.com', 'مريم כהן', 'customer', '2101-06-30', 3),
           ('king@example.com', 'Kim', 'royalty', NULL, NULL),
           ('not-an-email', 'Nobody', 'lead', NULL, NULL),
           ('long@example.com', '{long}', 'lead', NULL, NULL),
           ('ctl@example.com', 'A' || chr(1) || 'B', 'lead', NULL, NULL),
           ('Twin@example.com', 'One', 'lead', NULL, NULL),
           ('twin@example.com', 'Two', 'lead', NULL, NULL),
           ('fine@example.com', 'Fine', 'lead', NULL, NULL)"
    ))
    .await;
    let text = format!(
        r#"
[state]
url = "sqlite://state.db"
[connections.db]
kind = "postgres"
url = "{}"
[connections.crm]
kind = "hubspot"
base_url = "{}"
token = "{}"
[[syncs]]
name = "contacts"
direction = "a-to-b"
a = {{ connection = "db", object = "src", cursor = "updated_at" }}
b = {{ connection = "crm", object = "contacts" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first", b = "firstname" }},
  {{ a = "stage", b = "lifecyclestage" }},
  {{ a = "born", b = "date_of_birth" }},
  {{ a = "staff", b = "num_employees" }},
]
"#,
        pg.url(),
        sb.url,
        sb.token()
    );
    let p = Pair::with_config(pg, Db::sqlite(), &text).await;
    let r = p.run().await;
    assert_eq!(r.b.created, 4, "{r:?}");
    // A control character is a value like any other (PostgreSQL cannot hold NUL).
    assert_eq!(
        api.find("contacts", "email", "ctl@example.com").await[0]["properties"]["firstname"],
        "A\u{1}B"
    );
    let emoji = &api.find("contacts", "email", "emoji@example.com").await[0]["properties"];
    assert_eq!(emoji["firstname"], "🚀 Zoë 👩🏽‍💻");
    let full = api
        .call(
            reqwest::Method::GET,
            &format!(
                "/crm/v3/objects/contacts/{}?properties=date_of_birth,num_employees",
                emoji["hs_object_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(full["properties"]["date_of_birth"], "1899-12-31");
    assert_eq!(
        full["properties"]["num_employees"], "12345678901234567.25",
        "no digit lost to floating point"
    );
    assert_eq!(
        api.find("contacts", "email", "rtl@example.com").await[0]["properties"]["firstname"],
        "مريم כהן"
    );

    let failed = p
        .engine
        .state
        .records(&puente_state::RecordFilter {
            sync: Some("contacts".into()),
            status: Some("failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let excluded = p
        .engine
        .state
        .records(&puente_state::RecordFilter {
            sync: Some("contacts".into()),
            status: Some("excluded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let all: Vec<String> = failed
        .iter()
        .map(|f| {
            format!(
                "{} {:?} {:?}",
                f.category.clone().unwrap_or_default(),
                f.reason,
                f.hint
            )
        })
        .collect();
    assert_eq!(failed.len(), 3, "{all:#?}");
    for (needle, field) in [
        ("royalty", "lifecyclestage"),
        ("not-an-email", "email"),
        ("70000", "firstname"),
    ] {
        assert!(
            all.iter()
                .any(|f| f.contains(field) && f.to_lowercase().contains(needle)),
            "no failure names {field} with {needle}: {all:#?}"
        );
    }
    assert!(failed
        .iter()
        .all(|f| f.category.is_some() && f.hint.is_some()));
    assert_eq!(
        excluded.len(),
        2,
        "the two twins share a key: both excluded, {excluded:#?}"
    );
    assert!(api
        .find("contacts", "email", "twin@example.com")
        .await
        .is_empty());
}
