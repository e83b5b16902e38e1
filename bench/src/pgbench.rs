//! The raw-INSERT baseline, measured by PostgreSQL's own load generator: `pgbench` appending the
//! row a create appends (same columns, same payload and metadata shapes and sizes, time-ordered
//! ids as `Uuid::now_v7` gives, one autocommitted statement with the same `RETURNING`) into
//! `bench_events`, a twin of `events` with all its indexes and defaults.
//!
//! pgbench is written in C, keeps one connection per client, and costs the machine a fraction
//! of what a Rust client driving sqlx costs; the old in-process sqlx baseline reported 4-5k
//! tx/s where pgbench reaches ~15k on the same machine, which flattered every ratio.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::cpu::run_measured;
use crate::report::{Measurement, new_histogram, record};

/// The pgbench binary (`BENCH_PGBENCH` overrides).
fn program() -> PathBuf {
    std::env::var_os("BENCH_PGBENCH").map_or_else(|| PathBuf::from("pgbench"), PathBuf::from)
}

/// One create's event row. pgbench turns every `:name` into a parameter, so the JSON keeps a
/// space after each colon that precedes a bare word (`"owner_id": null`); `::` casts are safe.
const SCRIPT: &str = r#"\set n random(1, 1000000000)
INSERT INTO bench_events (event_id, aggregate_type, aggregate_id, sequence, event_type,
                          event_version, payload, metadata)
VALUES (bench_uuid_v7(), 'Project', bench_uuid_v7()::text, 1, 'ProjectCreated', '2',
        format('{"ProjectCreated":{"name":"bench project %s","description":"created by the benchmark","owner_id": null,"created_by":"anonymous"}}', :n::text)::json,
        format('{"actor":"anonymous","ip":"127.0.0.1","request_id":"%s","correlation_id":"%s","causation_id":"%s"}', gen_random_uuid(), gen_random_uuid(), bench_uuid_v7())::json)
RETURNING tx_id::text::bigint, global_position;
"#;

/// Creates the baseline's table and id function in the bench database: `events`' twin without
/// its immutability trigger (which fires only on UPDATE and DELETE, so inserts cost the same),
/// and a UUID v7 generator (48-bit millisecond time first, like `Uuid::now_v7`), so index
/// inserts land at the right-hand edge as the command path's do.
pub async fn prepare(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL)")
        .execute(pool)
        .await
        .context("creating bench_events")?;
    sqlx::query(
        "CREATE OR REPLACE FUNCTION bench_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$ \
           SELECT encode(overlay(uuid_send(gen_random_uuid()) \
                  PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) \
                                                   * 1000)::bigint) FROM 3) \
                  FROM 1 FOR 6), 'hex')::uuid $$",
    )
    .execute(pool)
    .await
    .context("creating bench_uuid_v7()")?;
    Ok(())
}

/// What pgbench printed that the measurement needs.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    tps: Option<f64>,
    failed: u64,
}

fn parse_summary(stdout: &str) -> Summary {
    let mut summary = Summary::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("tps = ") {
            summary.tps = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            summary.failed = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    summary
}

/// The latency (µs) of each line of a pgbench transaction log
/// (`client transaction latency_us script epoch us`).
fn latencies(log: &str) -> impl Iterator<Item = u64> + '_ {
    log.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

/// Runs the create's INSERT from `clients` connections for `duration` (whole seconds, at least
/// one) against `database`, and returns its rate (pgbench's tps, connection time excluded),
/// its latency distribution (from the per-transaction log) and pgbench's CPU use.
pub async fn insert(
    database: &str,
    clients: usize,
    duration: Duration,
    work_dir: &Path,
) -> anyhow::Result<Measurement> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let script = work_dir.join("pgbench-create-insert.sql");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let prefix = format!("pgbench-c{clients}-{}", std::process::id());
    // Logs of an earlier, interrupted run would be read as this one's.
    remove_logs(work_dir, &prefix);
    let seconds = duration.as_secs_f64().round().max(1.0);
    let mut command = tokio::process::Command::new(program());
    command
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"])
        // No vacuum of pgbench's own tables (there are none); prepared statements as sqlx uses.
        .args(["-n", "-M", "prepared"])
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={}", clients.min(2)))
        .arg(format!("--time={seconds:.0}"))
        .arg("--log")
        .arg(format!("--log-prefix={}", work_dir.join(&prefix).display()))
        .arg("--file")
        .arg(&script)
        .arg(database);
    let (stdout, cpu) = run_measured(command, "pgbench").await?;
    let summary = parse_summary(&stdout);
    let mut histogram = new_histogram()?;
    for entry in std::fs::read_dir(work_dir)
        .with_context(|| format!("reading {}", work_dir.display()))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
    {
        let log = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        for micros in latencies(&log) {
            record(&mut histogram, Duration::from_micros(micros));
        }
    }
    remove_logs(work_dir, &prefix);
    let mut measurement = Measurement::from_histogram(
        &histogram,
        summary.failed,
        Duration::from_secs_f64(seconds),
        1,
        "tx/s",
    )
    .with_client_cpu(cpu);
    if let Some(tps) = summary.tps {
        measurement.rate = tps;
    }
    Ok(measurement)
}

fn remove_logs(dir: &Path, prefix: &str) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_tps_without_connection_time_and_failures() {
        let stdout = "transaction type: x.sql\nnumber of failed transactions: 3 (0.010%)\n\
                      latency average = 0.5 ms\ntps = 15321.456 (without initial connection time)\n";
        assert_eq!(
            parse_summary(stdout),
            Summary {
                tps: Some(15321.456),
                failed: 3
            }
        );
    }

    #[test]
    fn latencies_are_the_third_field_of_each_log_line() {
        let log = "0 1 523 0 1700000000 123\n1 1 611 0 1700000000 200\n";
        assert_eq!(latencies(log).collect::<Vec<_>>(), vec![523, 611]);
    }

    #[test]
    fn the_script_has_no_bare_variable_but_n() {
        // pgbench would take `:null` for an undefined variable and fail every transaction.
        let names: Vec<&str> = SCRIPT
            .match_indices(':')
            .filter_map(|(at, _)| {
                let rest = &SCRIPT[at + 1..];
                let previous = SCRIPT[..at].chars().last();
                (previous != Some(':') && rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
                    .then(|| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
                    .flatten()
            })
            .collect();
        assert_eq!(names, vec!["n"]);
    }
}
