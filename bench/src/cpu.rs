//! Where the cores went during each section: CPU seconds of each service, of this bench
//! process (the load client and in-process baselines), of the bench's finished child processes
//! (pgbench), of every PostgreSQL process (the server is shared, so this includes other
//! databases' work), and of the whole machine.
//!
//! On a 2-core machine shared by client, services and database, a throughput figure is
//! usually bounded by CPU; this says by whose.

use serde::Serialize;

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 on Linux x86-64).
const TICKS: f64 = 100.0;

/// CPU seconds consumed so far, per consumer.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    services: Vec<(String, f64)>,
    bench: f64,
    children: f64,
    postgres: f64,
    machine_busy: f64,
    machine_total: f64,
}

/// CPU used during one section.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// The section.
    pub section: String,
    /// Wall-clock seconds of the section.
    pub seconds: f64,
    /// Cores busy on average, machine-wide (2.0 = saturated on this machine).
    pub machine_cores_busy: f64,
    /// Cores used on average by each service.
    pub services: Vec<(String, f64)>,
    /// Cores used by the bench process itself (load client, baselines' client side).
    pub bench: f64,
    /// Cores used by the bench's child processes that finished in the section (pgbench).
    pub children: f64,
    /// Cores used by all PostgreSQL processes.
    pub postgres: f64,
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it are space-separated.
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// The sum of two fields of a stat line (0-based after the name), in seconds.
fn ticks(fields: &[String], first: usize, second: usize) -> Option<f64> {
    let a: f64 = fields.get(first)?.parse().ok()?;
    let b: f64 = fields.get(second)?.parse().ok()?;
    Some((a + b) / TICKS)
}

/// utime + stime of a process, in seconds.
fn process_seconds(pid: u32) -> Option<f64> {
    // After the name: state is field 3 of the whole line, utime 14, stime 15.
    ticks(&stat_fields(pid)?, 11, 12)
}

/// CPU seconds used so far by this process.
pub fn own_seconds() -> Option<f64> {
    process_seconds(std::process::id())
}

/// CPU seconds used so far by this process's children that have exited and been waited for
/// (cutime + cstime, fields 16 and 17): a pgbench run's CPU is the difference around it.
pub fn children_seconds() -> Option<f64> {
    ticks(&stat_fields(std::process::id())?, 13, 14)
}

/// Runs a load generator to completion and returns its standard output with the CPU seconds
/// it used (`None` where the platform cannot tell); fails with its output when it exits
/// non-zero. `what` is its name; `BENCH_<WHAT>` is the variable that names another binary.
pub async fn run_measured(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<(String, Option<f64>)> {
    use anyhow::Context as _;

    let cpu_before = children_seconds();
    let output = command.kill_on_drop(true).output().await.with_context(|| {
        format!(
            "running {what} (is it installed? BENCH_{} names another binary)",
            what.to_uppercase()
        )
    })?;
    let cpu = children_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        anyhow::bail!(
            "{what} failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((stdout, cpu))
}

fn postgres_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .filter_map(process_seconds)
        .sum()
}

fn machine_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0.0, 0.0);
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: f64 = values.iter().sum();
    // idle and iowait are not busy.
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS, total / TICKS)
}

/// Reads the counters now; `services` are (name, pid).
pub fn sample(services: &[(&'static str, u32)]) -> Sample {
    let (machine_busy, machine_total) = machine_seconds();
    Sample {
        services: services
            .iter()
            .map(|(name, pid)| ((*name).to_owned(), process_seconds(*pid).unwrap_or(0.0)))
            .collect(),
        bench: own_seconds().unwrap_or(0.0),
        children: children_seconds().unwrap_or(0.0),
        postgres: postgres_seconds(),
        machine_busy,
        machine_total,
    }
}

/// The usage between two samples over `seconds` of wall-clock time.
pub fn usage(section: &str, seconds: f64, before: &Sample, after: &Sample) -> Usage {
    let per = |delta: f64| delta / seconds.max(1e-9);
    let cores = std::thread::available_parallelism().map_or(1.0, |n| usize::from(n) as f64);
    let total = (after.machine_total - before.machine_total).max(1e-9);
    Usage {
        section: section.to_owned(),
        seconds,
        machine_cores_busy: (after.machine_busy - before.machine_busy) / total * cores,
        services: after
            .services
            .iter()
            .map(|(name, value)| {
                let earlier = before
                    .services
                    .iter()
                    .find(|(other, _)| other == name)
                    .map_or(0.0, |(_, v)| *v);
                (name.clone(), per(value - earlier))
            })
            .collect(),
        bench: per(after.bench - before.bench),
        children: per(after.children - before.children),
        // A sum over live processes: a backend that exited takes its CPU time with it, which
        // can make the difference negative; it is a lower bound either way.
        postgres: per(after.postgres - before.postgres).max(0.0),
    }
}

/// Measures sections one after the other.
pub struct Meter {
    services: Vec<(&'static str, u32)>,
    before: Sample,
    started: std::time::Instant,
    /// Usage of every finished section.
    pub sections: Vec<Usage>,
}

impl Meter {
    /// Starts measuring the first section.
    pub fn new(services: Vec<(&'static str, u32)>) -> Self {
        let before = sample(&services);
        Self {
            services,
            before,
            started: std::time::Instant::now(),
            sections: Vec::new(),
        }
    }

    /// Watches other processes (a second system) from now on; whatever ran since the last
    /// section ended (starting and seeding) belongs to no section.
    pub fn watch(&mut self, services: Vec<(&'static str, u32)>) {
        self.services = services;
        self.skip();
    }

    /// Drops what ran since the last section ended (seeding, starting) and starts the next.
    pub fn skip(&mut self) {
        self.before = sample(&self.services);
        self.started = std::time::Instant::now();
    }

    /// Ends the current section as `name` and starts the next.
    pub fn section(&mut self, name: &str) {
        let after = sample(&self.services);
        let seconds = self.started.elapsed().as_secs_f64();
        self.sections
            .push(usage(name, seconds, &self.before, &after));
        self.before = after;
        self.started = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_times() {
        assert!(own_seconds().is_some());
        assert!(children_seconds().is_some());
    }
}
