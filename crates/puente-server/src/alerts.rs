//! Alerts for severe errors, to a webhook (Slack-compatible `{"text": …}`)
//! and by e-mail (SMTP). Severe means a person must act: credentials
//! revoked, a connection down longer than a threshold, a sync whose
//! failure rate passes a threshold, a daily API budget nearly spent. Mild
//! errors (one record failing) are logged and shown, not alerted. Each
//! alert says what broke and what to do, is sent once, and is sent again
//! only after its condition cleared.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use puente_core::ErrorKind;
use puente_engine::scheduler::Event;
use serde::Serialize;

use crate::App;

/// Where alerts go and when they fire (`[serve.alerts]`).
pub use puente_engine::config::AlertsDef as AlertSettings;

/// A failure rate is only judged once a sync holds this many records.
const FAILURE_RATE_MIN_RECORDS: i64 = 20;

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub at: DateTime<Utc>,
    /// What it is about: `auth_revoked`, `connection_down`, `failure_rate`, `daily_budget`.
    pub kind: String,
    /// The connection or sync.
    pub subject: String,
    pub what: String,
    pub action: String,
}

impl Alert {
    fn text(&self) -> String {
        format!(
            "Puente alert ({}): {}\nWhat to do: {}",
            self.subject, self.what, self.action
        )
    }
}

/// Since when a connection fails, how, and its last message.
type ConnectionError = (DateTime<Utc>, ErrorKind, String);

pub struct Alerts {
    settings: AlertSettings,
    http: reqwest::Client,
    /// Conditions alerted and not yet cleared (kind/subject).
    active: Mutex<BTreeMap<String, Alert>>,
    recent: Mutex<VecDeque<Alert>>,
    /// The last error of each connection that failed as a whole, until a
    /// pass using it succeeds.
    connection_errors: Mutex<BTreeMap<String, ConnectionError>>,
    /// Each sync's two connections.
    connections_of: BTreeMap<String, [String; 2]>,
}

impl Alerts {
    pub fn new(settings: AlertSettings, connections_of: BTreeMap<String, [String; 2]>) -> Alerts {
        Alerts {
            connections_of,
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("the TLS backend is compiled in"),
            active: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(VecDeque::new()),
            connection_errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn recent(&self) -> Vec<Alert> {
        self.recent
            .lock()
            .expect("alerts")
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    pub fn connection_error(&self, connection: &str) -> Option<String> {
        self.connection_errors
            .lock()
            .expect("errors")
            .get(connection)
            .map(|(_, _, m)| m.clone())
    }

    /// Raises an alert unless the same condition is already raised.
    fn raise(&self, kind: &str, subject: &str, what: String, action: String) {
        let key = format!("{kind}/{subject}");
        let alert = Alert {
            at: Utc::now(),
            kind: kind.into(),
            subject: subject.into(),
            what,
            action,
        };
        {
            let mut active = self.active.lock().expect("alerts");
            if active.contains_key(&key) {
                return;
            }
            active.insert(key, alert.clone());
        }
        tracing::error!(kind, subject, what = %alert.what, "alert");
        {
            let mut r = self.recent.lock().expect("alerts");
            r.push_back(alert.clone());
            while r.len() > 100 {
                r.pop_front();
            }
        }
        self.send(alert);
    }

    fn clear(&self, kind: &str, subject: &str) {
        self.active
            .lock()
            .expect("alerts")
            .remove(&format!("{kind}/{subject}"));
    }

    fn send(&self, alert: Alert) {
        if let Some(url) = self.settings.webhook_url.clone() {
            let http = self.http.clone();
            let body = serde_json::json!({ "text": alert.text(), "alert": &alert });
            tokio::spawn(async move {
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "alert webhook refused the alert")
                    }
                    Err(e) => tracing::warn!(error = %e.without_url(), "alert webhook unreachable"),
                }
            });
        }
        if let (Some(url), Some(from)) = (
            self.settings.smtp_url.clone(),
            self.settings.email_from.clone(),
        ) {
            let to = self.settings.email_to.clone();
            tokio::spawn(async move {
                if let Err(e) = email(&url, &from, &to, &alert).await {
                    tracing::warn!(error = %e, "alert e-mail not sent");
                }
            });
        }
    }

