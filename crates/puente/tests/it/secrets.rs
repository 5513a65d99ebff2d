//! Secrets are sealed at rest and never shown: credentials kept in the
//! vault (`puente secrets set`), an OAuth access token cached there between
//! runs, and not one of them in the logs (at trace level), the error
//! messages, `status`/`records`/`runs` output, the API, the dashboard or the
//! state store's bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use puente_hubspot_sandbox::{Running, SandboxOptions};
use puente_testkit::Db;

const CLIENT_SECRET: &str = "canary-client-secret-7f3a9c";
const DB_PASSWORD: &str = "canary-db-password-41be07";
const ADMIN_TOKEN: &str = "canary-admin-token-c0ffee-2b91d4";

struct Puente {
    dir: PathBuf,
    key_file: PathBuf,
}

impl Puente {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_puente"));
        c.current_dir(&self.dir)
            .args(args)
            .env("PUENTE_SECRET_KEY_FILE", &self.key_file)
            .env("PUENTE_LOG", "trace")
            .env_remove("PUENTE_SECRET_KEY")
            .env_remove("PUENTE_ADMIN_TOKEN");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("puente runs")
    }

    fn set(&self, name: &str, value: &str) {
        let mut child = self
            .cmd(&["secrets", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `postgres://user@host/db` with a password added.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

fn config(dir: &Path, name: &str, db_secret: &str, sb: &Running) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"
[state]
url = "sqlite://state.db"
[serve]
admin_token = {{ vault = "admin-token" }}
[connections.db]
kind = "postgres"
url = {{ vault = "{db_secret}" }}
[connections.crm]
kind = "hubspot"
base_url = "{}"
client_id = "sandbox-client-id"
client_secret = {{ vault = "crm-client-secret" }}
refresh_token = {{ vault = "crm-refresh-token" }}
webhook_secret = {{ vault = "crm-client-secret" }}
rate_limit_per_10s = 100000
[[syncs]]
name = "contacts"
a = {{ connection = "db", object = "people", cursor = "updated_at" }}
b = {{ connection = "crm", object = "contacts" }}
match = [{{ a = "email", b = "email" }}]
fields = [
  {{ a = "email", b = "email" }},
  {{ a = "first_name", b = "firstname" }},
  {{ a = "last_name", b = "lastname" }},
]
"#,
            sb.url
        ),
    )
    .unwrap();
    path
}

async fn refresh_token(sb: &Running) -> String {
    let tokens = sb
        .install_app(&["crm.objects.contacts.write"])
        .await
        .unwrap();
    tokens["refresh_token"].as_str().unwrap().to_string()
}

