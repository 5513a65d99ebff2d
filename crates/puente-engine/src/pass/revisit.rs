//! Step 5, its end: the records to revisit whatever the cursors say (failed
//! ones, waiting ones, conflicts a person settled), read a page at a time
//! by entry id. What this pass already planned is left out: it was just
//! read and planned with everything it concerns.

use puente_plan::Wait;
use puente_state::Revisit;

use super::Pass;
use crate::EngineError;

impl Pass<'_> {
    /// Re-reads and re-plans the entries to revisit. `holding`: a backfill
    /// is under way, so its held creates stay held (and are not read).
    pub(super) async fn revisit(&mut self, holding: bool) -> Result<(), EngineError> {
        let mut page = Revisit {
            after: 0,
            before: self.started.clone(),
            only: None,
            skip: holding.then_some(Wait::Backfill.code()),
        };
        loop {
            let entries = self.next_revisits(&mut page).await?;
            if entries.is_empty() {
                return Ok(());
            }
            let read = self.replan(&entries, holding).await?;
            self.report.a.read += read[0];
            self.report.b.read += read[1];
        }
    }
}
