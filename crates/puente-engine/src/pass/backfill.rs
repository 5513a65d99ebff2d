//! A gradual exchange (`exchange = "gradual"`): while a side has no
//! committed cursor yet, its initial read (the backfill) runs only inside
//! the sync's window and while today's share of the API budget lasts; after
//! each page the page token is kept (`Marker::BackfillPage`) so the next
//! pass resumes there. Creates are held as waiting entries (`Wait::Backfill`),
//! indexed by their own key, until both sides are read in full; the pass in
//! which that happens plans the held records at once.

use std::collections::HashSet;

use puente_core::{ChangeDetection, Side};
use puente_plan::{ItemPlan, Plan, PlannedWrite, Status, Wait};
use puente_state::{Marker, Revisit};

use super::{side_idx, Pass};
use crate::schedule::Backfill;
use crate::{Engine, EngineError, SyncDef};

/// A gradual pass's backfill: which sides are still being read in full,
/// and what may still be spent today.
pub(crate) struct Gradual {
    backfilling: [bool; 2],
    backfill: Backfill,
    day: String,
    /// Requests the backfill made today, before this pass.
    spent_before: u64,
    /// The connections' request counters at the start of this pass.
    requests_at_start: u64,
    spent: u64,
    /// The smallest daily limit the connections report (once they have).
    limit: Option<u64>,
}

impl Gradual {
    pub fn backfilling(&self, side: Side) -> bool {
        self.backfilling[side_idx(side)]
    }

    /// Creates wait until both sides are read in full: a record's match may
    /// be in the part not read yet.
    pub fn holding(&self) -> bool {
        self.backfilling.contains(&true)
    }

    /// Why the backfill stops now, if it does.
    pub fn stop(&self) -> Option<String> {
        let b = &self.backfill;
        if !b.open_at(chrono::Utc::now()) {
            return Some(format!(
                "outside the backfill window {}",
                b.window_text().unwrap_or_default()
            ));
        }
        // `budget_share` of the daily limit.
        let allowance = b
            .budget_share
            .zip(self.limit)
            .map(|(share, l)| (l as f64 * share).floor() as u64);
        match allowance {
            Some(a) if self.spent >= a => Some(format!(
                "today's backfill budget is spent: {} of {a} requests",
                self.spent
            )),
            _ => None,
        }
    }

    /// Counts the requests made since the pass began, and keeps the count.
    pub async fn spent_now(&mut self, pass: &Pass<'_>) -> Result<(), EngineError> {
        let (requests, limit) = pass.engine.api_usage(pass.def).await;
        self.spent = self.spent_before + requests.saturating_sub(self.requests_at_start);
        self.limit = limit.or(self.limit);
        pass.engine
            .state
            .set_marker(
                pass.sync(),
                Marker::BackfillSpent,
                &serde_json::json!({ "day": self.day, "requests": self.spent }),
            )
            .await?;
        Ok(())
    }
}

impl Pass<'_> {
    /// The backfill of a gradual sync, when a side still has one.
    pub(super) async fn gradual(&self) -> Result<Option<Gradual>, EngineError> {
        let Some(backfill) = self.def.backfill.as_ref().filter(|_| !self.opts.full) else {
            return Ok(None);
        };
        let mut backfilling = [false, false];
        for side in [Side::A, Side::B] {
            backfilling[side_idx(side)] = self.obj(side).capabilities().change_detection
                != ChangeDetection::FullRead
                && self
                    .engine
                    .state
                    .marker(self.sync(), Marker::Cursor(side))
                    .await?
                    .is_none();
        }
        if !backfilling.contains(&true) {
            return Ok(None);
        }
        let (day, spent_before) = self.engine.backfill_spent(self.def).await?;
        let (requests_at_start, limit) = self.engine.api_usage(self.def).await;
        Ok(Some(Gradual {
            backfilling,
            backfill: backfill.clone(),
            day,
            spent_before,
            requests_at_start,
            spent: spent_before,
            limit,
        }))
    }

    /// Where `side`'s backfill goes on from.
    pub(super) async fn backfill_page(&self, side: Side) -> Result<Option<String>, EngineError> {
        Ok(self
            .engine
            .state
            .marker(self.sync(), Marker::BackfillPage(side))
            .await?
            .and_then(|v| v.get("page").and_then(|p| p.as_str().map(String::from))))
    }

    /// The backfill just ended on every side: what was held is created now
    /// rather than a poll interval later. (Should this stop half way, the
    /// entries are still waiting and the next pass takes them.)
    pub(super) async fn end_backfill(
        &mut self,
        g: &Gradual,
        finished: &HashSet<Side>,
    ) -> Result<(), EngineError> {
        let ended = [Side::A, Side::B]
            .into_iter()
            .all(|side| !g.backfilling(side) || finished.contains(&side));
        if !ended {
            return Ok(());
        }
        let mut page = Revisit {
            after: 0,
            before: puente_state::now(),
            only: Some(Wait::Backfill.code()),
            skip: None,
        };
        let mut planned = 0;
        loop {
            let held = self.next_revisits(&mut page).await?;
            if held.is_empty() {
                break;
            }
            planned += held.len();
            self.replan(&held, false).await?;
        }
        self.report.backfill.push(format!(
            "both sides read in full: {planned} held records planned"
        ));
        Ok(())
    }
}

