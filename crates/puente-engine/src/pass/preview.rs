//! A dry run: the whole change set planned at once (it persists nothing, so
//! a page could not see what an earlier page would have linked), rendered,
//! and counted. Nothing is written to either side or to the state store.

use puente_core::{Record, Side};
use puente_plan::render;
use puente_state::Revisit;

use super::deletes::UnrecordedDeletes;
use super::{live_ids, side_idx, Pass};
use crate::EngineError;

impl Pass<'_> {
    pub(super) async fn preview(
        &mut self,
        unrecorded_deletes: UnrecordedDeletes,
    ) -> Result<(), EngineError> {
        let mut read: [Vec<Record>; 2] = [Vec::new(), Vec::new()];
        for side in [Side::A, Side::B] {
            let since = self.cursor(side).await?;
            let mut token = None;
            loop {
                let page = self.read_page(side, since.as_ref(), token).await?;
                read[side_idx(side)].extend(page.records);
                token = page.next;
                if token.is_none() {
                    break;
                }
            }
        }
        let mut page = Revisit {
            after: 0,
            before: self.started.clone(),
            only: None,
            skip: None,
        };
        loop {
            let revisit = self.next_revisits(&mut page).await?;
            if revisit.is_empty() {
                break;
            }
            for side in [Side::A, Side::B] {
                self.read_unread(&mut read, side, live_ids(&revisit, side))
                    .await?;
            }
        }
        self.report.a.read += read[0].len() as u64;
        self.report.b.read += read[1].len() as u64;
        let (p, _) = self.plan_page(read, false, &unrecorded_deletes).await?;
        self.report
            .plan
            .get_or_insert_with(String::new)
            .push_str(&render(&p));
        self.report.count_plan(&p);
        Ok(())
    }
}
