//! Chronicle's benchmark suite: starts the real system (a fresh `chronicle_bench` database and
//! the three release binaries as child processes) beside the bench's reference service (plain
//! cqrs-es + postgres-es on `chronicle_bench_reference`), drives every hot path over HTTP and
//! PostgreSQL, and measures each beside its baseline in the same run (pgbench for raw INSERTs),
//! so that ratios survive a noisy, shared machine. A second system on `chronicle_bench_log`
//! then measures a 1,000,000-event log and a 100,000-event stream; the rebuild runs last, on
//! its own database. Prints a table and writes a JSON report.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p bench -- [--quick] [--out bench-results/<file>.json]
//! cargo run --release -p bench -- --token-ab   # access tokens: cache on vs off, and nothing else
//! cargo run --release -p bench -- --tracing-ab # tracing with export off vs OTEL_SDK_DISABLED=true
//! cargo run --release -p bench -- --log-only [--quick] [--log-events 1000000]   # large log, long stream
//! cargo run --release -p bench -- --reads [--quick] [--projector-ab PROJECTOR_BATCH_BYTES=8388608] [--lag-rate 500] [--lag-probe-every 10]
//!     # read path only: create peak, lag, queries A/B, analytics, memory
//! cargo run --release -p bench -- --write-ab [--quick] [--variant name=dir]...   # the write path only
//! ```
//!
//! Environment: `BENCH_BIN_DIR` (where the service binaries are; default the workspace's
//! `target/release`), `BENCH_SERVICE_LOG` (the services' `RUST_LOG`, default `warn`),
//! `BENCH_PGBENCH` and `BENCH_WRK` (the pgbench and wrk binaries, default from the `PATH`). Service logs and
//! pgbench's scratch files go to `target/bench-logs/`. The databases are left in place after a
//! run for inspection (`EXPLAIN ANALYZE`) and dropped at the start of the next one.

mod ab;
mod client;
mod cpu;
mod load;
mod pgbench;
mod report;
mod scenarios;
mod system;
mod token_ab;
mod tracing_ab;
mod write_ab;
mod wrk;

/// The query API's allocator, so that the bare axum handlers it is measured against (and the
/// load client) run on the same one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;

use crate::client::Http;
use crate::report::{Report, Row};
use crate::scenarios::{Context, Plan};
use crate::system::{Relay, System};

/// The database of the main HTTP figures.
const DATABASE: &str = "chronicle_bench";

/// The reference service's database.
const REFERENCE_DATABASE: &str = "chronicle_bench_reference";

/// The database of the large-log and long-stream figures.
const LOG_DATABASE: &str = "chronicle_bench_log";

/// The exchange the relay publishes to during a run: not the services' default, so nothing
/// bound to that one ever receives bench events. With no queue bound, the broker drops them.
const RELAY_EXCHANGE: &str = "chronicle_bench.events";

