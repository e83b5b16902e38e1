//! Chronicle's benchmark suite: starts the real system (a fresh `chronicle_bench` database and
//! the three release binaries as child processes), drives every hot path over HTTP and
//! PostgreSQL, and measures each beside its physical baseline in the same run, so that ratios
//! survive a noisy, shared machine. Prints a table and writes a JSON report.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p bench -- [--quick] [--out bench-results/<file>.json]
//! ```
//!
//! Environment: `BENCH_BIN_DIR` (where the service binaries are; default the workspace's
//! `target/release`), `BENCH_SERVICE_LOG` (the services' `RUST_LOG`, default `warn`). Service
//! logs go to `target/bench-logs/`. The databases are left in place after a run for
//! inspection (`EXPLAIN ANALYZE`) and dropped at the start of the next one.

mod client;
mod cpu;
mod load;
mod report;
mod scenarios;
mod system;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;

use crate::client::Http;
use crate::report::{Report, Row};
use crate::scenarios::{Context, Plan};

/// The database of the HTTP figures.
const DATABASE: &str = "chronicle_bench";

/// Command-line options.
#[derive(Debug)]
struct Options {
    quick: bool,
    out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        quick: false,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => {
                options.out = Some(PathBuf::from(
                    args.next().context("--out needs a file name")?,
                ));
            }
            "-h" | "--help" => {
                println!("usage: bench [--quick] [--out bench-results/<file>.json]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let plan = Plan::new(options.quick);
    let binaries = system::binary_dir();
    system::check_binaries(&binaries)?;

    eprintln!("preparing database {DATABASE}");
    system::recreate_database(DATABASE).await?;
    // The services migrate it as they start: their embedded migrations are the ones that
    // must match (the bench's own copy may be newer or older than the binaries').
    let pool = system::pool(DATABASE, 16).await?;

    let http = Http::new();
    let log_dir = binaries.join("..").join("bench-logs");
    eprintln!("starting services from {}", binaries.display());
    let mut running = system::System::start(&binaries, DATABASE, &log_dir, &http).await?;
    let context = Context {
        http: http.clone(),
        command: running.base("command-api")?.to_owned(),
        query: running.base("query-api")?.to_owned(),
        projector: running.base("projector")?.to_owned(),
        pool: pool.clone(),
        plan,
        projects: Arc::new(Mutex::new(Vec::new())),
    };
    scenarios::commands::prepare(&context).await?;

    let mut rows: Vec<Row> = Vec::new();
    let mut meter = cpu::Meter::new(running.pids());
    eprintln!("commands");
    let (command_rows, peak) = scenarios::commands::throughput(&context).await?;
    rows.extend(command_rows);
    meter.section("commands, closed loop + raw INSERT");
    let half = (peak / 2.0).max(1.0);
    rows.push(scenarios::commands::fixed(&context, half).await?);
    meter.section("commands, fixed rate");
    eprintln!("idempotency");
    rows.extend(scenarios::commands::idempotency(&context).await?);
    meter.section("idempotency");
    eprintln!("projection lag");
    rows.extend(scenarios::lag::lag(&context, half).await?);
    meter.section("projection lag");
    eprintln!("queries");
    rows.extend(scenarios::queries::queries(&context).await?);
    meter.section("queries + bare axum");
    eprintln!("analytics");
    rows.extend(scenarios::analytics::ingest(&context).await?);
    meter.section("analytics + multi-row INSERT");

    let memory = running.memory();
    eprintln!("stopping services");
    running.stop();
    pool.close().await;

    eprintln!("rebuild");
    rows.extend(scenarios::rebuild::rebuild(&plan).await?);

    let report = Report {
        started_at: started_at.to_rfc3339(),
        mode: if options.quick { "quick" } else { "full" },
        machine: machine(),
        rows,
        memory,
        cpu: meter.sections,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    println!("\n{}", report.table());
    let out = options.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-results/{}-{}.json",
            report.mode,
            started_at.format("%Y%m%dT%H%M%SZ")
        ))
    });
    if let Some(parent) = out.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} ({:.0} s in all)",
        out.display(),
        report.total_seconds
    );
    Ok(())
}

/// What the figures were measured on: CPU count and model, and the shared-machine caveat.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} cores ({model}); load client, services and PostgreSQL share them")
}
