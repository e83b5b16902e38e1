//! `--write-ab`: the write path alone, builds side by side. Each variant is a directory of
//! release binaries (`--variant name=dir`, default the workspace's `target/release` as
//! `current`); per round, every variant is started afresh on an empty database and measured
//! beside pgbench's raw INSERT in that same database, then the reference service's create:
//!
//! - pgbench: the create's event row, 32 connections (the baseline of every rate);
//! - `POST /projects` without and with a fresh `Idempotency-Key` (bench client, 32 clients),
//!   then `PATCH /projects/{id}` without and with one, then the keyless create from wrk;
//! - the reference service's create (bench client, 32 clients), once per round.
//!
//! Beside each rate: the CPU each process spent per successful command (command-api,
//! projector, all of PostgreSQL, the load generator), over the load and the projector's
//! catching up after it (each load waits for it, so none shares the cores with the one
//! before), which is steadier than the rate on a shared machine (PostgreSQL's CPU counts every database on the server; pgbench's is sampled
//! inside its run, since its backends exit with it). Before the rounds, each variant counts
//! what one command costs the database from the command API's own sqlx events (statements by
//! kind, and pool acquires: each is a round trip of its own while the pool tests connections
//! before handing them out), sequentially and at 32 clients.
//! With `BENCH_PERF_DIR`, after the rounds each variant gets one more keyless create load
//! under `perf record -a -g`, whose files are left there for `perf report`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::client::{Http, OpError};
use crate::cpu::{Sample, sample};
use crate::load::{Budget, Outcome, closed_loop};
use crate::report::Measurement;
use crate::system::{self, Relay, System};

/// The variants' database, recreated for each start (variants may differ in migrations).
const DATABASE: &str = "chronicle_bench_write";

/// The reference service's database.
const REFERENCE_DATABASE: &str = "chronicle_bench_write_reference";

/// Clients of every load, as the issue asks.
const CLIENTS: usize = 32;

/// Sequential commands of each kind in the round-trip count.
const COUNTED: u64 = 200;

/// A build to measure.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its label in the tables.
    pub name: String,
    /// The directory holding its `command-api`, `query-api` and `projector`.
    pub dir: PathBuf,
}

impl Variant {
    /// Parses `name=dir`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (name, dir) = text
            .split_once('=')
            .with_context(|| format!("--variant {text:?}: expected name=dir"))?;
        Ok(Self {
            name: name.to_owned(),
            dir: PathBuf::from(dir),
        })
    }
}

/// Which load a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    Pgbench,
    Create,
    CreateKeyed,
    Update,
    UpdateKeyed,
    CreateWrk,
    Reference,
}

impl Load {
    fn label(self) -> &'static str {
        match self {
            Self::Pgbench => "pgbench INSERT",
            Self::Create => "create",
            Self::CreateKeyed => "create + key",
            Self::Update => "update",
            Self::UpdateKeyed => "update + key",
            Self::CreateWrk => "create (wrk)",
            Self::Reference => "reference create",
        }
    }
}

/// One load's figures: its rate and latency, and the CPU per successful operation (µs).
#[derive(Debug, Clone)]
struct Figure {
    variant: String,
    round: usize,
    load: Load,
    measurement: Measurement,
    /// µs of CPU per operation: the serving service(s), the projector, PostgreSQL, the client.
    service_us: f64,
    projector_us: f64,
    postgres_us: f64,
    client_us: f64,
    machine_busy: f64,
}

/// Everything [`run`] needs.
pub struct Setup<'a> {
    /// The builds to compare.
    pub variants: Vec<Variant>,
    /// Where the reference service's binary is.
    pub reference_dir: PathBuf,
    /// Service logs and scratch files.
    pub log_dir: &'a Path,
    /// The HTTP client (no token).
    pub http: &'a Http,
    /// Rounds of every variant.
    pub rounds: usize,
    /// Length of each load.
    pub step: Duration,
    /// Where `perf record` files go, if anywhere.
    pub perf_dir: Option<PathBuf>,
}