    /// Reacts to a finished or failed pass.
    pub fn observe(&self, e: &Event) {
        match e {
            Event::Failed {
                sync,
                connection: Some((conn, kind)),
                message,
                failing_since,
            } => {
                self.connection_errors
                    .lock()
                    .expect("errors")
                    .entry(conn.clone())
                    .or_insert_with(|| (*failing_since, *kind, message.clone()))
                    .2 = message.clone();
                if *kind == ErrorKind::Auth {
                    self.raise(
                        "auth_revoked",
                        conn,
                        format!("connection {conn} refused Puente's credentials (sync {sync} stopped): {message}"),
                        format!("authorize the app again or put a new token in the config for {conn}, then restart puente serve"),
                    );
                }
            }
            Event::Failed { .. } => {}
            Event::Finished { sync, .. } => {
                // A pass through a connection proves it answers again.
                for c in self.connections_of.get(sync).into_iter().flatten() {
                    let was = self.connection_errors.lock().expect("errors").remove(c);
                    if was.is_some() {
                        self.clear("auth_revoked", c);
                        self.clear("connection_down", c);
                    }
                }
            }
        }
    }
}

/// Sends one alert by e-mail.
async fn email(url: &str, from: &str, to: &[String], alert: &Alert) -> Result<(), String> {
    use lettre::message::Mailbox;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut b = Message::builder()
        .from(
            from.parse::<Mailbox>()
                .map_err(|e| format!("email_from: {e}"))?,
        )
        .subject(format!("Puente alert: {} ({})", alert.kind, alert.subject));
    for t in to {
        b = b.to(t
            .parse::<Mailbox>()
            .map_err(|e| format!("email_to {t}: {e}"))?);
    }
    let msg = b.body(alert.text()).map_err(|e| e.to_string())?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| format!("smtp_url: {e}"))?
        .timeout(Some(Duration::from_secs(20)))
        .build();
    transport.send(msg).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Checks the thresholds every few seconds: connections down, failure
/// rates, daily budgets.
pub async fn watch(app: App) {
    let every = Duration::from_secs(app.alerts.settings.check_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        check(&app).await;
    }
}

async fn check(app: &App) {
    let s = &app.alerts.settings;
    let now = Utc::now();
    // Connections down (errors are cleared by a pass that succeeds).
    let down: Vec<(String, i64, String)> = app
        .alerts
        .connection_errors
        .lock()
        .expect("errors")
        .iter()
        .filter(|(_, (_, kind, _))| *kind != ErrorKind::Auth)
        .map(|(c, (since, _, m))| (c.clone(), (now - *since).num_seconds(), m.clone()))
        .filter(|(_, secs, _)| *secs >= s.connection_down_secs as i64)
        .collect();
    for (c, secs, m) in down {
        app.alerts.raise(
            "connection_down",
            &c,
            format!("connection {c} has failed for {} minutes: {m}", secs / 60),
            format!("check that {c} is reachable and its service is up; syncs resume by themselves once it answers"),
        );
    }
    // Failure rates.
    for name in app.scheduler.names() {
        let Ok(c) = app.engine.state.status_counts(&name).await else {
            continue;
        };
        let judged = c.in_sync + c.failed;
        let rate = if judged > 0 {
            c.failed as f64 / judged as f64
        } else {
            0.0
        };
        if judged >= FAILURE_RATE_MIN_RECORDS && rate > s.failure_rate {
            let top = c
                .failures_by_category
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(k, n)| format!("; most are {k} ({n})"))
                .unwrap_or_default();
            app.alerts.raise(
                "failure_rate",
                &name,
                format!(
                    "sync {name}: {} of {judged} records failed ({:.0}%){top}",
                    c.failed,
                    rate * 100.0
                ),
                format!("open the dashboard's failed records for {name}: each category has a hint; fix the cause and press Retry failed"),
            );
        } else if rate <= s.failure_rate / 2.0 {
            app.alerts.clear("failure_rate", &name);
        }
    }
    // Daily budgets.
    for v in crate::api::connection_views(app).await {
        let Some(u) = v.usage else { continue };
        let (Some(used), Some(limit)) = (u.daily_used, u.daily_limit) else {
            continue;
        };
        if limit == 0 {
            continue;
        }
        let share = used as f64 / limit as f64;
        if share >= s.budget_share {
            app.alerts.raise(
                "daily_budget",
                &v.name,
                format!(
                    "connection {}: {used} of today's {limit} API requests used ({:.0}%)",
                    v.name,
                    share * 100.0
                ),
                "syncs stop calling this API when the budget is spent and resume at midnight UTC; pause the least important syncs or raise the account's limit".into(),
            );
        } else {
            app.alerts.clear("daily_budget", &v.name);
        }
    }
}
