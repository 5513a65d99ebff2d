//! One pass of one sync, in the steps ARCHITECTURE.md numbers: open (here),
//! recover intents (`recover`), detect deletes (`deletes`), stream each
//! side's changes (`stream`), revisit failed and waiting records
//! (`revisit`), plan (`gather`) and apply (`apply`) a page at a time, commit
//! the cursors (here). A gradual exchange's backfill is `backfill`; a dry
//! run is `preview`. Every step works on one [`Pass`].

mod apply;
mod backfill;
mod deletes;
mod gather;
mod preview;
mod recover;
mod revisit;
mod stream;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use puente_core::{ConnectorError, Object, Record, Side};
use puente_plan::{Direction, SyncSpec};
use puente_state::{Commit, Marker};
use tracing::Instrument;

pub use backfill::BackfillStatus;
pub(crate) use recover::intent_conditions;

use crate::lease::PassLease;
use crate::{Engine, EngineError, Progress, RunOptions, SyncDef, SyncReport};

/// A pass in progress: what every step reads and adds to.
pub(crate) struct Pass<'e> {
    pub engine: &'e Engine,
    pub def: &'e SyncDef,
    pub spec: Arc<SyncSpec>,
    pub objs: [Arc<dyn Object>; 2],
    pub opts: &'e RunOptions,
    /// The run's row in the history (0 for a dry run).
    pub run_id: i64,
    pub lease: &'e PassLease,
    /// When the pass began (RFC 3339): what it writes is newer.
    pub started: String,
    pub report: SyncReport,
    /// Cursors and markers committed last, once everything they cover is.
    pub cursors: Vec<(Marker, serde_json::Value)>,
    /// The target of a one-way sync, when this pass does not read its
    /// changes (see `unread_target`).
    pub unread: Option<Side>,
    /// Whether a plan's last commit may wait for the next read
    /// (`stream_side` sets it around a page's apply): it is then made while
    /// the next page is read (`read_committing`).
    pub commit_behind: bool,
    /// That commit, fenced and ready; `finish_commit` makes it, and nothing
    /// else touches the state store before.
    pub pending_commit: Option<Commit>,
}

pub(crate) fn side_idx(s: Side) -> usize {
    match s {
        Side::A => 0,
        Side::B => 1,
    }
}

/// The ids `entries` hold on `side`, where the record is not deleted.
pub(crate) fn live_ids(entries: &[puente_plan::Entry], side: Side) -> Vec<String> {
    entries
        .iter()
        .filter(|e| !e.deleted_on(side))
        .filter_map(|e| e.id_on(side).cloned())
        .collect()
}

/// A task the pass spawned, awaited: its result, or its panic carried on.
pub(crate) async fn joined<T>(task: &mut tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a task of the pass was cancelled: {e}"),
    }
}

pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Engine {
    /// Runs one pass of a sync: holds the sync's lease for its length
    /// (waiting up to `opts.wait` for another pass to end).
    pub async fn run(&self, def: &SyncDef, opts: &RunOptions) -> Result<SyncReport, EngineError> {
        let span = tracing::info_span!(
            "sync_run",
            sync = %def.name,
            run_id = tracing::field::Empty,
            dry_run = opts.dry_run,
            full = opts.full
        );
        async move {
            let lease = self.take_lease(&def.name, opts.wait).await?;
            let result = self.run_leased(def, opts, &lease).await;
            lease.release().await;
            result
        }
        .instrument(span)
        .await
    }

    async fn run_leased(
        &self,
        def: &SyncDef,
        opts: &RunOptions,
        lease: &PassLease,
    ) -> Result<SyncReport, EngineError> {
        let clock = Instant::now();
        // 1. Open both objects and compile the spec; errors stop the run.
        let open = self.open_sync(def).await?;
        let errors: Vec<_> = open
            .diagnostics
            .iter()
            .filter(|d| !d.warning)
            .cloned()
            .collect();
        if !errors.is_empty() {
            return Err(EngineError::Config(errors));
        }
        let run_id = if opts.dry_run {
            0
        } else {
            self.state.start_run(&def.name, false).await?
        };
        tracing::Span::current().record("run_id", run_id);
        let mut pass = Pass {
            engine: self,
            def,
            spec: Arc::new(open.spec),
            objs: [open.a, open.b],
            opts,
            run_id,
            lease,
            started: puente_state::now(),
            report: SyncReport {
                name: def.name.clone(),
                dry_run: opts.dry_run,
                ..SyncReport::default()
            },
            cursors: Vec::new(),
            unread: None,
            commit_behind: false,
            pending_commit: None,
        };
        let mut result = pass.steps().await;
        // A commit still pending is made (and its failure reported) before
        // the run is recorded.
        let behind = pass.finish_commit().await;
        if result.is_ok() {
            result = behind;
        }
        let mut report = pass.report;
        report.seconds = clock.elapsed().as_secs_f64();
        if !opts.dry_run {
            let counts = report.counts();
            let (status, err) = match &result {
                Ok(()) => ("ok", None),
                Err(e) => ("failed", Some(e.to_string())),
            };
            self.state
                .finish_run(run_id, status, &counts, err.as_deref())
                .await?;
            self.prune_change_log().await;
        }
        match result {
            Ok(()) => {
                report.log();
                Ok(report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "pass failed");
                Err(e)
            }
        }
    }
}