/// Runs the comparison and prints its tables.
pub async fn run(setup: Setup<'_>) -> anyhow::Result<()> {
    let bearer = system::access_token()?;
    let authed = setup.http.with_bearer(&bearer)?;
    let relay = if system::broker_reachable() {
        Relay::To(crate::RELAY_EXCHANGE.to_owned())
    } else {
        Relay::Off
    };
    eprintln!(
        "write path: {} variant(s), {} round(s) of {:?} per load, relay {}",
        setup.variants.len(),
        setup.rounds,
        setup.step,
        if matches!(relay, Relay::Off) {
            "off (no broker)"
        } else {
            "on"
        }
    );
    let mut counts = Vec::new();
    for variant in &setup.variants {
        eprintln!("  round trips of {}", variant.name);
        counts.push((
            variant.name.clone(),
            count_round_trips(&setup, variant, &authed, &relay).await?,
        ));
    }
    // Printed now as well: the rounds take minutes.
    eprintln!("\n{}", counts_table(&counts));

    system::recreate_database(REFERENCE_DATABASE).await?;
    let mut reference = System::new("write-reference", &setup.reference_dir, setup.log_dir)?;
    reference
        .spawn(
            system::REFERENCE,
            REFERENCE_DATABASE,
            &Relay::Off,
            setup.http,
        )
        .await?;
    let reference_url = format!("{}/api/v1/projects", reference.base(system::REFERENCE)?);
    let reference_pids = reference.pids();

    let budget = Budget {
        duration: setup.step,
        max_ops: 1_000_000,
    };
    let mut figures = Vec::new();
    for round in 1..=setup.rounds {
        // Alternate the order, so neither variant always runs first in a round.
        let mut order: Vec<&Variant> = setup.variants.iter().collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for variant in order {
            eprintln!("  round {round}, {}", variant.name);
            figures.extend(
                measure_variant(&setup, variant, round, &authed, &bearer, &relay, budget).await?,
            );
        }
        eprintln!("  round {round}, reference");
        let http = setup.http.clone();
        let url = reference_url.clone();
        let (outcome, cpu) = metered(&reference_pids, || {
            closed_loop(CLIENTS, budget, move |i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    http.send(
                        Method::POST,
                        &url,
                        &[],
                        Some(create_body(Uuid::now_v7(), i)),
                    )
                    .await?
                    .expect(&[201])?;
                    Ok(())
                }
            })
        })
        .await?;
        figures.push(figure("reference", round, Load::Reference, &outcome, &cpu));
    }
    reference.stop();

    if let Some(dir) = &setup.perf_dir {
        for variant in &setup.variants {
            profile(&setup, variant, dir, &bearer, &relay).await?;
        }
    }

    println!("\n{}", counts_table(&counts));
    println!("{}", figures_table(&figures));
    println!("{}", means_table(&figures));
    Ok(())
}

/// A create's body, as the main bench sends it.
fn create_body(id: Uuid, i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","name":"bench project {i}","description":"created by the benchmark"}}"#
    ))
}

