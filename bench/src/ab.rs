//! The A/B runner behind `--token-ab` and `--tracing-ab`: variants of the same system, told
//! apart by their services' environment, measured by `GET /projects/{id}` and `POST /projects`
//! at 32 clients, each variant started afresh on one database, the variants alternating over
//! rounds so that drift in the machine's load falls on all of them.
//!
//! The CPU each serving service spends per request is printed beside the rates: on a shared
//! machine it is the steadier figure, and the difference between variants is the work one
//! saves.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::client::{Http, OpError};
use crate::load::{Budget, closed_loop};
use crate::report::Measurement;
use crate::system::{self, Relay, System};

/// Clients of each load, as the issue asks.
const CLIENTS: usize = 32;

/// Projects the reads cycle over.
const PROJECTS: usize = 200;

/// One variant: its name in the table (at most 11 characters) and what its services' environment
/// adds to the bench's.
pub struct Variant {
    /// The row label.
    pub name: &'static str,
    /// Variables set for every service of the variant.
    pub env: Vec<(&'static str, String)>,
}

/// One comparison: where it runs and what it compares.
pub struct Ab {
    /// The system's label (its log files' prefix).
    pub label: &'static str,
    /// Its own database, dropped and created at the start.
    pub database: &'static str,
    /// The variants, in the order each round runs them.
    pub variants: Vec<Variant>,
}

/// One variant's figures in one round.
struct Figures {
    variant: &'static str,
    round: usize,
    read: Measurement,
    read_cpu_us: f64,
    create: Measurement,
    create_cpu_us: f64,
}

/// Runs `ab` for `rounds` rounds of `step` per load and prints its table.
pub async fn run(
    ab: &Ab,
    binaries: &Path,
    log_dir: &Path,
    http: &Http,
    rounds: usize,
    step: Duration,
) -> anyhow::Result<()> {
    eprintln!("load average at the start: {}", load_average());
    system::recreate_database(ab.database).await?;
    let authed = http.with_bearer(&system::access_token()?)?;
    let budget = Budget {
        duration: step,
        max_ops: 1_000_000,
    };
    let mut ids: Vec<Uuid> = Vec::new();
    let mut figures = Vec::new();
    for round in 1..=rounds {
        for variant in &ab.variants {
            let mut running = System::start_with(
                ab.label,
                binaries,
                ab.database,
                log_dir,
                http,
                &Relay::Off,
                variant.env.clone(),
            )
            .await?;
            let command = running.base("command-api")?.to_owned();
            let query = running.base("query-api")?.to_owned();
            if ids.is_empty() {
                ids = seed(&authed, &command, &query).await?;
            }
            eprintln!("  round {round}, {}", variant.name);
            let pids = running.pids();
            let pid = |name: &str| {
                pids.iter()
                    .filter(|(service, _)| *service == name)
                    .map(|(service, pid)| (*service, *pid))
                    .collect::<Vec<_>>()
            };
            let (query_pid, command_pid) = (pid("query-api"), pid("command-api"));

            let urls: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
                ids.iter()
                    .map(|id| format!("{query}/api/v1/projects/{id}"))
                    .collect(),
            );
            let before = crate::cpu::sample(&query_pid);
            let client = authed.clone();
            let read = closed_loop(CLIENTS, budget, move |i| {
                let (client, urls) = (client.clone(), std::sync::Arc::clone(&urls));
                async move {
                    let n = usize::try_from(i).unwrap_or_default() % urls.len().max(1);
                    let url = urls
                        .get(n)
                        .ok_or_else(|| OpError::Invalid("no url".into()))?;
                    client.get(url, &[]).await?.expect(&[200])?;
                    Ok(())
                }
            })
            .await?;
            let read_cpu_us = cpu_per_request(&query_pid, &before, read.histogram.len());

            let before = crate::cpu::sample(&command_pid);
            let (client, url) = (authed.clone(), format!("{command}/api/v1/projects"));
            let label = ab.label;
            let create = closed_loop(CLIENTS, budget, move |i| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let body = format!(
                        r#"{{"id":"{}","name":"{} bench {i}","description":"created by the benchmark"}}"#,
                        Uuid::now_v7(),
                        label,
                    );
                    client
                        .send(Method::POST, &url, &[], Some(Bytes::from(body)))
                        .await?
                        .expect(&[201])?;
                    Ok(())
                }
            })
            .await?;
            let create_cpu_us = cpu_per_request(&command_pid, &before, create.histogram.len());
            running.stop();
            figures.push(Figures {
                variant: variant.name,
                round,
                read: read.measurement(1, "req/s"),
                read_cpu_us,
                create: create.measurement(1, "req/s"),
                create_cpu_us,
            });
        }
    }
    println!("\n{}", table(ab, &figures));
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// The machine's 1, 5 and 15 minute load averages, as `uptime` prints them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Creates the projects the reads cycle over and waits until the query API serves the last.
async fn seed(http: &Http, command: &str, query: &str) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(PROJECTS);
    let mut consistency = String::new();
    for _ in 0..PROJECTS {
        let (id, token) = crate::scenarios::commands::create_one(http, command).await?;
        ids.push(id);
        consistency = token;
    }
    // The consistency token makes the query API wait for the projection to reach the write.
    http.get(
        &format!("{query}/api/v1/projects?page_size=1"),
        &[("x-consistency-token", &consistency)],
    )
    .await?
    .expect(&[200])?;
    Ok(ids)
}

