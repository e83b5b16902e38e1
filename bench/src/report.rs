//! What a run produces: measurements, the rows of the figures table (each beside the baseline
//! measured in the same run), and their rendering as a text table and as JSON.
//!
//! Ratios are the point: absolute figures on a shared 2-core machine move with whatever else
//! runs, but a figure and its baseline measured minutes apart suffer the same noise.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// An empty latency histogram: microseconds from 1 µs to 60 s, 3 significant digits.
///
/// # Errors
///
/// Never in practice: the bounds are constants that `new_with_bounds` accepts.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .map_err(|error| anyhow::anyhow!("creating a histogram: {error:?}"))
}

/// Records `elapsed` into `histogram`, saturating at its upper bound.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, histogram.high());
    histogram.saturating_record(micros);
}

/// One measured load: how much was done, how fast, and its latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (transport errors, unexpected statuses, dropped sends).
    pub errors: u64,
    /// Wall-clock seconds the load ran.
    pub seconds: f64,
    /// Throughput in `unit`.
    pub rate: f64,
    /// What `rate` counts per second: `req/s`, `events/s`, ...
    pub unit: &'static str,
    /// Median latency in milliseconds, when latencies were recorded.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// Worst latency in milliseconds.
    pub max_ms: Option<f64>,
    /// Cores the load generator used on average while it ran: this process for the bench's
    /// own client (which, in the query figures, also hosts the bare-axum baseline), pgbench's
    /// process for pgbench. On a 2-core machine shared with the system under test, a client
    /// near 1 core is part of what bounds the figure.
    pub client_cores: Option<f64>,
}

impl Measurement {
    /// A measurement from a latency histogram of successful operations.
    pub fn from_histogram(
        histogram: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
        items_per_op: u64,
        unit: &'static str,
    ) -> Self {
        let ops = histogram.len();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let millis = |micros: u64| micros as f64 / 1000.0;
        let has = ops > 0;
        Self {
            ops,
            errors,
            seconds,
            rate: (ops * items_per_op) as f64 / seconds,
            unit,
            p50_ms: has.then(|| millis(histogram.value_at_quantile(0.50))),
            p99_ms: has.then(|| millis(histogram.value_at_quantile(0.99))),
            max_ms: has.then(|| millis(histogram.max())),
            client_cores: None,
        }
    }

    /// The same measurement with the client's CPU use: `cpu_seconds` over its `seconds`.
    pub fn with_client_cpu(mut self, cpu_seconds: Option<f64>) -> Self {
        self.client_cores = cpu_seconds.map(|cpu| cpu / self.seconds.max(1e-9));
        self
    }

    /// A throughput-only measurement (bulk work such as a rebuild).
    pub fn throughput(items: u64, elapsed: Duration, unit: &'static str) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            ops: items,
            errors: 0,
            seconds,
            rate: items as f64 / seconds,
            unit,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            client_cores: None,
        }
    }
}

/// A target from the issue: what it says, the value compared, and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The target, e.g. `>= 0.5x raw INSERT`.
    pub target: String,
    /// The value compared with it.
    pub value: f64,
    /// Whether the value meets the target.
    pub met: bool,
}

/// One line of the figures table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The hot path: `commands`, `queries`, ...
    pub section: &'static str,
    /// What was measured.
    pub figure: String,
    /// The load it was measured under (concurrency, rate, size).
    pub load: String,
    /// The figure itself; `None` when the section was skipped.
    pub measured: Option<Measurement>,
    /// What the baseline is.
    pub baseline_name: Option<String>,
    /// The baseline measured in the same run under the same load.
    pub baseline: Option<Measurement>,
    /// measured / baseline: of throughput, or of median latency for latency figures (see
    /// `ratio_of`).
    pub ratio: Option<f64>,
    /// What `ratio` divides: `rate` or `p50 latency`.
    pub ratio_of: &'static str,
    /// The target this figure is held against, if any.
    pub goal: Option<Goal>,
    /// Anything a reader needs to interpret the row.
    pub note: Option<String>,
}