/// Every page and endpoint `puente serve` shows, read with the admin token.
async fn read_server(p: &Puente, config: &Path) -> String {
    let port = puente_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = p.dir.join("serve.log");
    let mut child = p
        .cmd(&[
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            &listen,
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(p.dir.join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "puente serve did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mut seen = String::new();
    for path in [
        "/api/overview",
        "/api/connections",
        "/api/syncs",
        "/api/syncs/contacts",
        "/api/records",
        "/api/records.csv",
        "/api/runs",
        "/api/conflicts",
        "/api/alerts",
        "/syncs/contacts/dry-run",
        "/",
        "/syncs/contacts",
        "/records",
        "/records.csv",
        "/runs",
        "/conflicts",
        "/metrics",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        seen.push_str(&r.text().await.unwrap());
    }
    // A forged webhook and a wrong token are refused without echoing anything.
    let r = http
        .post(format!("{base}/webhooks/crm"))
        .header("x-hubspot-signature-v3", "forged")
        .header("x-hubspot-request-timestamp", "1")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    seen.push_str(&r.text().await.unwrap());
    let r = http
        .get(format!("{base}/api/overview"))
        .bearer_auth("canary-admin-token-c0ffee-2b91d5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    seen.push_str(&r.text().await.unwrap());
    let _ = child.kill();
    let _ = child.wait();
    seen.push_str(&std::fs::read_to_string(&log).unwrap());
    seen.push_str(&std::fs::read_to_string(p.dir.join("serve.err")).unwrap());
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_at_rest_and_never_shown() {
    let sb = Running::start(SandboxOptions {
        client_secret: CLIENT_SECRET.into(),
        ..SandboxOptions::unthrottled()
    })
    .await
    .unwrap();
    let refresh = refresh_token(&sb).await;
    // The code exchange issued one access token, which Puente never sees.
    let issued = sb.sandbox.access_tokens().len();
    let pg = Db::pg().await;
    pg.contacts("people", 1, 40, false).await;

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    let p = Puente {
        dir: dir.path().to_path_buf(),
        key_file: key_file.clone(),
    };
    let keygen = p.run(&["secrets", "keygen"]);
    assert!(keygen.status.success(), "{}", text(&keygen));
    let key = String::from_utf8(keygen.stdout).unwrap();
    std::fs::write(&key_file, &key).unwrap();

    let cfg = config(dir.path(), "puente.toml", "db-url", &sb);
    let down = config(dir.path(), "down.toml", "db-down-url", &sb);
    p.set("crm-client-secret", CLIENT_SECRET);
    p.set("crm-refresh-token", &refresh);
    p.set("db-url", &with_password(pg.url(), DB_PASSWORD));
    // A server that is not there: its connection error names the URL.
    p.set(
        "db-down-url",
        &format!("postgres://app:{DB_PASSWORD}@127.0.0.1:1/crm"),
    );
    p.set("admin-token", ADMIN_TOKEN);

    let mut shown = String::new();
    let mut show = |o: &Output| shown.push_str(&text(o));

    let v = p.run(&["validate"]);
    assert!(v.status.success(), "{}", text(&v));
    show(&v);
    let s = p.run(&["sync"]);
    assert!(s.status.success(), "{}", text(&s));
    show(&s);
    // validate fetched an access token; sync, another process, reused it.
    assert_eq!(sb.sandbox.access_tokens().len(), issued + 1);
    // So does a third. the access token sealed in the vault.
    let s = p.run(&["sync", "--json"]);
    assert!(s.status.success(), "{}", text(&s));
    show(&s);
    assert_eq!(
        sb.sandbox.access_tokens().len(),
        issued + 1,
        "the cached access token was not reused"
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["records", "--format", "csv"],
        &["records", "--format", "json"],
        &["runs"],
        &["conflicts", "--all"],
        &["sync", "--dry-run"],
        &["secrets", "list"],
    ] {
        let o = p.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        show(&o);
    }
    let listed = p.run(&["secrets", "list"]);
    assert!(text(&listed).contains("oauth:crm"), "{}", text(&listed));

    shown.push_str(&read_server(&p, &cfg).await);

    // Failures: a refused refresh token, an unreachable database.
    sb.sandbox.revoke_refresh_token(&refresh);
    sb.sandbox.expire_access_tokens();
    let f = p.run(&["sync"]);
    assert!(!f.status.success());
    assert!(text(&f).contains("authorize the app again"), "{}", text(&f));
    shown.push_str(&text(&f));
    let f = p.run(&["--config", down.to_str().unwrap(), "validate"]);
    assert!(!f.status.success());
    assert!(text(&f).contains("127.0.0.1:1"), "{}", text(&f));
    shown.push_str(&text(&f));
    // Without the key, the vault does not open, and says how to fix it.
    let f = p
        .cmd(&["status"])
        .env_remove("PUENTE_SECRET_KEY_FILE")
        .output()
        .unwrap();
    assert!(text(&f).contains("no secret key is set"), "{}", text(&f));
    shown.push_str(&text(&f));

    let mut canaries = vec![
        CLIENT_SECRET.to_string(),
        DB_PASSWORD.to_string(),
        ADMIN_TOKEN.to_string(),
        refresh.clone(),
        key.trim().to_string(),
    ];
    canaries.extend(sb.sandbox.access_tokens());
    // The trace covered the token refresh and the database connection.
    assert!(
        shown.len() > 10_000,
        "the trace shows work: {} bytes",
        shown.len()
    );
    assert!(shown.contains("/oauth/v1/token"), "the refresh is traced");
    assert!(shown.contains("TRACE"), "trace level is on");
    for c in &canaries {
        assert!(
            !shown.contains(c.as_str()),
            "a secret was shown: …{}…",
            &shown[shown.find(c.as_str()).unwrap().saturating_sub(200)..][..400.min(shown.len())]
        );
    }
    // At rest: not one secret in the state store's files.
    let mut at_rest = Vec::new();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state.db")
        {
            at_rest.extend(std::fs::read(&f).unwrap());
        }
    }
    assert!(at_rest.len() > 4096);
    let at_rest = String::from_utf8_lossy(&at_rest);
    assert!(at_rest.contains("oauth:crm") && at_rest.contains("crm-refresh-token"));
    for c in &canaries {
        assert!(
            !at_rest.contains(c.as_str()),
            "a secret is stored in the clear"
        );
    }
}
