//! The sync planner: given what each side holds now, what Puente last saw
//! there and the sync's rules, decide every create, update, delete, link,
//! conflict and status. Pure: no IO, no async, no clock.

mod expr;
mod plan;
mod render;
mod spec;

pub use expr::{Expr, ExprError};
pub use plan::{
    key_of, mapped, plan, plan_deletes, seen_after_write, ConflictNote, Entry, Exclusion,
    FieldChange, ItemPlan, Plan, PlanInput, PlannedWrite, RefLookup, Resolution, Status, Wait,
};
pub use render::render;
pub use spec::{ConflictPolicy, DeletePolicy, Direction, FieldMap, MatchKey, SyncSpec};