/// One create or update, with a fresh `Idempotency-Key` when `keyed`; a create records its id.
async fn command(
    http: &Http,
    base: &str,
    update: bool,
    keyed: bool,
    i: u64,
    ids: &Mutex<Vec<Uuid>>,
) -> Result<(), OpError> {
    let key = keyed.then(|| Uuid::new_v4().to_string());
    let headers: Vec<(&'static str, &str)> = key
        .as_deref()
        .map(|key| vec![("idempotency-key", key)])
        .unwrap_or_default();
    if update {
        // Consecutive operations take consecutive projects: different streams, no races.
        let id = {
            let ids = ids
                .lock()
                .map_err(|_| OpError::Invalid("poisoned".into()))?;
            let len = u64::try_from(ids.len()).unwrap_or(u64::MAX).max(1);
            *ids.get(usize::try_from(i % len).unwrap_or_default())
                .ok_or_else(|| OpError::Invalid("no project to update".into()))?
        };
        // A name no earlier load gave this project: a rename to the name it has appends
        // nothing, and would measure a command that changes nothing.
        let body = Bytes::from(format!(r#"{{"name":"renamed {}"}}"#, Uuid::now_v7()));
        http.send(
            Method::PATCH,
            &format!("{base}/api/v1/projects/{id}"),
            &headers,
            Some(body),
        )
        .await?
        .expect(&[200])?;
    } else {
        let id = Uuid::now_v7();
        http.send(
            Method::POST,
            &format!("{base}/api/v1/projects"),
            &headers,
            Some(create_body(id, i)),
        )
        .await?
        .expect(&[201])?;
        if let Ok(mut ids) = ids.lock() {
            ids.push(id);
        }
    }
    Ok(())
}

/// CPU seconds used by each watched process, PostgreSQL, this process, its finished
/// children and the machine, around `work`.
struct Cpu {
    before: Sample,
    after: Sample,
    seconds: f64,
}

async fn metered<F, Fut, T>(pids: &[(&'static str, u32)], work: F) -> anyhow::Result<(T, Cpu)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let before = sample(pids);
    let started = std::time::Instant::now();
    let result = work().await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        result,
        Cpu {
            before,
            after: sample(pids),
            seconds,
        },
    ))
}

/// The figure of a load (`measurement`) whose processes used `cpu` over the load and the
/// projector's catching up after it. The client's CPU is the load generator's own, over its
/// whole run.
fn figure_of(
    variant: &str,
    round: usize,
    load: Load,
    measurement: Measurement,
    cpu: &Cpu,
) -> Figure {
    let ops = measurement.ops as f64;
    figure_over(variant, round, load, measurement, cpu, ops)
}

/// [`figure_of`] for a `cpu` window in which `ops` operations ran.
fn figure_over(
    variant: &str,
    round: usize,
    load: Load,
    measurement: Measurement,
    cpu: &Cpu,
    ops: f64,
) -> Figure {
    let usage = crate::cpu::usage("", cpu.seconds, &cpu.before, &cpu.after);
    let ops = ops.max(1.0);
    let per_op = |cores: f64| cores * cpu.seconds * 1e6 / ops;
    let client = measurement.client_cores.unwrap_or(f64::NAN) * 1e6 / measurement.rate.max(1e-9);
    let service = |names: &[&str]| {
        usage
            .services
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, cores)| per_op(*cores))
            .sum::<f64>()
    };
    Figure {
        variant: variant.to_owned(),
        round,
        load,
        service_us: service(&["command-api", system::REFERENCE]),
        projector_us: service(&["projector"]),
        postgres_us: per_op(usage.postgres),
        client_us: client,
        machine_busy: usage.machine_cores_busy,
        measurement,
    }
}

fn figure(variant: &str, round: usize, load: Load, outcome: &Outcome, cpu: &Cpu) -> Figure {
    figure_of(variant, round, load, outcome.measurement(1, "req/s"), cpu)
}

/// One variant, started afresh: pgbench, then the command loads.
async fn measure_variant(
    setup: &Setup<'_>,
    variant: &Variant,
    round: usize,
    authed: &Http,
    bearer: &str,
    relay: &Relay,
    budget: Budget,
) -> anyhow::Result<Vec<Figure>> {
    system::recreate_database(DATABASE).await?;
    let mut running = System::start(
        "write",
        &variant.dir,
        DATABASE,
        setup.log_dir,
        setup.http,
        relay,
    )
    .await?;
    let pids = running.pids();
    let base = running.base("command-api")?.to_owned();
    let pool = system::pool(DATABASE, 1).await?;
    crate::pgbench::prepare(&pool).await?;
    let name = variant.name.as_str();
    let mut figures = Vec::new();

    // pgbench's backends exit with it and take their CPU times along: PostgreSQL is sampled
    // inside the run, from half a second after its start to half a second before its end.
    let margin = Duration::from_millis(500);
    let window = async {
        tokio::time::sleep(margin).await;
        let before = sample(&pids);
        let started = std::time::Instant::now();
        tokio::time::sleep(setup.step.saturating_sub(margin * 2)).await;
        Cpu {
            before,
            after: sample(&pids),
            seconds: started.elapsed().as_secs_f64(),
        }
    };
    let (measurement, cpu) = tokio::join!(
        crate::pgbench::insert(DATABASE, CLIENTS, setup.step, setup.log_dir),
        window
    );
    match measurement {
        Ok(measurement) => {
            let ops = measurement.rate * cpu.seconds;
            figures.push(figure_over(
                name,
                round,
                Load::Pgbench,
                measurement,
                &cpu,
                ops,
            ));
        }
        Err(error) => eprintln!("    pgbench failed: {error:#}"),
    }

    let ids = Arc::new(Mutex::new(Vec::new()));
    for (load, update, keyed) in [
        (Load::Create, false, false),
        (Load::CreateKeyed, false, true),
        (Load::Update, true, false),
        (Load::UpdateKeyed, true, true),
    ] {
        let (http, base, ids) = (authed.clone(), base.clone(), Arc::clone(&ids));
        let (outcome, cpu) = metered(&pids, || async {
            let outcome = closed_loop(CLIENTS, budget, move |i| {
                let (http, base, ids) = (http.clone(), base.clone(), Arc::clone(&ids));
                async move { command(&http, &base, update, keyed, i, &ids).await }
            })
            .await?;
            settle(&pool).await?;
            Ok(outcome)
        })
        .await?;
        figures.push(figure(name, round, load, &outcome, &cpu));
    }

    let url = format!("{base}/api/v1/projects");
    let wrk = metered(&pids, || async {
        let measured =
            crate::wrk::creates(&url, CLIENTS, setup.step, setup.log_dir, Some(bearer)).await?;
        settle(&pool).await?;
        Ok(measured)
    })
    .await;
    match wrk {
        Ok((measurement, cpu)) => {
            figures.push(figure_of(name, round, Load::CreateWrk, measurement, &cpu));
        }
        Err(error) => eprintln!("    wrk failed: {error:#}"),
    }
    pool.close().await;
    running.stop();
    Ok(figures)
}

/// Waits (at most 30 s) until every projection's checkpoint has reached the newest event, so
/// that a load's CPU window holds the projector's work for its events and the next load does
/// not share the cores with this one's catching up.
async fn settle(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_checkpoints \
              WHERE position < (SELECT coalesce(max(global_position), 0) FROM events) \
                AND name IN ('projects', 'rabbitmq-relay')",
        )
        .fetch_one(pool)
        .await?;
        if behind == 0 || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `variant` with sqlx's statement and acquire events logged, runs [`COUNTED`]
/// sequential commands of each kind, then each kind from [`CLIENTS`] clients for a step (where
/// the NOTIFY that wakes the projectors is shared by the appends that land while one is in
/// flight), and counts what the command API's log says they cost per command. Logging every
/// statement costs CPU: these loads count, they are not timed.
async fn count_round_trips(
    setup: &Setup<'_>,
    variant: &Variant,
    authed: &Http,
    relay: &Relay,
) -> anyhow::Result<Counts> {
    system::recreate_database(DATABASE).await?;
    let mut running = System::start_with(
        "write-count",
        &variant.dir,
        DATABASE,
        setup.log_dir,
        setup.http,
        relay,
        vec![(
            "RUST_LOG",
            "warn,sqlx::query=debug,sqlx::pool::acquire=debug".to_owned(),
        )],
    )
    .await?;
    let base = running.base("command-api")?.to_owned();
    let log = setup.log_dir.join("write-count-command-api.log");
    let ids = Arc::new(Mutex::new(Vec::new()));
    let mut counted = Vec::new();
    let budget = Budget {
        duration: setup.step,
        max_ops: 1_000_000,
    };
    for concurrent in [false, true] {
        for (load, update, keyed) in [
            (Load::Create, false, false),
            (Load::CreateKeyed, false, true),
            (Load::Update, true, false),
            (Load::UpdateKeyed, true, true),
        ] {
            let lines_before = read_lines(&log).len();
            let ops = if concurrent {
                let (http, base, ids) = (authed.clone(), base.clone(), Arc::clone(&ids));
                let outcome = closed_loop(CLIENTS, budget, move |i| {
                    let (http, base, ids) = (http.clone(), base.clone(), Arc::clone(&ids));
                    async move { command(&http, &base, update, keyed, i, &ids).await }
                })
                .await?;
                outcome.histogram.len()
            } else {
                for i in 0..COUNTED {
                    command(authed, &base, update, keyed, i, &ids)
                        .await
                        .map_err(|error| anyhow::anyhow!("{error:?}"))?;
                }
                COUNTED
            };
            // sqlx logs a statement when it is done, before the answer: only the coalesced
            // NOTIFY may trail its commands.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let lines = read_lines(&log);
            counted.push((
                load,
                concurrent,
                Counted::from_log(lines.get(lines_before..).unwrap_or_default(), ops),
            ));
        }
    }
    running.stop();
    Ok(counted)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One variant's counts: per load, whether it ran from [`CLIENTS`] clients, and the count.
type Counts = Vec<(Load, bool, Counted)>;

/// What the command API's log said a batch of `ops` commands cost.
#[derive(Debug, Clone, Default)]
struct Counted {
    /// Statements by their first words (sqlx's summary).
    statements: BTreeMap<String, u64>,
    acquires: u64,
    ops: u64,
}

impl Counted {
    fn from_log(lines: &[String], ops: u64) -> Self {
        let mut counted = Self {
            ops,
            ..Self::default()
        };
        for line in lines {
            if line.contains("sqlx::pool::acquire") {
                counted.acquires += 1;
            } else if line.contains("sqlx::query") {
                *counted.statements.entry(summary(line)).or_default() += 1;
            }
        }
        counted
    }

    fn statements(&self) -> u64 {
        self.statements.values().sum()
    }
}

/// A statement's kind from its log line: sqlx's `summary` field, cut to its first words.
fn summary(line: &str) -> String {
    let text = line
        .split_once("summary=")
        .map_or(line, |(_, rest)| rest)
        .trim_start_matches('"');
    let text = text.split('"').next().unwrap_or(text);
    text.split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

fn counts_table(counts: &[(String, Counts)]) -> String {
    let mut out = format!(
        "Per command, from command-api's sqlx events ({COUNTED} sequential commands of each \
         kind, then {CLIENTS} clients for a step). Every statement is a round trip and its own \
         transaction (autocommit); a pool acquire is one more round trip where the pool pings \
         the connection it hands out (sqlx's default, before decision 0017; since then only \
         after 1 s idle)\n\
         variant     command         load        statements  acquires  statements by kind\n"
    );
    for (variant, loads) in counts {
        for (load, concurrent, counted) in loads {
            let n = counted.ops.max(1) as f64;
            let kinds = counted
                .statements
                .iter()
                .map(|(kind, count)| format!("{kind} {:.2}", *count as f64 / n))
                .collect::<Vec<_>>()
                .join("; ");
            out.push_str(&format!(
                "{variant:<11} {:<15} {:<11} {:>10.2}  {:>8.2}  {kinds}\n",
                load.label(),
                if *concurrent {
                    format!("{CLIENTS} clients")
                } else {
                    "sequential".to_owned()
                },
                counted.statements() as f64 / n,
                counted.acquires as f64 / n,
            ));
        }
    }
    out
}

fn figures_table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "variant     round  load              rate/s  p50 ms  p99 ms  err  machine  \
         µs/op: service  projector  postgres  client\n",
    );
    for f in figures {
        out.push_str(&format!(
            "{:<11} {:>5}  {:<16} {:>7.0}  {:>6.1}  {:>6.1}  {:>3}  {:>7.2}  {:>14.0}  {:>9.0}  \
             {:>8.0}  {:>6.0}\n",
            f.variant,
            f.round,
            f.load.label(),
            f.measurement.rate,
            f.measurement.p50_ms.unwrap_or(f64::NAN),
            f.measurement.p99_ms.unwrap_or(f64::NAN),
            f.measurement.errors,
            f.machine_busy,
            f.service_us,
            f.projector_us,
            f.postgres_us,
            f.client_us,
        ));
    }
    out
}

/// Means per variant and load, with each rate against pgbench's and the reference's means and
/// the keyed loads against their keyless twins.
fn means_table(figures: &[Figure]) -> String {
    let mut groups: BTreeMap<(String, Load), Vec<&Figure>> = BTreeMap::new();
    for f in figures {
        groups
            .entry((f.variant.clone(), f.load))
            .or_default()
            .push(f);
    }
    let mean = |of: &[&Figure], pick: &dyn Fn(&Figure) -> f64| {
        of.iter().map(|f| pick(f)).sum::<f64>() / of.len().max(1) as f64
    };
    let rate_of = |variant: &str, load: Load| {
        groups
            .get(&(variant.to_owned(), load))
            .map(|of| mean(of, &|f| f.measurement.rate))
    };
    let reference = rate_of("reference", Load::Reference);
    let mut out = String::from(
        "Means over rounds:\nvariant     load              rate/s  vs pgbench  vs reference  \
         vs keyless  µs/op: service  projector  postgres  client\n",
    );
    for ((variant, load), of) in &groups {
        let rate = mean(of, &|f| f.measurement.rate);
        let ratio = |base: Option<f64>| {
            base.filter(|base| *base > 0.0)
                .map_or_else(|| "-".to_owned(), |base| format!("{:.2}x", rate / base))
        };
        let keyless = match load {
            Load::CreateKeyed => rate_of(variant, Load::Create),
            Load::UpdateKeyed => rate_of(variant, Load::Update),
            _ => None,
        };
        let commands = !matches!(load, Load::Pgbench | Load::Reference);
        out.push_str(&format!(
            "{variant:<11} {:<16} {rate:>7.0}  {:>10}  {:>12}  {:>10}  {:>14.0}  {:>9.0}  {:>8.0}  \
             {:>6.0}\n",
            load.label(),
            if commands || *load == Load::Reference {
                ratio(rate_of(variant, Load::Pgbench).or_else(|| {
                    // The reference has no pgbench of its own: the mean of every variant's.
                    let all: Vec<&Figure> =
                        figures.iter().filter(|f| f.load == Load::Pgbench).collect();
                    (!all.is_empty()).then(|| mean(&all, &|f| f.measurement.rate))
                }))
            } else {
                "-".to_owned()
            },
            if commands {
                ratio(reference)
            } else {
                "-".to_owned()
            },
            ratio(keyless),
            mean(of, &|f| f.service_us),
            mean(of, &|f| f.projector_us),
            mean(of, &|f| f.postgres_us),
            mean(of, &|f| f.client_us),
        ));
    }
    out
}

/// One more keyless create load from wrk on `variant`, under `perf record -a -g` (every
/// process: command-api's threads and PostgreSQL's backends alike); the file is
/// `<dir>/<variant>.perf.data`, with the command API's pid in `<dir>/<variant>.pid`.
async fn profile(
    setup: &Setup<'_>,
    variant: &Variant,
    dir: &Path,
    bearer: &str,
    relay: &Relay,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    system::recreate_database(DATABASE).await?;
    let mut running = System::start(
        "write-perf",
        &variant.dir,
        DATABASE,
        setup.log_dir,
        setup.http,
        relay,
    )
    .await?;
    let url = format!("{}/api/v1/projects", running.base("command-api")?);
    // Warm up first: pools open and statements are prepared outside the profile.
    crate::wrk::creates(
        &url,
        CLIENTS,
        Duration::from_secs(1),
        setup.log_dir,
        Some(bearer),
    )
    .await?;
    if let Some((_, pid)) = running
        .pids()
        .into_iter()
        .find(|(name, _)| *name == "command-api")
    {
        std::fs::write(dir.join(format!("{}.pid", variant.name)), pid.to_string())?;
    }
    let data = dir.join(format!("{}.perf.data", variant.name));
    let seconds = setup.step.as_secs().max(1);
    let mut perf = tokio::process::Command::new("perf")
        .args(["record", "-a", "-g", "-F", "499", "-o"])
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting perf record")?;
    let measured =
        crate::wrk::creates(&url, CLIENTS, setup.step, setup.log_dir, Some(bearer)).await?;
    perf.wait().await.context("waiting for perf record")?;
    eprintln!(
        "  profiled {}: {:.0} creates/s under perf, {}",
        variant.name,
        measured.rate,
        data.display()
    );
    running.stop();
    Ok(())
}
