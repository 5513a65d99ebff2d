//! Human and machine output of the CLI.

use std::io::Write;

use anyhow::Result;
use puente_engine::{Engine, SyncReport};
use puente_state::{ConflictRow, RecordRow};

/// Writes one line to stdout (`outln!`). A reader that went away (a closed
/// pipe) ends the program quietly: what was asked is done, and nobody is
/// left to read the rest.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        quit_on_closed_pipe(&e);
        panic!("cannot write to stdout: {e}");
    }
}

/// Ends the program quietly when `e` is a closed pipe.
pub fn quit_on_closed_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

pub fn print_reports(reports: &[SyncReport]) {
    for r in reports {
        let mode = if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        outln!("sync {}{mode} in {:.2}s", r.name, r.seconds);
        for (side, c) in [("a", &r.a), ("b", &r.b)] {
            outln!(
                "  {side}: read {:>7}  created {:>6}  updated {:>6}  deleted {:>5}  failed {:>5}",
                c.read,
                c.created,
                c.updated,
                c.deleted,
                c.failed
            );
        }
        outln!(
            "  excluded {}  conflicts {}  waiting {}  echoes suppressed {}{}",
            r.excluded,
            r.conflicts,
            r.waiting,
            r.echoes_suppressed,
            if r.recovered_intents > 0 {
                format!("  recovered after a crash {}", r.recovered_intents)
            } else {
                String::new()
            }
        );
        if let Some(plan) = &r.plan {
            if plan.is_empty() {
                outln!("  nothing to do");
            }
            for line in plan.lines() {
                outln!("  {line}");
            }
        }
    }
}

pub async fn status(e: &Engine, json: bool) -> Result<()> {
    let mut out = Vec::new();
    for def in &e.config.syncs {
        let c = e.state.status_counts(&def.name).await?;
        let last = e.state.runs(Some(&def.name), 1).await?.into_iter().next();
        let holder = e.state.lease_holder(&def.name).await?;
        out.push(serde_json::json!({
            "name": def.name,
            "enabled": def.enabled,
            "direction": def.direction.as_str(),
            "in_sync": c.in_sync,
            "failed": c.failed,
            "excluded": c.excluded,
            "deleted": c.deleted,
            "waiting": c.waiting,
            "total": c.total(),
            "failures_by_category": c.failures_by_category,
            "last_run": last.map(|r| serde_json::json!({"id": r.id, "status": r.status, "started_at": r.started_at, "finished_at": r.finished_at, "error": r.error})),
            "held_by": holder.map(|h| serde_json::json!({"host": h.host, "pid": h.pid, "command": h.command, "started_at": h.started_at, "expires_at": h.expires_at, "text": h.to_string()})),
        }));
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "syncs": out }))?
        );
        return Ok(());
    }
    for s in &out {
        outln!(
            "{:<20} in sync {:>7}  failed {:>5}  excluded {:>5}  deleted {:>5}  waiting {:>5}",
            s["name"].as_str().unwrap_or(""),
            s["in_sync"],
            s["failed"],
            s["excluded"],
            s["deleted"],
            s["waiting"]
        );
        if let Some(cats) = s["failures_by_category"].as_object() {
            for (cat, n) in cats {
                let hint = puente_core::FailureCategory::parse(cat)
                    .map(|c| c.default_hint())
                    .unwrap_or("");
                outln!("    {cat}: {n} — {hint}");
            }
        }
        if let Some(h) = s["held_by"]["text"].as_str() {
            outln!("    running now in {h}");
        }
        match &s["last_run"] {
            serde_json::Value::Null => outln!("    never run"),
            r => outln!(
                "    last run #{} {} at {}",
                r["id"],
                r["status"].as_str().unwrap_or(""),
                r["started_at"].as_str().unwrap_or("")
            ),
        }
    }
    Ok(())
}

pub fn records_table(rows: &[RecordRow]) {
    outln!(
        "{:<16} {:<10} {:<14} {:<14} {:<13} detail",
        "sync",
        "status",
        "a",
        "b",
        "category"
    );
    for r in rows {
        let detail = match (&r.reason, &r.hint) {
            (Some(m), Some(h)) => format!("{m} (hint: {h})"),
            (Some(m), None) => m.clone(),
            _ => r
                .deleted_on
                .as_ref()
                .map(|d| format!("deleted on {d}"))
                .unwrap_or_default(),
        };
        outln!(
            "{:<16} {:<10} {:<14} {:<14} {:<13} {detail}",
            r.sync,
            r.status,
            r.a_id.as_deref().unwrap_or("-"),
            r.b_id.as_deref().unwrap_or("-"),
            r.category.as_deref().unwrap_or("")
        );
    }
    outln!("{} record(s)", rows.len());
}

pub fn records_csv(rows: &[RecordRow], w: impl std::io::Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(w);
    w.write_record(RecordRow::CSV_HEADER)?;
    for r in rows {
        w.write_record(r.csv_fields())?;
    }
    w.flush()?;
    Ok(())
}

pub fn conflicts_table(rows: &[ConflictRow]) {
    if rows.is_empty() {
        outln!("no open conflicts");
        return;
    }
    for c in rows {
        outln!(
            "#{} {} a:{} ↔ b:{}  {} / {}: a={} b={}  [{}]",
            c.id,
            c.sync,
            c.a_id.as_deref().unwrap_or("-"),
            c.b_id.as_deref().unwrap_or("-"),
            c.field_a,
            c.field_b,
            c.value_a.describe(),
            c.value_b.describe(),
            c.state
        );
    }
    outln!("settle one with: puente conflicts resolve ID --take a|b|VALUE");
}