/// Command-line options.
#[derive(Debug)]
struct Options {
    quick: bool,
    no_relay: bool,
    token_ab: bool,
    tracing_ab: bool,
    /// Only the write path, builds side by side (`--write-ab`).
    write_ab: bool,
    /// The builds `--write-ab` compares (`--variant name=dir`, repeatable).
    variants: Vec<write_ab::Variant>,
    /// Only the large-log and long-stream system: no main system, no rebuild.
    log_only: bool,
    /// Only the read path: a create peak, projection lag, queries and analytics, with memory.
    reads: bool,
    /// With `--reads`: the projector's environment of an A run (`NAME=value,...`): lag and
    /// analytics are measured with it first, then with the defaults, each projector's memory
    /// apart.
    projector_ab: Vec<(&'static str, String)>,
    /// With `--reads`: the lag's fixed create rate instead of half the measured peak.
    lag_rate: Option<f64>,
    /// One lag load command in this many is probed for its lag (`--lag-probe-every`; 1 probes
    /// every command, as until stop 14).
    lag_probe_every: u64,
    /// Overrides the plan's large-log size.
    log_events: Option<i64>,
    out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        quick: false,
        no_relay: false,
        token_ab: false,
        tracing_ab: false,
        write_ab: false,
        variants: Vec::new(),
        log_only: false,
        reads: false,
        projector_ab: Vec::new(),
        lag_rate: None,
        lag_probe_every: 10,
        log_events: None,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-relay" => options.no_relay = true,
            "--token-ab" => options.token_ab = true,
            "--tracing-ab" => options.tracing_ab = true,
            "--log-only" => options.log_only = true,
            "--reads" => options.reads = true,
            "--lag-rate" => {
                let rate = args.next().context("--lag-rate needs creates per second")?;
                options.lag_rate = Some(
                    rate.parse()
                        .with_context(|| format!("--lag-rate {rate:?}"))?,
                );
            }
            "--lag-probe-every" => {
                let every = args
                    .next()
                    .context("--lag-probe-every needs a number of commands")?;
                options.lag_probe_every = every
                    .parse::<u64>()
                    .ok()
                    .filter(|every| *every > 0)
                    .with_context(|| format!("--lag-probe-every {every:?}: a positive integer"))?;
            }
            "--projector-ab" => {
                let list = args
                    .next()
                    .context("--projector-ab needs NAME=value[,NAME=value]")?;
                for pair in list.split(',').filter(|pair| !pair.is_empty()) {
                    let (name, value) = pair
                        .split_once('=')
                        .with_context(|| format!("--projector-ab {pair:?}: NAME=value"))?;
                    // Leaked once per run: the System's environment names are 'static.
                    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
                    options.projector_ab.push((name, value.to_owned()));
                }
            }
            "--write-ab" => options.write_ab = true,
            "--variant" => {
                let variant = args.next().context("--variant needs name=dir")?;
                options.variants.push(write_ab::Variant::parse(&variant)?);
            }
            "--log-events" => {
                let events = args.next().context("--log-events needs a number")?;
                options.log_events = Some(
                    events
                        .parse()
                        .with_context(|| format!("--log-events {events:?}"))?,
                );
            }
            "--out" => {
                options.out = Some(PathBuf::from(
                    args.next().context("--out needs a file name")?,
                ));
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--no-relay] [--log-only | --reads [--projector-ab NAME=v,..] [--lag-rate N]] [--lag-probe-every N] \
                     [--log-events N] \
                     [--out bench-results/<file>.json]\n       \
                     bench --token-ab [--quick]\n       \
                     bench --tracing-ab [--quick]\n       \
                     bench --write-ab [--quick] [--variant name=dir]..."
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(scenarios::queries::SERVE_BARE) {
        let database = args.next().context("--serve-bare needs a database name")?;
        return scenarios::queries::serve_bare(&database).await;
    }
    let options = parse_args()?;
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let mut plan = Plan::new(options.quick);
    if let Some(events) = options.log_events {
        plan.large_log_events = events;
    }
    let binaries = system::binary_dir();
    system::check_binaries(&binaries)?;
    let log_dir = binaries.join("..").join("bench-logs");
    let http = Http::new();
    let ab = if options.token_ab {
        Some(("access tokens, cache on and off", token_ab::ab()))
    } else if options.tracing_ab {
        Some((
            "tracing with export off, on and OTEL_SDK_DISABLED",
            tracing_ab::ab(),
        ))
    } else {
        None
    };
    if let Some((title, ab)) = ab {
        let (rounds, step) = if options.quick { (1, 3) } else { (3, 6) };
        eprintln!("{title} ({rounds} rounds of {step} s per load)");
        return ab::run(
            &ab,
            &binaries,
            &log_dir,
            &http,
            rounds,
            std::time::Duration::from_secs(step),
        )
        .await;
    }
    if options.write_ab {
        let (rounds, step) = if options.quick { (2, 3) } else { (3, 5) };
        let variants = if options.variants.is_empty() {
            vec![write_ab::Variant {
                name: "current".to_owned(),
                dir: binaries.clone(),
            }]
        } else {
            options.variants
        };
        return write_ab::run(write_ab::Setup {
            variants,
            reference_dir: binaries,
            log_dir: &log_dir,
            http: &http,
            rounds,
            step: std::time::Duration::from_secs(step),
            perf_dir: std::env::var_os("BENCH_PERF_DIR").map(PathBuf::from),
        })
        .await;
    }
    let bearer = system::access_token()?;
    if options.reads {
        let part = main_system(&options, plan, &binaries, &log_dir, &http, &bearer).await?;
        let report = Report {
            started_at: started_at.to_rfc3339(),
            mode: if options.quick {
                "quick-reads"
            } else {
                "reads"
            },
            machine: machine(),
            rows: part.rows,
            side_by_side: part.side_by_side,
            memory: part.memory,
            cpu: part.meter.map(|meter| meter.sections).unwrap_or_default(),
            total_seconds: started.elapsed().as_secs_f64(),
        };
        return write_report(&report, options.out, started_at);
    }
    let mut main_part = if options.log_only {
        eprintln!("--log-only: large log and long streams only");
        MainPart::default()
    } else {
        main_system(&options, plan, &binaries, &log_dir, &http, &bearer).await?
    };
    let mut memory = std::mem::take(&mut main_part.memory);
    let mut rows = std::mem::take(&mut main_part.rows);
    let mut meter = main_part
        .meter
        .take()
        .unwrap_or_else(|| cpu::Meter::new(Vec::new()));

    // A system of its own: a fresh log the size of which the scenario controls, and no relay
    // (it reads every type and would publish the whole seed).
    eprintln!("large log and long streams ({LOG_DATABASE})");
    system::recreate_database(LOG_DATABASE).await?;
    let mut log_system =
        System::start("log", &binaries, LOG_DATABASE, &log_dir, &http, &Relay::Off).await?;
    let log_pool = system::pool(LOG_DATABASE, 4).await?;
    let log_context = Context {
        http: http.with_bearer(&bearer)?,
        plain: http.clone(),
        bearer: bearer.clone(),
        command: log_system.base("command-api")?.to_owned(),
        query: log_system.base("query-api")?.to_owned(),
        projector: log_system.base("projector")?.to_owned(),
        reference: None,
        database: LOG_DATABASE.to_owned(),
        work_dir: log_dir.clone(),
        pool: log_pool.clone(),
        plan,
        projects: Arc::new(Mutex::new(Vec::new())),
    };
    meter.watch(log_system.pids());
    rows.extend(scenarios::large_log::large_log(&log_context, &mut meter).await?);
    eprintln!("long streams");
    rows.extend(scenarios::streams::long_streams(&log_context).await?);
    meter.section("long streams");
    memory.extend(log_system.memory());
    log_system.stop();
    log_pool.close().await;

    if !options.log_only {
        eprintln!("rebuild");
        rows.extend(scenarios::rebuild::rebuild(&plan).await?);
    }

    let report = Report {
        started_at: started_at.to_rfc3339(),
        mode: match (options.quick, options.log_only) {
            (true, true) => "quick-log",
            (false, true) => "log",
            (true, false) => "quick",
            (false, false) => "full",
        },
        machine: machine(),
        rows,
        side_by_side: main_part.side_by_side,
        memory,
        cpu: meter.sections,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    write_report(&report, options.out, started_at)
}

/// Prints `report` and writes it as JSON to `out`, by default `bench-results/<mode>-<time>.json`.
fn write_report(
    report: &Report,
    out: Option<PathBuf>,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    println!("\n{}", report.table());
    let out = out.unwrap_or_else(|| {
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
    std::fs::write(&out, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} ({:.0} s in all)",
        out.display(),
        report.total_seconds
    );
    Ok(())
}

/// What the main system's sections produce.
#[derive(Default)]
struct MainPart {
    rows: Vec<Row>,
    side_by_side: Vec<report::SideBySide>,
    memory: Vec<report::Memory>,
    meter: Option<cpu::Meter>,
}

/// The main system's sections: commands, idempotency, lag, queries, analytics.
async fn main_system(
    options: &Options,
    plan: Plan,
    binaries: &std::path::Path,
    log_dir: &std::path::Path,
    http: &Http,
    bearer: &str,
) -> anyhow::Result<MainPart> {
    let relay = if options.no_relay {
        eprintln!("relay off (--no-relay)");
        Relay::Off
    } else if system::broker_reachable() {
        eprintln!("relay on, publishing to exchange {RELAY_EXCHANGE}");
        Relay::To(RELAY_EXCHANGE.to_owned())
    } else {
        eprintln!("relay off: no broker on 127.0.0.1:5672");
        Relay::Off
    };

    eprintln!("preparing databases {DATABASE}, {REFERENCE_DATABASE}");
    system::recreate_database(DATABASE).await?;
    system::recreate_database(REFERENCE_DATABASE).await?;
    eprintln!("starting services from {}", binaries.display());
    let mut running = System::start("main", binaries, DATABASE, log_dir, http, &relay).await?;
    if !options.reads {
        running
            .spawn(system::REFERENCE, REFERENCE_DATABASE, &Relay::Off, http)
            .await?;
    }
    // After the services: they migrate the database as they start; their embedded migrations
    // are the ones that must match (the bench's own copy may be newer or older). Small: the
    // raw-INSERT baseline is pgbench, with connections of its own.
    let pool = system::pool(DATABASE, 4).await?;
    // Every request to the services carries an access token, as a real client's would.
    let context = Context {
        http: http.with_bearer(bearer)?,
        plain: http.clone(),
        bearer: bearer.to_owned(),
        command: running.base("command-api")?.to_owned(),
        query: running.base("query-api")?.to_owned(),
        projector: running.base("projector")?.to_owned(),
        reference: if options.reads {
            None
        } else {
            Some(running.base(system::REFERENCE)?.to_owned())
        },
        database: DATABASE.to_owned(),
        work_dir: log_dir.to_path_buf(),
        pool: pool.clone(),
        plan,
        projects: Arc::new(Mutex::new(Vec::new())),
    };
    scenarios::commands::prepare(&context).await?;

    let mut rows: Vec<Row> = Vec::new();
    let mut meter = cpu::Meter::new(running.pids());
    if options.reads {
        eprintln!("commands: create peak at 32 clients");
        let create = scenarios::commands::create_peak(&context, 32).await?;
        let peak = create.measured.as_ref().map_or(1.0, |m| m.rate);
        rows.push(create);
        meter.section("commands: create peak");
        let (half, rate_is) = match options.lag_rate {
            Some(rate) => (rate, scenarios::lag::RateIs::Fixed),
            None => ((peak / 2.0).max(1.0), scenarios::lag::RateIs::HalfOfPeak),
        };
        let mut memory = Vec::new();
        if !options.projector_ab.is_empty() {
            // A: the projector with the given environment, then B: the defaults, started
            // afresh on the same database, so each variant's peak memory is its own.
            eprintln!("projector A: {:?}", options.projector_ab);
            memory.extend(running.stop_service("projector"));
            running.set_env(options.projector_ab.clone());
            running.spawn("projector", DATABASE, &relay, http).await?;
            running.set_env(Vec::new());
            meter.watch(running.pids());
            let a = Context {
                projector: running.base("projector")?.to_owned(),
                ..context.clone()
            };
            eprintln!("projection lag (A)");
            rows.extend(label(
                scenarios::lag::lag(&a, half, rate_is, options.lag_probe_every).await?,
                "projection lag (A)",
            ));
            meter.section("projection lag (A)");
            eprintln!("analytics (A)");
            rows.extend(label(
                scenarios::analytics::ingest(&a).await?,
                "analytics (A)",
            ));
            meter.section("analytics (A)");
            memory.extend(running.stop_service("projector").map(|m| report::Memory {
                service: "projector (A)".to_owned(),
                ..m
            }));
            running.spawn("projector", DATABASE, &relay, http).await?;
            meter.watch(running.pids());
        }
        let context = Context {
            projector: running.base("projector")?.to_owned(),
            ..context.clone()
        };
        eprintln!("projection lag");
        rows.extend(scenarios::lag::lag(&context, half, rate_is, options.lag_probe_every).await?);
        meter.section("projection lag");
        if !options.projector_ab.is_empty() {
            eprintln!("analytics");
            rows.extend(scenarios::analytics::ingest(&context).await?);
            meter.section("analytics + multi-row INSERT");
        }
        eprintln!("queries");
        rows.extend(scenarios::queries::queries(&context).await?);
        meter.section("queries + bare axum");
        // A/B in the same run: the same figures from a query API with the version map's
        // learning and the totals cache off (what it did before they existed).
        eprintln!("queries, learning and totals cache off");
        memory.extend(running.stop_service("query-api"));
        running.set_env(vec![
            ("QUERY_LEARN_VERSIONS", "false".to_owned()),
            ("QUERY_TOTALS_CACHE", "0".to_owned()),
        ]);
        running.spawn("query-api", DATABASE, &relay, http).await?;
        running.set_env(Vec::new());
        meter.watch(running.pids());
        let off = Context {
            query: running.base("query-api")?.to_owned(),
            ..context.clone()
        };
        rows.extend(
            scenarios::queries::queries_as(&off, "queries (learning, totals cache off)").await?,
        );
        meter.section("queries (off) + bare axum");
        if options.projector_ab.is_empty() {
            eprintln!("analytics");
            rows.extend(scenarios::analytics::ingest(&context).await?);
            meter.section("analytics + multi-row INSERT");
        }
        memory.extend(running.memory());
        eprintln!("stopping services");
        running.stop();
        pool.close().await;
        return Ok(MainPart {
            rows,
            side_by_side: Vec::new(),
            memory,
            meter: Some(meter),
        });
    }
    eprintln!("commands");
    let throughput = scenarios::commands::throughput(&context).await?;
    rows.extend(throughput.rows);
    meter.section("commands: pgbench, Chronicle, reference");
    // The reference has done its part; its idle connections would only crowd PostgreSQL's
    // shared `max_connections` during the query figures.
    let reference_memory = running.stop_service(system::REFERENCE);
    meter.watch(running.pids());
    let half = (throughput.peak / 2.0).max(1.0);
    rows.push(scenarios::commands::fixed(&context, half).await?);
    meter.section("commands, fixed rate");
    eprintln!("idempotency");
    rows.extend(scenarios::commands::idempotency(&context).await?);
    meter.section("idempotency");
    eprintln!("projection lag");
    rows.extend(
        scenarios::lag::lag(
            &context,
            half,
            scenarios::lag::RateIs::HalfOfPeak,
            options.lag_probe_every,
        )
        .await?,
    );
    meter.section("projection lag");
    eprintln!("queries");
    rows.extend(scenarios::queries::queries(&context).await?);
    meter.section("queries + bare axum");
    eprintln!("analytics");
    rows.extend(scenarios::analytics::ingest(&context).await?);
    meter.section("analytics + multi-row INSERT");

    let mut memory = running.memory();
    memory.extend(reference_memory);
    eprintln!("stopping services");
    running.stop();
    pool.close().await;

    Ok(MainPart {
        rows,
        side_by_side: throughput.side_by_side,
        memory,
        meter: Some(meter),
    })
}

/// `rows` moved to section `section` (the variant of an A/B run).
fn label(rows: Vec<Row>, section: &'static str) -> Vec<Row> {
    rows.into_iter()
        .map(|mut row| {
            row.section = section;
            row
        })
        .collect()
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
