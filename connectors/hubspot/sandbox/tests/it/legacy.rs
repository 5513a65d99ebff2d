//! HubSpot's legacy property listings and its 404 for a path it does not
//! serve, over plain HTTP (hubspot3 drives the same endpoints in
//! official_clients.rs).

use puente_hubspot_sandbox::{Running, SandboxOptions};
use serde_json::{json, Value as J};

async fn get(sb: &Running, path: &str) -> (u16, J) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sb.url))
        .bearer_auth(sb.token())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=utf-8",
        "{path}"
    );
    (status, r.json().await.unwrap())
}

fn names(list: &J) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_legacy_endpoints_list_the_property_store_in_the_legacy_shape() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    sb.call(
        reqwest::Method::POST,
        "/crm/v3/properties/deals",
        Some(json!({"name": "region", "label": "Region", "type": "enumeration", "fieldType": "radio", "groupName": "dealinformation", "options": [{"label": "North", "value": "n"}]})),
    )
    .await
    .unwrap();
    let (_, v3) = get(&sb, "/crm/v3/properties/deals").await;
    for path in [
        "/properties/v1/deals/properties",
        "/properties/v1/deals/properties/",
        "/properties/v2/deals/properties",
        "/properties/v2/0-3/properties",
    ] {
        let (status, list) = get(&sb, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            names(&list),
            names(&v3["results"]),
            "{path}: the same store"
        );
    }
    let (_, list) = get(&sb, "/properties/v1/deals/properties").await;
    let by = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()
            .clone()
    };
    let region = by("region");
    assert_eq!(region["label"], "Region");
    assert_eq!(region["groupName"], "dealinformation");
    assert_eq!(region["fieldType"], "radio");
    assert_eq!(region["hubspotDefined"], J::Null);
    assert_eq!(region["deleted"], false);
    assert!(region["createdAt"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(region["readOnlyDefinition"], false);
    assert_eq!(region["mutableDefinitionNotDeletable"], false);
    assert_eq!(
        region["options"],
        json!([{"label": "North", "value": "n", "displayOrder": 0, "hidden": false, "readOnly": false, "description": null, "doubleData": 0.0}])
    );
    let dealname = by("dealname");
    assert_eq!(dealname["hubspotDefined"], true);
    assert_eq!(dealname["createdAt"], J::Null);
    assert_eq!(dealname["displayMode"], "current_value");
    assert_eq!(dealname["displayOrder"], -1);
    assert_eq!(dealname["favoritedOrder"], -1);
    assert!(dealname.get("modificationMetadata").is_none());
    let lastmod = by("hs_lastmodifieddate");
    assert_eq!(lastmod["readOnlyValue"], true);
    assert_eq!(lastmod["formField"], false);
    assert_eq!(lastmod["type"], "datetime");

    let (status, companies) = get(&sb, "/companies/v2/properties").await;
    assert_eq!(status, 200);
    assert!(names(&companies).contains(&"domain".to_string()));
    let (status, tickets) = get(&sb, "/properties/v2/tickets/properties").await;
    assert_eq!(status, 200);
    assert!(names(&tickets).contains(&"subject".to_string()));
}

#[tokio::test]
async fn a_path_hubspot_does_not_serve_gets_its_json_404() {
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    for path in [
        "/contacts/v1/contact/vid/1001/profile",
        "/properties/v1/tickets/properties",
        "/crm/v9/objects/contacts",
    ] {
        let (status, body) = get(&sb, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["status"], "error", "{path}");
        assert_eq!(body["message"], "resource not found", "{path}");
        assert_eq!(body["correlationId"].as_str().unwrap().len(), 36, "{path}");
    }
    // An unknown object type on v2 is refused as v3 refuses it.
    let (status, body) = get(&sb, "/properties/v2/widgets/properties").await;
    assert_eq!(status, 400);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    // Unknown paths are behind auth like the rest of the API.
    let r = reqwest::get(format!("{}/contacts/v1/lists", sb.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