impl Engine {
    /// Drops what the change log holds beyond `[state] change_log_days`. A
    /// failure here costs only disk, so it is logged, not raised.
    async fn prune_change_log(&self) {
        let Some(days) = self.config.change_log_days else {
            return;
        };
        let before = chrono::Utc::now() - chrono::Duration::days(days as i64);
        let before = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        match self.state.prune_changes(&before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(changes = n, days, "change log pruned"),
            Err(e) => tracing::warn!("could not prune the change log: {e}"),
        }
    }
}

impl Pass<'_> {
    /// The steps, in order.
    async fn steps(&mut self) -> Result<(), EngineError> {
        if !self.opts.dry_run {
            self.report.recovered_intents = self.recover_intents().await?;
        }
        let unrecorded_deletes = self.detect_deletes().await?;
        if self.opts.dry_run {
            return self.preview(unrecorded_deletes).await;
        }
        let mut gradual = self.gradual().await?;
        let holding = gradual.as_ref().is_some_and(|g| g.holding());
        self.unread = self.unread_target(gradual.as_ref()).await?;
        let deferred = self.stream_changes(gradual.as_mut()).await?;
        self.revisit(holding).await?;
        self.create_deferred(&deferred, holding).await?;
        // Every change read is applied or recorded as failed: the cursors move.
        let finished: HashSet<Side> = [Side::A, Side::B]
            .into_iter()
            .filter(|s| self.cursors.iter().any(|(m, _)| *m == Marker::Cursor(*s)))
            .collect();
        let cursors = std::mem::take(&mut self.cursors);
        self.commit(Commit {
            cursors,
            ..Commit::default()
        })
        .await?;
        if let Some(g) = gradual {
            self.end_backfill(&g, &finished).await?;
        }
        Ok(())
    }

    /// A one-way sync reads its target's changes only where they do
    /// something: once to the end (its records indexed, so a's are matched
    /// with them), then on a full pass (`--full`, the scheduled
    /// reconciliation). Other passes leave the target unread: its changes
    /// are ignored by the direction, a linked record's seen values stand in
    /// for it, an unlinked source record is looked up on it by its match key
    /// before it is created, and deletes have their own scan. So a pass does
    /// not read back what the sync itself wrote.
    async fn unread_target(
        &self,
        gradual: Option<&backfill::Gradual>,
    ) -> Result<Option<Side>, EngineError> {
        let target = match self.spec.direction {
            Direction::TwoWay => return Ok(None),
            Direction::AToB => Side::B,
            Direction::BToA => Side::A,
        };
        if self.opts.full || gradual.is_some() {
            return Ok(None);
        }
        // Unlinked source records are looked up on the target by key, so
        // every key must compare there as it does here: exactly, or an
        // e-mail where the target folds case. Other keys (phones, domains,
        // text) keep the target read every pass.
        let obj = self.obj(target);
        let comparable = self.spec.keys.iter().all(|k| {
            let field = match target {
                Side::A => &k.a,
                Side::B => &k.b,
            };
            match k.normalizer {
                puente_core::normalize::KeyNormalizer::Exact => true,
                puente_core::normalize::KeyNormalizer::Email => obj.folds_case(field),
                _ => false,
            }
        });
        if !comparable {
            return Ok(None);
        }
        let read = self
            .engine
            .state
            .marker(self.sync(), Marker::TargetRead(target))
            .await?;
        Ok(read.map(|_| target))
    }

    pub fn sync(&self) -> &str {
        &self.def.name
    }

    pub fn obj(&self, side: Side) -> &Arc<dyn Object> {
        &self.objs[side_idx(side)]
    }

    /// Maps a connector's error to the engine's, naming the connection.
    pub fn connector_err(&self, side: Side) -> impl Fn(ConnectorError) -> EngineError + '_ {
        move |source| EngineError::Connector {
            connection: match side {
                Side::A => self.def.a.connection.clone(),
                Side::B => self.def.b.connection.clone(),
            },
            source,
        }
    }

    pub fn progress(&self, p: Progress) {
        if let Some(f) = &self.opts.progress {
            f(p)
        }
    }

    /// Persists one step atomically, fenced by the pass's lease.
    pub async fn commit(&self, c: Commit) -> Result<(), EngineError> {
        self.engine.state.commit(&self.fenced(c)).await?;
        Ok(())
    }

    /// `c` made this pass's: its sync, run and lease.
    pub fn fenced(&self, mut c: Commit) -> Commit {
        c.sync = self.def.name.clone();
        c.run_id = self.run_id;
        c.lease = Some(self.lease.lease().clone());
        c
    }

    /// `commit`, made later: with the next page's read
    /// (`read_committing`), or by `finish_commit`.
    pub async fn commit_behind(&mut self, c: Commit) -> Result<(), EngineError> {
        self.finish_commit().await?;
        self.pending_commit = Some(self.fenced(c));
        Ok(())
    }

    /// Makes the pending commit, if any.
    pub async fn finish_commit(&mut self) -> Result<(), EngineError> {
        let pending = self.pending_commit.take();
        self.commit_made(pending.as_ref()).await
    }

    /// Makes `c`, a commit already fenced, if there is one.
    pub(super) async fn commit_made(&self, c: Option<&Commit>) -> Result<(), EngineError> {
        if let Some(c) = c {
            self.engine.state.commit(c).await?;
        }
        Ok(())
    }

    /// Reads a page of `side` while the pending commit, if any, is made:
    /// the state store's thread writes it while the source answers.
    pub async fn read_committing(
        &mut self,
        side: Side,
        since: Option<&puente_core::Cursor>,
        token: Option<String>,
    ) -> Result<puente_core::Page, EngineError> {
        let pending = self.pending_commit.take();
        let (page, committed) = tokio::join!(
            self.read_page(side, since, token),
            self.commit_made(pending.as_ref())
        );
        committed?;
        page
    }

    pub async fn read_ids(&self, side: Side, ids: &[String]) -> Result<Vec<Record>, EngineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.obj(side)
            .read_by_ids(ids)
            .await
            .map_err(self.connector_err(side))
    }

    /// Adds to `read` the records of `side` with these ids that it does not
    /// hold yet, read by id.
    pub async fn read_unread(
        &self,
        read: &mut [Vec<Record>; 2],
        side: Side,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), EngineError> {
        let have: HashSet<&str> = read[side_idx(side)].iter().map(|r| r.id.as_str()).collect();
        let want: Vec<String> = ids
            .into_iter()
            .filter(|id| !have.contains(id.as_str()))
            .collect();
        let more = self.read_ids(side, &want).await?;
        read[side_idx(side)].extend(more);
        Ok(())
    }

    /// One page of `side`'s records (changed since `since`, when given).
    pub async fn read_page(
        &self,
        side: Side,
        since: Option<&puente_core::Cursor>,
        token: Option<String>,
    ) -> Result<puente_core::Page, EngineError> {
        self.obj(side)
            .read(since, token)
            .await
            .map_err(self.connector_err(side))
    }

    /// The next page of entries to revisit under `page`'s filter (empty at
    /// the end); `page` moves past it.
    pub async fn next_revisits(
        &self,
        page: &mut puente_state::Revisit,
    ) -> Result<Vec<puente_plan::Entry>, EngineError> {
        let entries = self
            .engine
            .state
            .revisit_page(self.sync(), page, self.page_size())
            .await?;
        if let Some(last) = entries.last() {
            page.after = last.id;
        }
        Ok(entries)
    }

    /// The committed cursor of `side`, unless the pass is a full one.
    pub async fn cursor(&self, side: Side) -> Result<Option<puente_core::Cursor>, EngineError> {
        if self.opts.full {
            return Ok(None);
        }
        Ok(self
            .engine
            .state
            .marker(self.sync(), Marker::Cursor(side))
            .await?
            .map(puente_core::Cursor))
    }

    /// Records per page of the records the pass reads by id (revisits,
    /// held records).
    pub fn page_size(&self) -> usize {
        self.def.a.spec.page_size.max(1)
    }
}
