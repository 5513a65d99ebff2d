//! The always-on loop behind `puente serve`: one worker per sync, woken by
//! its poll interval, its reconciliation schedule, a webhook (after the
//! debounce) or a person ("run now"). A worker runs one pass at a time;
//! pausing is remembered in the state store, so it outlives a restart.
//! Shutdown lets a running pass finish (its chunks are atomic and its
//! cursors are committed last), then stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use puente_core::ErrorKind;
use tokio::sync::{watch, Notify};

use puente_state::Marker;

use crate::{Engine, EngineError, Progress, RunOptions, SyncDef, SyncReport};

/// What a sync is doing right now, for the dashboard and the API.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub phase: String,
    pub records: u64,
    pub done: u64,
    pub total: u64,
    pub records_per_sec: f64,
    pub started_at: DateTime<Utc>,
}

/// The last finished pass.
#[derive(Clone, Debug)]
pub struct LastRun {
    pub finished_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub full: bool,
    pub ok: bool,
    pub error: Option<String>,
    pub report: Option<SyncReport>,
}

/// A worker's state as the outside sees it.
#[derive(Clone, Debug, Default)]
pub struct WorkerState {
    pub paused: bool,
    pub running: bool,
    pub live: Option<Live>,
    pub last: Option<LastRun>,
    /// The start of the last pass that succeeded: every change made before
    /// it has reached the other side.
    pub synced_until: Option<DateTime<Utc>>,
    /// Since when passes have been failing (cleared by a success).
    pub failing_since: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub next_reconcile: Option<DateTime<Utc>>,
    pub runs: u64,
    pub failed_runs: u64,
    /// Passes skipped because another process was running one of this sync.
    pub busy_skips: u64,
    /// Why the last pass was skipped, until a pass runs.
    pub busy: Option<String>,
}

impl WorkerState {
    /// Seconds since the last successful pass started (how stale the
    /// other side may be), `None` before the first success.
    pub fn lag_secs(&self, now: DateTime<Utc>) -> Option<f64> {
        self.synced_until
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
    }
}

/// Something a pass did that alerts and metrics care about.
#[derive(Clone, Debug)]
pub enum Event {
    Finished {
        sync: String,
        report: Box<SyncReport>,
    },
    Failed {
        sync: String,
        /// Whose fault, when a connection failed as a whole.
        connection: Option<(String, ErrorKind)>,
        message: String,
        failing_since: DateTime<Utc>,
    },
}

pub type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// How soon a worker tries again after finding its sync busy.
const BUSY_RETRY: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Due {
    run_now: bool,
    full_now: bool,
    /// When the latest webhook for this sync arrived (debounce start).
    pushed_at: Option<Instant>,
}

struct Worker {
    def: SyncDef,
    wake: Notify,
    due: Mutex<Due>,
    /// Shared with a pass's progress callback.
    state: Arc<Mutex<WorkerState>>,
    /// Taken for the length of a pass, a dry run or a restore.
    running: tokio::sync::Mutex<()>,
}

/// One worker per enabled sync.
pub struct Scheduler {
    engine: Arc<Engine>,
    workers: BTreeMap<String, Arc<Worker>>,
    on_event: Option<EventFn>,
}

impl Scheduler {
    /// Loads the remembered pauses; starts nothing yet.
    pub async fn new(engine: Arc<Engine>, on_event: Option<EventFn>) -> Result<Self, EngineError> {
        let mut workers = BTreeMap::new();
        for def in engine.config.syncs.iter().filter(|s| s.enabled) {
            let paused = engine
                .state
                .marker(&def.name, Marker::Paused)
                .await?
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let state = WorkerState {
                paused,
                ..WorkerState::default()
            };
            workers.insert(
                def.name.clone(),
                Arc::new(Worker {
                    def: def.clone(),
                    wake: Notify::new(),
                    due: Mutex::new(Due::default()),
                    state: Arc::new(Mutex::new(state)),
                    running: tokio::sync::Mutex::new(()),
                }),
            );
        }
        Ok(Scheduler {
            engine,
            workers,
            on_event,
        })
    }