/// The service's CPU time per successful request since `before`, in µs.
fn cpu_per_request(
    service: &[(&'static str, u32)],
    before: &crate::cpu::Sample,
    requests: u64,
) -> f64 {
    let after = crate::cpu::sample(service);
    let used = crate::cpu::usage("", 1.0, before, &after)
        .services
        .iter()
        .map(|(_, seconds)| seconds)
        .sum::<f64>();
    used * 1e6 / (requests.max(1) as f64)
}

/// The figures, a row per variant and round, then each variant's mean.
fn table(ab: &Ab, figures: &[Figures]) -> String {
    let mut out = String::from(
        "variant    round  GET req/s  p50 ms  p99 ms  µs CPU/GET  POST req/s  p50 ms  p99 ms  \
         µs CPU/POST  errors\n",
    );
    let line = |label: String, read: &Measurement, rcpu: f64, create: &Measurement, ccpu: f64| {
        format!(
            "{label:<17}{:>9.0}  {:>6.1}  {:>6.1}  {rcpu:>10.0}  {:>10.0}  {:>6.1}  {:>6.1}  \
             {ccpu:>11.0}  {}\n",
            read.rate,
            read.p50_ms.unwrap_or(f64::NAN),
            read.p99_ms.unwrap_or(f64::NAN),
            create.rate,
            create.p50_ms.unwrap_or(f64::NAN),
            create.p99_ms.unwrap_or(f64::NAN),
            read.errors + create.errors,
        )
    };
    for f in figures {
        out.push_str(&line(
            format!("{:<11}{:>5}", f.variant, f.round),
            &f.read,
            f.read_cpu_us,
            &f.create,
            f.create_cpu_us,
        ));
    }
    for variant in ab.variants.iter().map(|variant| variant.name) {
        let of: Vec<&Figures> = figures.iter().filter(|f| f.variant == variant).collect();
        let n = of.len().max(1) as f64;
        let mean = |pick: &dyn Fn(&Figures) -> f64| of.iter().map(|f| pick(f)).sum::<f64>() / n;
        out.push_str(&format!(
            "{variant:<11} mean{:>9.0}  {:>6}  {:>6}  {:>10.0}  {:>10.0}  {:>6}  {:>6}  {:>11.0}\n",
            mean(&|f| f.read.rate),
            "",
            "",
            mean(&|f| f.read_cpu_us),
            mean(&|f| f.create.rate),
            "",
            "",
            mean(&|f| f.create_cpu_us),
        ));
    }
    out
}
