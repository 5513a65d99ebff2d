//! The API's contract: authentication, CSRF, every action endpoint, the
//! OpenAPI document, metrics, and webhooks that carry a change across.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value as J};

use crate::setup::{latencies, quantile, Served, Setup, TOKEN};

const OPENAPI: &str = include_str!("../../src/openapi.json");
const API_SOURCE: &str = include_str!("../../src/api.rs");

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "contacts")
        .replace("{sync}", "contacts")
        .replace("{id}", "1")
        .replace("{connection}", "crm")
}

#[tokio::test]
async fn every_route_is_documented_and_refuses_callers_without_the_token() {
    let doc: J = serde_json::from_str(OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every route the API module declares is in the document.
    for line in API_SOURCE.lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let path = rest.split('"').next().unwrap();
        assert!(paths.contains_key(path), "{path} is not in openapi.json");
    }
    let s = Served::start(Setup::default()).await;
    let anon = reqwest::Client::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = format!("{}{}", s.url, concrete(path));
            let public = op["security"].as_array().is_some_and(|a| a.is_empty());
            let body = match path.as_str() {
                "/api/syncs/{name}/restore" => json!({"side": "a"}),
                "/api/conflicts/{id}/resolve" => json!({"take": "a"}),
                _ => json!({}),
            };
            let query = if path.ends_with("/restore") && method == "get" {
                "?side=a"
            } else {
                ""
            };
            let no_token = anon
                .request(m.clone(), format!("{url}{query}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            if public {
                // Open to anyone (a webhook is refused by its signature, not the token).
                let e: J = no_token.json().await.unwrap_or(J::Null);
                assert_ne!(e["code"], "unauthenticated", "{method} {path} is public");
                continue;
            }
            assert_eq!(no_token.status(), 401, "{method} {path} without a token");
            let err: J = no_token.json().await.unwrap();
            assert_eq!(err["code"], "unauthenticated");
            assert!(err["message"].as_str().unwrap().contains("Bearer"));
            let wrong = anon
                .request(m.clone(), format!("{url}{query}"))
                .bearer_auth("not-the-token-at-all-000000")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
            let ok = anon
                .request(m, format!("{url}{query}"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let code = ok.status().as_u16();
            // Conflict 1 does not exist: a clear 404, not a missing route.
            let expected_404 =
                path == "/api/conflicts/{id}/resolve" || path == "/api/records/{sync}/{id}";
            if expected_404 {
                let e: J = ok.json().await.unwrap();
                assert!(
                    code == 404 && e["code"] == "not_found" || code == 200,
                    "{method} {path}: {code} {e}"
                );
            } else {
                assert!(
                    (200..300).contains(&code),
                    "{method} {path} with the token: {code}"
                );
            }
        }
    }
    // Probes and the contract are open; security headers are on every answer.
    let r = anon.get(format!("{}/readyz", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(r.headers().contains_key(h), "{h} missing");
    }
    s.stop().await;
}

/// Signs in through the login form; returns the session cookie.
async fn sign_in(s: &Served) -> String {
    let r = s
        .http
        .post(format!("{}/login", s.url))
        .form(&[("token", TOKEN), ("next", "/records")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/records");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_string()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field");
    html[at + 19..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn sessions_must_send_their_csrf_token_from_this_site() {
    let s = Served::start(Setup::default()).await;
    // Pages send a stranger to the login form; a wrong token stays there.
    let r = s
        .http
        .get(format!("{}/records?status=failed", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?next="));
    let r = s
        .http
        .post(format!("{}/login", s.url))
        .form(&[("token", "wrong-token-wrong-token"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("failed=1"));
    assert!(r.headers().get("set-cookie").is_none());
    // An open redirect is refused.
    let r = s
        .http
        .post(format!("{}/login", s.url))
        .form(&[("token", TOKEN), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");

    let cookie = sign_in(&s).await;
    let page = s
        .http
        .get(format!("{}/syncs/contacts", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    let as_browser =
        |method: Method, path: &str, headers: &[(&str, &str)], form: &[(&str, &str)]| {
            let mut r = s
                .http
                .request(method, format!("{}{path}", s.url))
                .header("cookie", &cookie);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            if !form.is_empty() {
                r = r.form(form);
            }
            async move { r.send().await.unwrap().status().as_u16() }
        };
    let pause = "/syncs/contacts/pause";
    // Without the token.
    assert_eq!(
        as_browser(Method::POST, pause, &[], &[("x", "1")]).await,
        403
    );
    // With another session's token.
    let other = "0".repeat(64);
    assert_eq!(
        as_browser(Method::POST, pause, &[], &[("csrf", &other)]).await,
        403
    );
    // From another site, even with the token.
    let origin = [("origin", "http://evil.example")];
    assert_eq!(
        as_browser(Method::POST, pause, &origin, &[("csrf", &csrf)]).await,
        403
    );
    assert!(
        !s.api(Method::GET, "/api/syncs/contacts", None).await.1["state"]["paused"]
            .as_bool()
            .unwrap()
    );
    // The real thing.
    assert_eq!(
        as_browser(Method::POST, pause, &[], &[("csrf", &csrf)]).await,
        303
    );
    assert!(
        s.api(Method::GET, "/api/syncs/contacts", None).await.1["state"]["paused"]
            .as_bool()
            .unwrap()
    );
    // The API with a session also needs the header.
    let resume = "/api/syncs/contacts/resume";
    assert_eq!(as_browser(Method::POST, resume, &[], &[]).await, 403);
    let header = [("x-csrf-token", csrf.as_str())];
    assert_eq!(as_browser(Method::POST, resume, &header, &[]).await, 200);
    // Signing out ends the session.
    assert_eq!(
        as_browser(Method::POST, "/logout", &[], &[("csrf", &csrf)]).await,
        303
    );
    assert_eq!(as_browser(Method::GET, "/api/syncs", &[], &[]).await, 401);
    s.stop().await;
}

#[tokio::test]
async fn every_action_endpoint_does_what_it_says() {
    let s = Served::start(Setup {
        conflict: "manual",
        ..Setup::default()
    })
    .await;
    // An all-at-once sync shows no backfill.
    assert!(s.api(Method::GET, "/api/syncs/contacts", None).await.1["backfill"].is_null());
    // Pause: nothing runs, even when a webhook arrives.
    let (code, v) = s.api(Method::POST, "/api/syncs/contacts/pause", None).await;
    assert_eq!((code, v["paused"].as_bool()), (200, Some(true)));
    // A pass already under way when the pause came finishes first.
    let runs_before = s
        .wait_for(Duration::from_secs(20), |v| v["state"]["running"] == false)
        .await["state"]["runs"]
        .as_u64()
        .unwrap();
    let ann = s.hubspot_id("user1@example.com").await;
    s.set_hubspot(&ann, json!({"firstname": "Ann-HubSpot"}))
        .await;
    s.db.exec("UPDATE people SET first_name = 'Ann-Postgres' WHERE email = 'user1@example.com'")
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let v = s.api(Method::GET, "/api/syncs/contacts", None).await.1;
    assert_eq!(
        v["state"]["runs"].as_u64().unwrap(),
        runs_before,
        "a paused sync ran"
    );

    // Dry run: shows the exact change, writes nothing.
    let (code, r) = s
        .api(Method::POST, "/api/syncs/contacts/dry-run", None)
        .await;
    assert_eq!(code, 200, "{r}");
    assert!(r["plan"].as_str().unwrap().contains("firstname"), "{r}");
    assert_eq!(
        s.db.one("SELECT first_name AS x FROM people WHERE email = 'user1@example.com'")
            .await,
        "Ann-Postgres"
    );

    // Resume: the pass holds the conflict (manual policy) in the inbox.
    s.api(Method::POST, "/api/syncs/contacts/resume", None)
        .await;
    let v = s
        .wait_for(Duration::from_secs(20), |v| {
            v["counts"]["waiting"].as_i64() == Some(1)
        })
        .await;
    assert!(!v["state"]["paused"].as_bool().unwrap());
    let (_, conflicts) = s
        .api(Method::GET, "/api/conflicts?sync=contacts", None)
        .await;
    let c = &conflicts.as_array().unwrap()[0];
    assert_eq!(c["field_a"], "firstname");
    let (code, r) = s
        .api(
            Method::POST,
            &format!("/api/conflicts/{}/resolve", c["id"]),
            Some(json!({"take": "b"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    s.wait_for(Duration::from_secs(20), |v| {
        v["counts"]["waiting"].as_i64() == Some(0)
    })
    .await;
    let hub = s
        .sandbox
        .call(
            Method::GET,
            &format!("/crm/v3/objects/contacts/{ann}?properties=firstname"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(hub["properties"]["firstname"], "Ann-Postgres");
    let (_, settled) = s
        .api(Method::GET, "/api/conflicts?sync=contacts&all=true", None)
        .await;
    assert_ne!(settled[0]["state"], "open");

    // A record's detail: both sides, the link, the history of the change.
    let (_, rows) = s.api(Method::GET, "/api/records?sync=contacts", None).await;
    let entry = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["a_id"].as_str() == Some(ann.as_str()))
        .unwrap()["entry_id"]
        .as_i64()
        .unwrap();
    let (code, d) = s
        .api(Method::GET, &format!("/api/records/contacts/{entry}"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(d["a_id"].as_str(), Some(ann.as_str()));
    let first = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["a_field"] == "firstname")
        .unwrap();
    assert_eq!(first["differs"], false);
    assert!(
        d["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["field"] == "firstname"),
        "{d:#}"
    );

    // Records: filters, time range, paging and CSV export.
    let (_, all) = s.api(Method::GET, "/api/records?sync=contacts", None).await;
    assert_eq!(all.as_array().unwrap().len(), 20);
    let (_, page2) = s
        .api(
            Method::GET,
            "/api/records?sync=contacts&limit=5&offset=5",
            None,
        )
        .await;
    assert_eq!(page2.as_array().unwrap().len(), 5);
    assert_eq!(page2[0]["entry_id"], all[5]["entry_id"]);
    let (_, future) = s
        .api(Method::GET, "/api/records?since=2999-01-01", None)
        .await;
    assert!(future.as_array().unwrap().is_empty());
    let (code, bad) = s.api(Method::GET, "/api/records?status=lost", None).await;
    assert_eq!((code, bad["code"].as_str()), (400, Some("invalid_request")));
    assert!(bad["message"].as_str().unwrap().contains("in_sync"));
    let csv = s
        .http
        .get(format!(
            "{}/api/records.csv?sync=contacts&status=in_sync",
            s.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let text = csv.text().await.unwrap();
    assert_eq!(text.lines().count(), 21, "{text}");
    assert!(text.starts_with("sync,entry,a_id,b_id,status"));

    // Delete in PostgreSQL, reconcile, review the restore, restore.
    s.db.exec("DELETE FROM people WHERE email = 'user2@example.com'")
        .await;
    let (code, _) = s
        .api(Method::POST, "/api/syncs/contacts/run?full=true", None)
        .await;
    assert_eq!(code, 202);
    s.wait_for(Duration::from_secs(20), |v| {
        v["counts"]["deleted"].as_i64() == Some(1)
    })
    .await;
    let (_, review) = s
        .api(Method::GET, "/api/syncs/contacts/restore?side=b", None)
        .await;
    assert_eq!(review["plan"].as_array().unwrap().len(), 1, "{review}");
    assert_eq!(
        s.db.count("SELECT COUNT(*) AS x FROM people").await,
        19,
        "the review wrote nothing"
    );
    let (code, done) = s
        .api(
            Method::POST,
            "/api/syncs/contacts/restore",
            Some(json!({"side": "b"})),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["restored"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.db.count("SELECT COUNT(*) AS x FROM people WHERE email = 'user2@example.com'")
            .await,
        1
    );
    let (code, bad) = s
        .api(Method::GET, "/api/syncs/contacts/restore?side=c", None)
        .await;
    assert_eq!((code, bad["code"].as_str()), (400, Some("invalid_request")));

    // Retry: a record HubSpot refuses fails with a category; fixed, retried, in sync.
    s.db.exec("UPDATE people SET email = 'user3-at-example' WHERE email = 'user3@example.com'")
        .await;
    s.api(Method::POST, "/api/syncs/contacts/run", None).await;
    let v = s
        .wait_for(Duration::from_secs(20), |v| {
            v["counts"]["failed"].as_i64() == Some(1)
        })
        .await;
    let group = &v["failed"][0];
    assert!(
        group["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{v:#}"
    );
    s.db.exec("UPDATE people SET email = 'user3@example.com' WHERE email = 'user3-at-example'")
        .await;
    let (code, r) = s.api(Method::POST, "/api/syncs/contacts/retry", None).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (r["retried"].as_i64(), r["still_failed"].as_i64()),
        (Some(1), Some(0))
    );

    // Unknown syncs are named.
    let (code, e) = s.api(Method::POST, "/api/syncs/nope/pause", None).await;
    assert_eq!(code, 404);
    assert!(e["message"].as_str().unwrap().contains("contacts"));

    // Metrics: counts, writes and API usage per connection.
    let m = s.text("/metrics").await;
    for needle in [
        "puente_records{sync=\"contacts\",status=\"in_sync\"} 20",
        "puente_records_written_total{",
        "puente_http_requests_total{connection=\"crm\"}",
        "puente_sync_lag_seconds{sync=\"contacts\"}",
        "puente_webhooks_total{connection=\"crm\",outcome=\"accepted\"}",
    ] {
        assert!(m.contains(needle), "{needle} not in\n{m}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_forged_webhook_is_refused_and_a_signed_one_carries_a_change_across() {
    let s = Served::start(Setup::default()).await;
    let forged = s
        .http
        .post(format!("{}/webhooks/crm", s.url))
        .header("x-hubspot-signature-v3", "bm90IGEgc2lnbmF0dXJl")
        .header(
            "x-hubspot-request-timestamp",
            chrono::Utc::now().timestamp_millis().to_string(),
        )
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let big = s
        .http
        .post(format!("{}/webhooks/crm", s.url))
        .body(vec![b'['; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let none = s
        .http
        .post(format!("{}/webhooks/db", s.url))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    // With polling hourly, only the webhook can bring these across in time.
    let n = 20;
    let mut l = latencies(&s, n, 20).await;
    l.sort();
    println!(
        "webhook latency over {n} changes: p50 {:?}, p99 {:?}, max {:?}",
        quantile(&l, 0.5),
        quantile(&l, 0.99),
        l[l.len() - 1]
    );
    s.stop().await;
}
