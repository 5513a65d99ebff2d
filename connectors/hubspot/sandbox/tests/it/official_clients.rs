//! The sandbox's fidelity, checked by HubSpot's own clients: the Python
//! client (`hubspot-api-client`) and the Node client (`@hubspot/api-client`)
//! drive a fresh sandbox with only the host changed; and hubspot3, a
//! maintained Python client of HubSpot's legacy endpoints, lists properties
//! through them. `scripts/clients.sh` installs them (scripts/test.sh runs
//! it).

use std::path::PathBuf;
use std::process::Command;

use puente_hubspot_sandbox::{Running, SandboxOptions};

/// The workspace's root (the venv lives there).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// This crate's client checks.
fn clients() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start ({e}); run scripts/clients.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("\"ok\""),
        "{what} failed:\n{stdout}\n{}",
        stderr
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_client_works_against_the_sandbox() {
    let python = root().join(".clients/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/clients.sh to install HubSpot's Python client",
        python.display()
    );
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let limited = Running::start(SandboxOptions {
        rate_limit_per_10s: 5,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let script = clients().join("python_check.py");
    let (url, token, lim) = (sb.url.clone(), sb.token().to_string(), limited.url.clone());
    tokio::task::spawn_blocking(move || {
        run(
            Command::new(python).arg(script).args([&url, &token, &lim]),
            "the Python client check",
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_node_client_works_against_the_sandbox() {
    let dir = clients().join("node");
    assert!(
        dir.join("node_modules/@hubspot/api-client").exists(),
        "HubSpot's Node client is not installed: run scripts/clients.sh"
    );
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    let (url, token) = (sb.url.clone(), sb.token().to_string());
    tokio::task::spawn_blocking(move || {
        run(
            Command::new("node")
                .current_dir(&dir)
                .args(["check.mjs", &url, &token]),
            "the Node client check",
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot3_lists_properties_through_the_legacy_endpoints() {
    let python = root().join(".clients/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/clients.sh to install hubspot3",
        python.display()
    );
    let sb = Running::start(SandboxOptions::default()).await.unwrap();
    // A custom property, to be listed beside HubSpot's own.
    sb.call(
        reqwest::Method::POST,
        "/crm/v3/properties/contacts",
        Some(serde_json::json!({"name": "favourite_colour", "label": "Favourite colour", "type": "enumeration", "fieldType": "select", "groupName": "contactinformation", "options": [{"label": "Red", "value": "red"}, {"label": "Blue", "value": "blue"}]})),
    )
    .await
    .unwrap();
    let script = clients().join("legacy_check.py");
    let (url, token) = (sb.url.clone(), sb.token().to_string());
    tokio::task::spawn_blocking(move || {
        run(
            Command::new(python).arg(script).args([&url, &token]),
            "the hubspot3 legacy check",
        )
    })
    .await
    .unwrap();
}