    /// The syncs this scheduler runs, in config (dependency) order.
    pub fn names(&self) -> Vec<String> {
        self.engine
            .config
            .syncs
            .iter()
            .filter(|s| self.workers.contains_key(&s.name))
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn state(&self, sync: &str) -> Option<WorkerState> {
        self.workers
            .get(sync)
            .map(|w| w.state.lock().expect("state").clone())
    }

    fn worker(&self, sync: &str) -> Result<&Arc<Worker>, EngineError> {
        self.workers.get(sync).ok_or_else(|| {
            EngineError::Refused(format!(
                "no enabled sync named {sync}; syncs are: {}",
                self.names().join(", ")
            ))
        })
    }

    /// Pauses or resumes a sync; remembered across restarts.
    pub async fn set_paused(&self, sync: &str, paused: bool) -> Result<(), EngineError> {
        let w = self.worker(sync)?;
        self.engine
            .state
            .set_marker(sync, Marker::Paused, &serde_json::Value::Bool(paused))
            .await?;
        w.state.lock().expect("state").paused = paused;
        w.wake.notify_one();
        Ok(())
    }

    /// Asks for a pass now (`full`: a reconciliation). Paused syncs stay paused.
    pub fn run_now(&self, sync: &str, full: bool) -> Result<(), EngineError> {
        let w = self.worker(sync)?;
        {
            let mut d = w.due.lock().expect("due");
            d.run_now = true;
            d.full_now |= full;
        }
        w.wake.notify_one();
        Ok(())
    }

    /// A webhook named records of `connection`: every sync reading it is due
    /// (after its debounce). Returns the syncs woken.
    pub fn pushed(&self, connection: &str) -> Vec<String> {
        let mut woken = Vec::new();
        for (name, w) in &self.workers {
            if w.def.a.connection == connection || w.def.b.connection == connection {
                w.due.lock().expect("due").pushed_at = Some(Instant::now());
                w.wake.notify_one();
                woken.push(name.clone());
            }
        }
        woken
    }

    /// A pass now, as the worker runs them (live progress, state, events),
    /// after any pass in progress; waits for it.
    pub async fn pass_now(&self, sync: &str) -> Result<SyncReport, EngineError> {
        let w = self.worker(sync)?.clone();
        self.pass(&w, false).await
    }

    /// Runs `work` (a dry run, a restore) while no pass of `sync` runs.
    pub async fn exclusive<T>(&self, sync: &str, work: impl std::future::Future<Output = T>) -> T {
        let _guard = match self.workers.get(sync) {
            Some(w) => Some(w.running.lock().await),
            None => None,
        };
        work.await
    }

    /// Runs every worker until `stop` turns true; a pass in progress finishes first.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for w in self.workers.values() {
            let me = self.clone();
            let w = w.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { me.work(w, stop).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn work(&self, w: Arc<Worker>, mut stop: watch::Receiver<bool>) {
        let sched = w.def.schedule.clone();
        let mut last_reconcile = match self
            .engine
            .state
            .marker(&w.def.name, Marker::ReconciledAt)
            .await
        {
            Ok(Some(v)) => v
                .as_i64()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or_else(Utc::now),
            _ => Utc::now(),
        };
        // The first poll comes at once: a restart catches up straight away.
        let mut next_poll = Instant::now();
        // After finding the sync busy (another process runs a pass), the
        // next try waits a moment rather than spinning.
        let mut not_before = Instant::now();
        loop {
            let next_reconcile = sched.reconcile.next_after(last_reconcile);
            let (paused, wait) = {
                let d = w.due.lock().expect("due");
                let mut st = w.state.lock().expect("state");
                st.next_reconcile = next_reconcile;
                st.next_poll = Some(
                    Utc::now()
                        + chrono::Duration::from_std(
                            next_poll.saturating_duration_since(Instant::now()),
                        )
                        .unwrap_or_default(),
                );
                let mut wait = next_poll.saturating_duration_since(Instant::now());
                if let Some(t) = next_reconcile {
                    wait = wait.min((t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                }
                if let Some(p) = d.pushed_at {
                    wait = wait.min((p + sched.debounce).saturating_duration_since(Instant::now()));
                }
                if d.run_now {
                    wait = Duration::ZERO;
                }
                wait = wait.max(not_before.saturating_duration_since(Instant::now()));
                (st.paused, wait)
            };
            if *stop.borrow() {
                return;
            }
            if paused || !wait.is_zero() {
                let nap = if paused {
                    Duration::from_secs(3600)
                } else {
                    wait
                };
                tokio::select! {
                    _ = w.wake.notified() => {}
                    _ = tokio::time::sleep(nap) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            let (full, run_now) = {
                let mut d = w.due.lock().expect("due");
                let full = d.full_now || next_reconcile.is_some_and(|t| t <= Utc::now());
                let run_now = d.run_now;
                *d = Due::default();
                (full, run_now)
            };
            next_poll = Instant::now() + sched.poll;
            let started = Utc::now();
            let result = self.pass(&w, full).await;
            if let Err(EngineError::Busy { .. }) = result {
                // Asked for, and not done: still asked for.
                let mut d = w.due.lock().expect("due");
                d.run_now |= run_now;
                d.full_now |= full && run_now;
                not_before = Instant::now() + BUSY_RETRY;
                continue;
            }
            let ok = result.is_ok();
            if full && ok {
                last_reconcile = started;
                let _ = self
                    .engine
                    .state
                    .set_marker(
                        &w.def.name,
                        Marker::ReconciledAt,
                        &started.timestamp().into(),
                    )
                    .await;
            }
        }
    }

    /// One pass with live progress; updates the worker's state and reports events.
    async fn pass(&self, w: &Worker, full: bool) -> Result<SyncReport, EngineError> {
        let _guard = w.running.lock().await;
        let started = Utc::now();
        {
            let mut st = w.state.lock().expect("state");
            st.running = true;
            st.live = Some(Live {
                phase: "starting".into(),
                started_at: started,
                ..Live::default()
            });
        }
        let clock = Instant::now();
        let progress: crate::ProgressFn = {
            let state = w.state.clone();
            Arc::new(move |p: Progress| {
                let secs = clock.elapsed().as_secs_f64().max(0.001);
                let mut st = state.lock().expect("state");
                let Some(live) = st.live.as_mut() else { return };
                match p {
                    Progress::Reading { side, records, .. } => {
                        live.phase = format!("reading {side}");
                        live.records = records as u64;
                        live.records_per_sec = records as f64 / secs;
                    }
                    Progress::Planned { items, .. } => {
                        live.phase = "planning".into();
                        live.total = items as u64;
                    }
                    Progress::Applying { done, total, .. } => {
                        live.phase = "writing".into();
                        live.done = done as u64;
                        live.total = total as u64;
                        live.records_per_sec = done as f64 / secs;
                    }
                }
            })
        };
        let opts = RunOptions {
            dry_run: false,
            full,
            progress: Some(progress),
            // Another process running a pass of this sync: skipped, and
            // tried again at the next poll.
            wait: Duration::ZERO,
        };
        let result = self.engine.run(&w.def, &opts).await;
        let event = {
            let mut st = w.state.lock().expect("state");
            st.running = false;
            st.live = None;
            if let Err(EngineError::Busy { holder, .. }) = &result {
                st.busy_skips += 1;
                st.busy = Some(format!("skipped: a pass is running in {holder}"));
                tracing::info!(sync = %w.def.name, %holder, "pass skipped: the sync is busy");
                return result;
            }
            st.busy = None;
            st.runs += 1;
            st.last = Some(LastRun {
                finished_at: Utc::now(),
                started_at: started,
                full,
                ok: result.is_ok(),
                error: result.as_ref().err().map(ToString::to_string),
                report: result.as_ref().ok().cloned(),
            });
            match &result {
                Ok(report) => {
                    st.synced_until = Some(started);
                    st.failing_since = None;
                    Event::Finished {
                        sync: w.def.name.clone(),
                        report: Box::new(report.clone()),
                    }
                }
                Err(e) => {
                    st.failed_runs += 1;
                    tracing::warn!(sync = %w.def.name, error = %e, "pass failed");
                    Event::Failed {
                        sync: w.def.name.clone(),
                        connection: match e {
                            EngineError::Connector { connection, source } => {
                                Some((connection.clone(), source.kind))
                            }
                            _ => None,
                        },
                        message: e.to_string(),
                        failing_since: *st.failing_since.get_or_insert(started),
                    }
                }
            }
        };
        if let Some(f) = &self.on_event {
            f(&event);
        }
        result
    }
}
