//! Steps 4 to 6: each side's changes since its cursor (minus the overlap),
//! b first, a page at a time: a page's records are planned with the entries
//! and records they concern, then applied. An unpaired b record is not
//! created on a yet: it waits ("matching") until every a record has been
//! compared with it, and the ones still unpaired then are read back by id,
//! a page at a time, and created on a.

use std::sync::Arc;

use puente_core::{ConnectorError, Cursor, Object, Page, Side};
use puente_plan::{Plan, Wait};
use puente_state::Marker;
use tracing::Instrument;

use super::backfill::{hold_create, hold_creates, Gradual};
use super::deletes::UnrecordedDeletes;
use super::{joined, side_idx, Pass};
use crate::{EngineError, Progress};

impl Pass<'_> {
    /// Streams b's changes, then a's. Returns the ids of the b records held
    /// back until a has been read.
    pub(super) async fn stream_changes(
        &mut self,
        mut gradual: Option<&mut Gradual>,
    ) -> Result<Vec<String>, EngineError> {
        let mut deferred = Vec::new();
        for side in [Side::B, Side::A] {
            if self.unread == Some(side) {
                continue;
            }
            let span = tracing::info_span!("read", %side, connection = %self.def.endpoint(side).connection, object = %self.def.endpoint(side).spec.object);
            let to_the_end = self
                .stream_side(side, gradual.as_deref_mut(), &mut deferred)
                .instrument(span)
                .await?;
            let target = !self.spec.direction.flows_from(side);
            if to_the_end && target {
                self.cursors.push((
                    Marker::TargetRead(side),
                    serde_json::json!(super::now_secs()),
                ));
            }
        }
        Ok(deferred)
    }

    /// Reads `side`'s changes a page at a time; true when it read them to
    /// the end (not paused by a backfill's budget).
    async fn stream_side(
        &mut self,
        side: Side,
        mut gradual: Option<&mut Gradual>,
        deferred: &mut Vec<String>,
    ) -> Result<bool, EngineError> {
        let since = self.cursor(side).await?;
        let backfilling = gradual.as_ref().is_some_and(|g| g.backfilling(side));
        let holding = gradual.as_ref().is_some_and(|g| g.holding());
        let mut token = None;
        if backfilling {
            let g = gradual.as_deref_mut().expect("backfilling implies gradual");
            if let Some(why) = g.stop() {
                self.report
                    .backfill
                    .push(format!("{side}: waiting ({why})"));
                return Ok(false);
            }
            token = self.backfill_page(side).await?;
        }
        let mut n = 0;
        // The next page's read, started as soon as its token is known: the
        // source answers and the page is decoded while this one is planned
        // and written. Not while a backfill spends a budget a page at a
        // time: a page it would not take is not read.
        let mut ahead: Option<ReadAhead> = None;
        loop {
            // The last page's commit is made while this one is read (or,
            // read ahead, while it is awaited).
            let page = match ahead.take() {
                Some(read) => self.await_committing(side, read).await?,
                None => self.read_committing(side, since.as_ref(), token).await?,
            };
            if !backfilling {
                if let Some(next) = &page.next {
                    ahead = Some(ReadAhead::start(
                        self.objs[side_idx(side)].clone(),
                        since.clone(),
                        next.clone(),
                    ));
                }
            }
            n += page.records.len();
            self.report.side(side).read += page.records.len() as u64;
            self.progress(Progress::Reading {
                sync: self.def.name.clone(),
                side,
                records: n,
            });
            // A survivor of a merge takes over its merged records' links
            // before it is planned, so it is not matched or created anew.
            let merges: Vec<(String, String)> = page
                .records
                .iter()
                .flat_map(|r| {
                    self.objs[side_idx(side)]
                        .merged_ids(r)
                        .into_iter()
                        .map(|old| (old, r.id.clone()))
                })
                .collect();
            if !merges.is_empty() {
                self.engine
                    .state
                    .relink_merged(self.sync(), side, &merges)
                    .await?;
            }
            let mut read = [Vec::new(), Vec::new()];
            read[side_idx(side)] = page.records;
            let (mut p, old) = self
                .plan_page(read, true, &UnrecordedDeletes::new())
                .await?;
            if side == Side::B {
                defer_b_creates(&mut p, deferred);
            }
            if holding {
                hold_creates(&mut p);
            }
            self.commit_behind = true;
            let applied = self.apply(p, &old).await;
            self.commit_behind = false;
            applied?;
            token = page.next;
            let g = gradual.as_deref_mut().filter(|_| backfilling);
            if token.is_none() || g.is_some() {
                self.finish_commit().await?;
            }
            if token.is_none() {
                if let Some(c) = page.cursor {
                    self.cursors.push((Marker::Cursor(side), c.0));
                }
                if let Some(g) = g {
                    g.spent_now(self).await?;
                    self.cursors
                        .push((Marker::BackfillPage(side), serde_json::Value::Null));
                    self.report
                        .backfill
                        .push(format!("{side}: read in full ({n} records this pass)"));
                }
                return Ok(true);
            }
            if let Some(g) = g {
                // Where to go on from: the page just applied is committed.
                self.engine
                    .state
                    .set_marker(
                        self.sync(),
                        Marker::BackfillPage(side),
                        &serde_json::json!({ "page": token }),
                    )
                    .await?;
                g.spent_now(self).await?;
                if let Some(why) = g.stop() {
                    self.report.backfill.push(format!(
                        "{side}: {n} records this pass, then paused ({why})"
                    ));
                    return Ok(false);
                }
            }
        }
    }

    /// A page read ahead (`ReadAhead`), awaited while the pending
    /// commit, if any, is made.
    async fn await_committing(
        &mut self,
        side: Side,
        read: ReadAhead,
    ) -> Result<puente_core::Page, EngineError> {
        let pending = self.pending_commit.take();
        let (page, committed) = tokio::join!(read.page(), self.commit_made(pending.as_ref()));
        committed?;
        page.map_err(self.connector_err(side))
    }

    /// Step 6: the b records still unpaired after a's stream, read back by
    /// id a page at a time, and created on a.
    pub(super) async fn create_deferred(
        &mut self,
        deferred: &[String],
        holding: bool,
    ) -> Result<(), EngineError> {
        for chunk in deferred.chunks(self.page_size()) {
            let recs = self.read_ids(Side::B, chunk).await?;
            let (mut p, old) = self
                .plan_page([Vec::new(), recs], true, &UnrecordedDeletes::new())
                .await?;
            if holding {
                hold_creates(&mut p);
            }
            self.apply(p, &old).await?;
        }
        Ok(())
    }
}

/// b goes first: an unpaired b record is only indexed now (a's records have
/// not all been compared with it yet) and is created on a, if still
/// unpaired, at the end.
fn defer_b_creates(p: &mut Plan, deferred: &mut Vec<String>) {
    for it in &mut p.items {
        if hold_create(it, Side::A, Wait::Matching) {
            if let Some(id) = &it.b_id {
                deferred.push(id.clone());
            }
        }
    }
}

/// A page being read on a task of its own (see `stream_side`); dropped
/// unawaited (the pass stopped), the read is abandoned.
struct ReadAhead(tokio::task::JoinHandle<Result<Page, ConnectorError>>);

impl ReadAhead {
    fn start(obj: Arc<dyn Object>, since: Option<Cursor>, token: String) -> ReadAhead {
        ReadAhead(tokio::spawn(async move {
            obj.read(since.as_ref(), Some(token)).await
        }))
    }

    async fn page(mut self) -> Result<Page, ConnectorError> {
        joined(&mut self.0).await
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}
