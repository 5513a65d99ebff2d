//! Human and machine output of the CLI.

use anyhow::Result;
use puente_engine::{Engine, SyncReport};
use puente_state::{ConflictRow, RecordRow};

pub fn print_reports(reports: &[SyncReport]) {
    for r in reports {
        let mode = if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        println!("sync {}{mode} in {:.2}s", r.name, r.seconds);
        for (side, c) in [("a", &r.a), ("b", &r.b)] {
            println!(
                "  {side}: read {:>7}  created {:>6}  updated {:>6}  deleted {:>5}  failed {:>5}",
                c.read, c.created, c.updated, c.deleted, c.failed
            );
        }
        println!(
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
                println!("  nothing to do");
            }
            for line in plan.lines() {
                println!("  {line}");
            }
        }
    }
}

pub async fn status(e: &Engine, json: bool) -> Result<()> {
    let mut out = Vec::new();
    for def in &e.config.syncs {
        let c = e.state.status_counts(&def.name).await?;
        let last = e.state.runs(Some(&def.name), 1).await?.into_iter().next();
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
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "syncs": out }))?
        );
        return Ok(());
    }
    for s in &out {
        println!(
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
                println!("    {cat}: {n} — {hint}");
            }
        }
        match &s["last_run"] {
            serde_json::Value::Null => println!("    never run"),
            r => println!(
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
    println!(
        "{:<16} {:<10} {:<14} {:<14} {:<13} detail",
        "sync", "status", "a", "b", "category"
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
        println!(
            "{:<16} {:<10} {:<14} {:<14} {:<13} {detail}",
            r.sync,
            r.status,
            r.a_id.as_deref().unwrap_or("-"),
            r.b_id.as_deref().unwrap_or("-"),
            r.category.as_deref().unwrap_or("")
        );
    }
    println!("{} record(s)", rows.len());
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
        println!("no open conflicts");
        return;
    }
    for c in rows {
        println!(
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
    println!("settle one with: puente conflicts resolve ID --take a|b|VALUE");
}