/// Turns the plan's creates into waiting entries, indexed by their own key
/// so the rest of the backfill can still match them.
pub(super) fn hold_creates(p: &mut Plan) {
    for it in &mut p.items {
        hold_create(it, Side::A, Wait::Backfill);
        hold_create(it, Side::B, Wait::Backfill);
    }
}

/// Holds back an item's create on `side`: nothing is written there yet, and
/// the entry waits for `reason`. Returns whether there was a create.
pub(super) fn hold_create(it: &mut ItemPlan, side: Side, reason: Wait) -> bool {
    let (write, seen, key) = match side {
        Side::A => (&mut it.write_a, &mut it.seen_a, &mut it.key_a),
        Side::B => (&mut it.write_b, &mut it.seen_b, &mut it.key_b),
    };
    if !matches!(write, Some(PlannedWrite::Create { .. })) {
        return false;
    }
    *write = None;
    *seen = None;
    *key = None;
    it.status = Status::Waiting(reason);
    true
}

/// Where a gradual exchange stands, for the dashboard and the API.
#[derive(Clone, Debug)]
pub struct BackfillStatus {
    /// `HH:MM-HH:MM UTC`, when the backfill is limited to a window.
    pub window: Option<String>,
    pub budget_share: Option<f64>,
    /// Each side: whether its initial read is complete.
    pub a_done: bool,
    pub b_done: bool,
    /// Requests the backfill spent today (UTC).
    pub spent_today: u64,
}

impl Engine {
    /// A gradual sync's backfill: how far each side got, and today's spend.
    pub async fn backfill_status(
        &self,
        def: &SyncDef,
    ) -> Result<Option<BackfillStatus>, EngineError> {
        let Some(b) = &def.backfill else {
            return Ok(None);
        };
        let (_, spent_today) = self.backfill_spent(def).await?;
        let done = |side| self.state.marker(&def.name, Marker::Cursor(side));
        Ok(Some(BackfillStatus {
            window: b.window_text(),
            budget_share: b.budget_share,
            a_done: done(Side::A).await?.is_some(),
            b_done: done(Side::B).await?.is_some(),
            spent_today,
        }))
    }

    /// Today (UTC) and the requests the backfill spent on it.
    async fn backfill_spent(&self, def: &SyncDef) -> Result<(String, u64), EngineError> {
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let spent = self
            .state
            .marker(&def.name, Marker::BackfillSpent)
            .await?
            .filter(|v| v.get("day").and_then(|d| d.as_str()) == Some(day.as_str()))
            .and_then(|v| v.get("requests").and_then(|r| r.as_u64()))
            .unwrap_or(0);
        Ok((day, spent))
    }

    /// Requests sent so far through the sync's API connections, and the
    /// smallest daily limit they report.
    async fn api_usage(&self, def: &SyncDef) -> (u64, Option<u64>) {
        let mut requests = 0;
        let mut limit: Option<u64> = None;
        for ep in [&def.a, &def.b] {
            if let Some(u) = self.connected(&ep.connection).await.and_then(|c| c.usage()) {
                requests += u.requests;
                if let Some(l) = u.daily_limit {
                    limit = Some(limit.map_or(l, |m| m.min(l)));
                }
            }
        }
        (requests, limit)
    }
}
