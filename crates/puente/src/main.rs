//! `puente`: keep CRMs and databases in sync. The CLI is thin: it parses
//! flags, calls the engine, and prints.

/// `println!` that ends the program quietly when stdout is a closed pipe
/// (`puente sync --dry-run | head`), as command-line tools do.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

mod demo;

// Sync work is many small allocations (records, values, keys); mimalloc
// handles them far better than the system allocator; its v2 line keeps less
// resident than v3 (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod output;
mod sandboxes;
mod secrets;
mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use puente_core::Side;
use puente_engine::{config, Engine, Progress, RunOptions};
use puente_plan::Resolution;
use puente_server::wire;
use puente_state::RecordFilter;

#[derive(Parser)]
#[command(
    name = "puente",
    version,
    about = "Keep CRMs, databases and files in sync"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        default_value = "puente.toml",
        env = "PUENTE_CONFIG"
    )]
    config: PathBuf,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line, with the pass's span fields) for log collectors.
    /// The level comes from PUENTE_LOG (default: warn).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PUENTE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config: every problem with its file, line and fix.
    Validate {
        /// Check the file only, without connecting to the systems.
        #[arg(long)]
        offline: bool,
    },
    /// Keep every enabled sync running: webhooks, polling, scheduled
    /// reconciliations; the dashboard and the JSON API on one address.
    Serve {
        /// The address to listen on (default: [serve] listen, else 127.0.0.1:7300).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run one pass of the named syncs (default: all enabled).
    Sync {
        names: Vec<String>,
        /// Show the exact creates, updates and deletes; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Ignore cursors and check deletes now (a full reconciliation).
        #[arg(long)]
        full: bool,
        /// When another process (`puente serve`, another `puente sync`) is
        /// running a pass of a sync, wait this many seconds for it to end
        /// before skipping that sync.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait: u64,
        /// Exit with an error (code 3) when a sync was skipped because
        /// another process was running it, instead of only saying so.
        #[arg(long)]
        fail_if_busy: bool,
    },
    /// Per sync: in sync, failed (by category), excluded, deleted, waiting, last run.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The records view, exportable.
    Records {
        #[arg(long)]
        sync: Option<String>,
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(puente_state::STATUSES))]
        status: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Recreate on a side the records deleted there, and link them again.
    Restore {
        #[arg(long)]
        sync: String,
        #[arg(long, value_parser = ["a", "b"])]
        side: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// The conflict inbox (conflicts held by a `manual` policy).
    Conflicts {
        #[command(subcommand)]
        action: Option<ConflictAction>,
        #[arg(long)]
        sync: Option<String>,
        /// Include settled conflicts.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run history.
    Runs {
        #[arg(long)]
        sync: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Credentials sealed in the state store (`{ vault = "NAME" }` in the config).
    Secrets {
        #[command(subcommand)]
        action: secrets::Action,
    },
    /// Run a local emulator of a CRM's API (for tests, rehearsals, the demo).
    Sandbox(sandboxes::Choice),
    /// A self-contained tour, offline: a shop (SQLite) kept in sync with its
    /// books (SQLite) and a CRM (the HubSpot sandbox, in process), then the
    /// dashboard, live.
    Demo {
        /// Where the demo keeps its files.
        #[arg(long, default_value = ".puente/demo")]
        dir: PathBuf,
        /// Where the dashboard listens.
        #[arg(long, default_value = serve::DEFAULT_LISTEN)]
        listen: String,
        /// Stop after the scripted passes instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
}

#[derive(Subcommand)]
enum ConflictAction {
    /// Settle a conflict: take a's value, b's value, or a value of your own.
    Resolve {
        id: i64,
        #[arg(long)]
        take: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUENTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
                output::quit_on_closed_pipe(io);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn load(path: &std::path::Path) -> Result<config::Config> {
    Ok(config::load(path)
        .await
        .map_err(puente_engine::EngineError::Config)?)
}

/// The engine for a command; `command` names this process in the leases
/// it takes (`puente sync`), for whoever finds a sync busy.
async fn engine(path: &std::path::Path, command: &str) -> Result<Engine> {
    let cfg = load(path).await?;
    for w in &cfg.warnings {
        eprintln!("{w}");
    }
    Ok(Engine::open(cfg).await?.with_command(command))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { offline } => {
            let cfg = match config::load(&cli.config).await {
                Ok(c) => c,
                Err(diags) => {
                    for d in &diags {
                        outln!("{d}");
                    }
                    return Ok(ExitCode::from(1));
                }
            };
            let mut diags = cfg.warnings.clone();
            if !offline {
                let e = Engine::open(cfg.clone())
                    .await?
                    .with_command("puente validate");
                diags.extend(e.validate_live().await);
            }
            for d in &diags {
                outln!("{d}");
            }
            let errors = diags.iter().filter(|d| !d.warning).count();
            if errors > 0 {
                outln!("{errors} error(s)");
                return Ok(ExitCode::from(1));
            }
            outln!(
                "{}: ok ({} syncs, {} warnings)",
                cli.config.display(),
                cfg.syncs.len(),
                diags.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let cfg = load(&cli.config).await?;
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            serve::run(cfg, listen).await
        }
        Command::Sync {
            names,
            dry_run,
            json,
            full,
            wait,
            fail_if_busy,
        } => {
            let e = engine(&cli.config, "puente sync").await?;
            let wait = Duration::from_secs(wait);
            let done = sync(&e, &names, dry_run, full, wait).await?;
            // Closing the state store checkpoints its write-ahead log into the
            // file and removes it, rather than leaving it for the next run.
            e.state.close().await;
            if json {
                let skipped: Vec<_> = done
                    .skipped
                    .iter()
                    .map(|(sync, why)| serde_json::json!({ "sync": sync, "reason": why }))
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "syncs": wire::all::<_, wire::ReportView>(&done.reports), "skipped": skipped })
                    )?
                );
            } else {
                output::print_reports(&done.reports);
            }
            for (sync, why) in &done.skipped {
                eprintln!("sync {sync}: skipped: {why}");
            }
            for f in &done.failures {
                eprintln!("error: {f}");
            }
            Ok(if !done.failures.is_empty() {
                ExitCode::from(1)
            } else if fail_if_busy && !done.skipped.is_empty() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Status { json } => {
            let e = engine(&cli.config, "puente status").await?;
            output::status(&e, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Records {
            sync,
            status,
            category,
            format,
            limit,
        } => {
            let e = engine(&cli.config, "puente records").await?;
            if let Some(s) = &sync {
                if e.config.sync(s).is_none() {
                    bail!("no sync named {s}; syncs are: {}", names_of(&e));
                }
            }
            let rows = e
                .state
                .records(&RecordFilter {
                    sync,
                    status,
                    category,
                    limit,
                    ..RecordFilter::default()
                })
                .await?;
            match format {
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&wire::all::<_, wire::RecordView>(&rows))?
                ),
                Format::Csv => output::records_csv(&rows, std::io::stdout())?,
                Format::Table => output::records_table(&rows),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            sync,
            side,
            dry_run,
        } => {
            let e = engine(&cli.config, "puente restore").await?;
            let def = e
                .config
                .sync(&sync)
                .cloned()
                .ok_or_else(|| anyhow!("no sync named {sync}; syncs are: {}", names_of(&e)))?;
            let side = Side::parse(&side).expect("clap checked");
            let r = e.restore(&def, side, dry_run).await?;
            if dry_run {
                outln!("{} record(s) would be recreated on {side}:", r.plan.len());
                for line in &r.plan {
                    outln!("  {line}");
                }
            } else {
                outln!("restored {} record(s) on {side}", r.restored.len());
                for (old, new) in &r.restored {
                    outln!("  {side}:{old} → {side}:{new}");
                }
                for (old, why) in &r.failed {
                    outln!("  failed {side}:{old}: {why}");
                }
            }
            Ok(if r.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Conflicts {
            action,
            sync,
            all,
            json,
        } => {
            let e = engine(&cli.config, "puente conflicts").await?;
            match action {
                None => {
                    let rows = e.state.conflicts(sync.as_deref(), !all).await?;
                    if json {
                        outln!(
                            "{}",
                            serde_json::to_string_pretty(&wire::all::<_, wire::ConflictView>(
                                &rows
                            ))?
                        );
                    } else {
                        output::conflicts_table(&rows);
                    }
                }
                Some(ConflictAction::Resolve { id, take }) => {
                    let sync_name = e
                        .state
                        .resolve_conflict(id, &Resolution::from_choice(&take))
                        .await?;
                    outln!("conflict {id} settled; applying it with a run of {sync_name}");
                    let done = crate::sync(&e, &[sync_name], false, false, Duration::from_secs(60))
                        .await?;
                    output::print_reports(&done.reports);
                    for (sync, why) in &done.skipped {
                        outln!("sync {sync} was not run now ({why}); the settled conflict is applied by its next pass");
                    }
                    if let Some(f) = done.failures.first() {
                        bail!("{f}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { sync, limit } => {
            let e = engine(&cli.config, "puente runs").await?;
            for r in e.state.runs(sync.as_deref(), limit).await? {
                outln!(
                    "#{:<5} {:<16} {:<8} {}  {}",
                    r.id,
                    r.sync,
                    r.status,
                    r.started_at,
                    r.error.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets { action } => {
            secrets::run(&cli.config, action).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox(choice) => choice.run().await,
        Command::Demo {
            dir,
            listen,
            no_serve,
        } => {
            demo::run(
                &dir,
                demo::DemoOptions {
                    listen,
                    serve: !no_serve,
                },
            )
            .await
        }
    }
}

fn names_of(e: &Engine) -> String {
    e.config
        .syncs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `sync` did: a report per sync run, the syncs skipped because
/// another process was running them (with who), and the failures.
#[derive(Default)]
pub struct Synced {
    pub reports: Vec<puente_engine::SyncReport>,
    pub skipped: Vec<(String, String)>,
    pub failures: Vec<String>,
}

/// Runs the named syncs (or all enabled) in dependency order, with a
/// progress bar on a terminal for runs longer than a second. A sync that
/// another process is running is waited for up to `wait`, then skipped.
pub async fn sync(
    e: &Engine,
    names: &[String],
    dry_run: bool,
    full: bool,
    wait: Duration,
) -> Result<Synced> {
    for n in names {
        if e.config.sync(n).is_none() {
            bail!("no sync named {n}; syncs are: {}", names_of(e));
        }
    }
    let defs: Vec<_> = e
        .config
        .syncs
        .iter()
        .filter(|s| {
            if names.is_empty() {
                s.enabled
            } else {
                names.contains(&s.name)
            }
        })
        .cloned()
        .collect();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").context("progress style")?);
    let started = Instant::now();
    if std::io::stdout().is_terminal() {
        let b = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !b.is_finished() {
                b.set_draw_target(ProgressDrawTarget::stderr());
                b.enable_steady_tick(Duration::from_millis(120));
            }
        });
    }
    let b = bar.clone();
    let progress: puente_engine::ProgressFn = Arc::new(move |p: Progress| {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let msg = match p {
            Progress::Reading {
                sync,
                side,
                records,
            } => format!(
                "{sync}: reading {side}: {records} records ({:.0} records/s)",
                records as f64 / secs
            ),
            Progress::Planned {
                sync,
                items,
                writes,
            } => format!("{sync}: planned {items} records, {writes} writes"),
            Progress::Applying { sync, done, total } => format!(
                "{sync}: applied {done}/{total} ({:.0} records/s)",
                done as f64 / secs
            ),
        };
        b.set_message(msg);
    });
    let mut done = Synced::default();
    for def in defs {
        let opts = RunOptions {
            dry_run,
            full,
            progress: Some(progress.clone()),
            wait,
        };
        match e.run(&def, &opts).await {
            Ok(r) => done.reports.push(r),
            Err(puente_engine::EngineError::Busy { holder, .. }) => done
                .skipped
                .push((def.name.clone(), format!("a pass is running in {holder}"))),
            Err(err) => done.failures.push(format!("sync {}: {err}", def.name)),
        }
    }
    bar.finish_and_clear();
    Ok(done)
}