impl Row {
    /// A row with a measurement and nothing else yet.
    pub fn new(section: &'static str, figure: impl Into<String>, load: impl Into<String>) -> Self {
        Self {
            section,
            figure: figure.into(),
            load: load.into(),
            measured: None,
            baseline_name: None,
            baseline: None,
            ratio: None,
            ratio_of: "rate",
            goal: None,
            note: None,
        }
    }

    /// Sets the measurement.
    pub fn measured(mut self, measurement: Measurement) -> Self {
        self.measured = Some(measurement);
        self
    }

    /// Sets the baseline and the throughput ratio.
    pub fn baseline(mut self, name: impl Into<String>, baseline: Measurement) -> Self {
        self.ratio = self
            .measured
            .as_ref()
            .filter(|_| baseline.rate > 0.0)
            .map(|measured| measured.rate / baseline.rate);
        self.baseline_name = Some(name.into());
        self.baseline = Some(baseline);
        self
    }

    /// Sets the baseline of a latency figure: the ratio is measured p50 / baseline p50 (above
    /// 1 is slower than the baseline).
    pub fn latency_baseline(mut self, name: impl Into<String>, baseline: Measurement) -> Self {
        self.ratio = match (
            self.measured.as_ref().and_then(|m| m.p50_ms),
            baseline.p50_ms,
        ) {
            (Some(measured), Some(base)) if base > 0.0 => Some(measured / base),
            _ => None,
        };
        self.ratio_of = "p50 latency";
        self.baseline_name = Some(name.into());
        self.baseline = Some(baseline);
        self
    }

    /// Sets a target; `at_least` says which side of `threshold` meets it.
    pub fn goal(
        mut self,
        target: impl Into<String>,
        value: f64,
        threshold: f64,
        at_least: bool,
    ) -> Self {
        let met = if at_least {
            value >= threshold
        } else {
            value <= threshold
        };
        self.goal = Some(Goal {
            target: target.into(),
            value,
            met,
        });
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Peak memory of one service process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Which system of the run it belonged to (`main`, `log`).
    pub system: String,
    /// The service.
    pub service: String,
    /// VmHWM (peak resident set) in MiB.
    pub peak_rss_mib: Option<f64>,
    /// VmRSS at the time of reading, in MiB.
    pub rss_mib: Option<f64>,
}

/// One concurrency of the headline comparison: the same create three ways.
#[derive(Debug, Clone, Serialize)]
pub struct SideBySide {
    /// Concurrent clients.
    pub clients: usize,
    /// pgbench, one INSERT of a create's event row per transaction (tx/s).
    pub pgbench: Option<f64>,
    /// Chronicle's `POST /api/v1/projects` (req/s), projector (and relay, if a broker is up)
    /// running.
    pub chronicle: Option<f64>,
    /// The plain cqrs-es + postgres-es reference service's create (req/s).
    pub reference: Option<f64>,
    /// Chronicle's create driven by wrk instead of the bench's client (req/s).
    pub chronicle_wrk: Option<f64>,
    /// The reference's create driven by wrk (req/s).
    pub reference_wrk: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// `quick` or `full`.
    pub mode: &'static str,
    /// What the machine was.
    pub machine: String,
    /// Every figure.
    pub rows: Vec<Row>,
    /// The create figures side by side: pgbench's raw INSERT, Chronicle, the reference service.
    pub side_by_side: Vec<SideBySide>,
    /// Peak RSS of each service.
    pub memory: Vec<Memory>,
    /// Where the cores went in each section of the HTTP figures.
    pub cpu: Vec<crate::cpu::Usage>,
    /// Seconds the whole run took.
    pub total_seconds: f64,
}

fn num(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), num)
}

