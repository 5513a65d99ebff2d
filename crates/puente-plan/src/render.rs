use std::fmt::Write;

use puente_core::{Side, Value};

use crate::plan::{Plan, PlannedWrite, Status};

fn show(v: &Value) -> String {
    match v.to_text() {
        None => "∅".to_string(),
        Some(t) => format!("{t:?}"),
    }
}

/// The plan as text, one line per action: what a dry run prints and what the
/// planner's snapshot tests compare.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for it in plan.items.iter().filter(|i| i.changed) {
        let who = match (&it.a_id, &it.b_id) {
            (Some(a), Some(b)) => format!("a:{a} ↔ b:{b}"),
            (Some(a), None) => format!("a:{a}"),
            (None, Some(b)) => format!("b:{b}"),
            (None, None) => "?".to_string(),
        };
        for side in [Side::A, Side::B] {
            match it.write(side) {
                Some(PlannedWrite::Create { fields }) => {
                    let fs: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{k}={}", show(v)))
                        .collect();
                    let _ = writeln!(out, "create on {side} from {who}: {}", fs.join(" "));
                }
                Some(PlannedWrite::Update { id, changes }) => {
                    let cs: Vec<String> = changes
                        .iter()
                        .map(|c| format!("{}: {} → {}", c.field, show(&c.old), show(&c.new)))
                        .collect();
                    let _ = writeln!(out, "update {side}:{id} ({who}): {}", cs.join(", "));
                }
                Some(PlannedWrite::Delete { id }) => {
                    let _ = writeln!(out, "delete {side}:{id} ({who})");
                }
                None => {}
            }
        }
        for c in &it.conflicts {
            let outcome = match c.winner {
                Some(w) => format!("{w} wins"),
                None => "held for a decision".to_string(),
            };
            let _ = writeln!(
                out,
                "conflict {who} {}/{}: a={} b={} → {outcome}",
                c.field_a,
                c.field_b,
                show(&c.value_a),
                show(&c.value_b)
            );
        }
        match &it.status {
            Status::Failed(f) => {
                let _ = writeln!(out, "failed {who}: {}: {}", f.category, f.message);
            }
            Status::Excluded(r) => {
                let _ = writeln!(out, "excluded {who}: {}", r.message());
            }
            Status::Waiting(r) => {
                let _ = writeln!(out, "waiting {who}: {}", r.message());
            }
            Status::Deleted | Status::InSync => {}
        }
        if let Some(side) = it.detected_delete {
            let _ = writeln!(out, "deleted on {side} {who}");
        }
    }
    out
}