impl Report {
    /// The figures as a Markdown table (readable in a terminal, pasteable into docs).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| section | figure | load | measured | p50 ms | p99 ms | max ms | err | client cores | baseline | baseline rate | ratio | goal |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in &self.rows {
            let (measured, p50, p99, max, errors, client) = match &row.measured {
                Some(m) => (
                    format!("{} {}", num(m.rate), m.unit),
                    opt(m.p50_ms),
                    opt(m.p99_ms),
                    opt(m.max_ms),
                    m.errors.to_string(),
                    opt(m.client_cores),
                ),
                None => (
                    "skipped".to_owned(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ),
            };
            let baseline = row.baseline.as_ref().map_or_else(
                || "-".to_owned(),
                |b| {
                    let p50 = b
                        .p50_ms
                        .map(|p| format!(", p50 {}", num(p)))
                        .unwrap_or_default();
                    let p99 = b
                        .p99_ms
                        .map(|p| format!(", p99 {}", num(p)))
                        .unwrap_or_default();
                    let client = b
                        .client_cores
                        .map(|c| format!(", client {c:.2} cores"))
                        .unwrap_or_default();
                    let errors = if b.errors > 0 {
                        format!(", {} err", b.errors)
                    } else {
                        String::new()
                    };
                    format!("{} {}{p50}{p99}{client}{errors}", num(b.rate), b.unit)
                },
            );
            let goal = row.goal.as_ref().map_or_else(
                || "-".to_owned(),
                |g| {
                    format!(
                        "{} {} ({})",
                        if g.met { "met" } else { "MISSED" },
                        g.target,
                        num(g.value)
                    )
                },
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.section,
                row.figure,
                row.load,
                measured,
                p50,
                p99,
                max,
                errors,
                client,
                row.baseline_name.as_deref().unwrap_or("-"),
                baseline,
                row.ratio.map_or_else(
                    || "-".to_owned(),
                    |r| if row.ratio_of == "rate" {
                        format!("{r:.2}x")
                    } else {
                        format!("{r:.2}x ({})", row.ratio_of)
                    }
                ),
                goal,
            );
        }
        let notes: Vec<_> = self
            .rows
            .iter()
            .filter_map(|row| row.note.as_ref().map(|note| (row, note)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for (row, note) in notes {
                let _ = writeln!(
                    out,
                    "- {} / {} ({}): {note}",
                    row.section, row.figure, row.load
                );
            }
        }
        if !self.side_by_side.is_empty() {
            let _ = writeln!(
                out,
                "\n| clients | pgbench raw INSERT tx/s | Chronicle create req/s | reference create req/s | Chronicle / pgbench | reference / pgbench | Chronicle / reference | Chronicle, wrk | reference, wrk |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                _ => "-".to_owned(),
            };
            for line in &self.side_by_side {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    line.clients,
                    opt(line.pgbench),
                    opt(line.chronicle),
                    opt(line.reference),
                    ratio(line.chronicle, line.pgbench),
                    ratio(line.reference, line.pgbench),
                    ratio(line.chronicle, line.reference),
                    opt(line.chronicle_wrk),
                    opt(line.reference_wrk),
                );
            }
        }
        let _ = writeln!(
            out,
            "\n| system | service | peak RSS (VmHWM) MiB | RSS at end MiB |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for memory in &self.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                memory.system,
                memory.service,
                opt(memory.peak_rss_mib),
                opt(memory.rss_mib)
            );
        }
        let _ = writeln!(
            out,
            "\n| section (cores used, avg) | seconds | machine busy | command-api | query-api | projector | reference | postgres (all) | bench | pgbench |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for usage in &self.cpu {
            let service = |name: &str| {
                usage
                    .services
                    .iter()
                    .find(|(service, _)| service == name)
                    .map_or_else(|| "-".to_owned(), |(_, cores)| format!("{cores:.2}"))
            };
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                usage.section,
                usage.seconds,
                usage.machine_cores_busy,
                service("command-api"),
                service("query-api"),
                service("projector"),
                service("reference"),
                usage.postgres,
                usage.bench,
                usage.children
            );
        }
        out
    }
}
