//! Load generators, each bounded in operations and in time.
//!
//! - [`closed_loop`]: `concurrency` workers each send the next request when the previous one
//!   answered; latency is per request. It finds peak throughput, but it hides queueing: a slow
//!   answer delays the requests that would have been sent meanwhile.
//! - [`fixed_rate`]: requests are due at a fixed rate whatever the answers do, and latency is
//!   measured from each request's *intended* send time, so a stall shows up in the latency of
//!   every request it delayed (no coordinated omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use hdrhistogram::Histogram;

use crate::client::OpError;
use crate::cpu::own_seconds;
use crate::report::{Measurement, new_histogram, record};

/// What a load did: latencies of its successful operations, its failures, how long it ran.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latencies (µs) of successful operations.
    pub histogram: Histogram<u64>,
    /// How many operations failed, by kind (`status 503`, `timed out`, ...).
    pub failures: BTreeMap<String, u64>,
    /// How long the load ran.
    pub elapsed: Duration,
    /// CPU seconds this process (the client) used meanwhile, when `/proc` tells.
    pub client_cpu: Option<f64>,
}

impl Outcome {
    /// Failed operations, of every kind.
    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The failures by kind, as `status 503: 16, timed out: 1` (empty when none failed).
    pub fn failure_kinds(&self) -> String {
        self.failures
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The outcome as a measurement; `items_per_op` scales the rate (events per batch).
    pub fn measurement(&self, items_per_op: u64, unit: &'static str) -> Measurement {
        Measurement::from_histogram(
            &self.histogram,
            self.errors(),
            self.elapsed,
            items_per_op,
            unit,
        )
        .with_client_cpu(self.client_cpu)
    }

    /// Adds another run of the same load (interleaved repetitions).
    pub fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .map_err(|error| anyhow::anyhow!("merging histograms: {error:?}"))?;
        for (kind, count) in &other.failures {
            *self.failures.entry(kind.clone()).or_default() += count;
        }
        self.elapsed += other.elapsed;
        self.client_cpu = self.client_cpu.zip(other.client_cpu).map(|(a, b)| a + b);
        Ok(())
    }
}

/// How long and how much a load may run: it stops at whichever bound comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Wall-clock bound.
    pub duration: Duration,
    /// Operation bound.
    pub max_ops: u64,
}

/// Most requests in flight in a fixed-rate load; beyond it a due request is counted as an
/// error instead of piling up without bound.
const MAX_IN_FLIGHT: usize = 2048;

/// Longest wait, after a load's time is up, for its requests still in flight.
const DRAIN: Duration = Duration::from_secs(35);

/// Runs `op(i)` from `concurrency` workers, each starting its next operation when its previous
/// one finished.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    budget: Budget,
    op: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), OpError>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let template = new_histogram()?;
    let cpu_before = own_seconds();
    let started = Instant::now();
    let deadline = started + budget.duration;
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, next, failures) = (Arc::clone(&op), Arc::clone(&next), Arc::clone(&failures));
        let mut histogram = template.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= budget.max_ops || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                match op(i).await {
                    Ok(()) => record(&mut histogram, sent.elapsed()),
                    Err(error) => remember(&failures, &error),
                }
            }
            histogram
        });
    }
    let mut histogram = template;
    while let Some(joined) = workers.join_next().await {
        let part = joined.map_err(|error| anyhow::anyhow!("load worker panicked: {error}"))?;
        histogram
            .add(&part)
            .map_err(|error| anyhow::anyhow!("merging histograms: {error:?}"))?;
    }
    let elapsed = started.elapsed();
    Ok(Outcome {
        histogram,
        failures: report(&failures),
        elapsed,
        client_cpu: cpu_since(cpu_before),
    })
}

/// Starts `op(i)` at `rate` per second for the budget, each on its own task, and measures
/// latency from the moment each was due.
pub async fn fixed_rate<F, Fut>(rate: f64, budget: Budget, op: F) -> anyhow::Result<Outcome>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), OpError>> + Send + 'static,
{
    let rate = rate.max(1.0);
    let op = Arc::new(op);
    let histogram = Arc::new(Mutex::new(new_histogram()?));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let cpu_before = own_seconds();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..budget.max_ops {
        let Some(offset) = interval.checked_mul(u32::try_from(i).unwrap_or(u32::MAX)) else {
            break;
        };
        if offset >= budget.duration {
            break;
        }
        let due = started + offset;
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            tally(
                &failures,
                "not sent: too many in flight".to_owned(),
                1,
                || "too many requests in flight".to_owned(),
            );
            continue;
        };
        let (op, histogram, failures) = (
            Arc::clone(&op),
            Arc::clone(&histogram),
            Arc::clone(&failures),
        );
        tasks.spawn(async move {
            let outcome = op(i).await;
            let latency = due.elapsed();
            drop(permit);
            match outcome {
                Ok(()) => {
                    if let Ok(mut histogram) = histogram.lock() {
                        record(&mut histogram, latency);
                    }
                }
                Err(error) => remember(&failures, &error),
            }
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let sending_ended = started.elapsed();
    let client_cpu = cpu_since(cpu_before);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let stuck = tasks.len() as u64;
        tally(
            &failures,
            "unfinished at the drain".to_owned(),
            stuck,
            || format!("{stuck} requests still unanswered {DRAIN:?} after sending ended"),
        );
        tasks.abort_all();
    }
    let histogram = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("a load task panicked while recording"))?
        .clone();
    // The rate achieved is counted over the sending window: the drain is not load.
    Ok(Outcome {
        histogram,
        failures: report(&failures),
        elapsed: sending_ended,
        client_cpu,
    })
}

/// CPU seconds this process used since `before`.
fn cpu_since(before: Option<f64>) -> Option<f64> {
    Some(own_seconds()? - before?)
}

/// A load's failures: the first one's text, and how many of each kind.
#[derive(Debug, Default)]
struct Failures {
    first: Option<String>,
    by_kind: BTreeMap<String, u64>,
}

impl Failures {
    /// Counts `count` failures of `kind`; `text` describes them when they are the first.
    fn note(&mut self, kind: String, count: u64, text: impl FnOnce() -> String) {
        *self.by_kind.entry(kind).or_default() += count;
        if self.first.is_none() {
            self.first = Some(text());
        }
    }
}

/// Counts `count` failures of `kind` (see [`Failures::note`]).
fn tally(failures: &Mutex<Failures>, kind: String, count: u64, text: impl FnOnce() -> String) {
    // A panic elsewhere while holding the lock leaves a tally still worth counting on.
    failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .note(kind, count, text);
}

/// Counts one failed operation.
fn remember(failures: &Mutex<Failures>, error: &OpError) {
    tally(failures, error.kind(), 1, || error.to_string());
}

/// Prints the first failure, and returns how many failed of each kind.
fn report(failures: &Mutex<Failures>) -> BTreeMap<String, u64> {
    let failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(first) = &failures.first {
        eprintln!("    first error: {first}");
    }
    failures.by_kind.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outcome of no successful operation with `failures`' tally.
    fn outcome(failures: &Mutex<Failures>) -> Outcome {
        Outcome {
            histogram: new_histogram().expect("a histogram"),
            failures: report(failures),
            elapsed: Duration::from_secs(1),
            client_cpu: None,
        }
    }

    #[test]
    fn failures_are_tallied_by_kind_and_the_first_is_kept() {
        let failures = Mutex::new(Failures::default());
        let refused = || OpError::Status {
            status: 503,
            body: "busy".to_owned(),
        };
        remember(&failures, &refused());
        remember(&failures, &OpError::Timeout);
        remember(&failures, &refused());
        let three = outcome(&failures);
        assert_eq!(
            (three.errors(), three.failure_kinds()),
            (3, "status 503: 2, timed out: 1".to_owned())
        );
        let first = failures.lock().expect("not poisoned").first.clone();
        assert_eq!(first.as_deref(), Some("unexpected status 503: busy"));
        tally(&failures, "unfinished at the drain".to_owned(), 4, || {
            "not the first".to_owned()
        });
        let seven = outcome(&failures);
        assert_eq!(
            (seven.errors(), seven.failure_kinds()),
            (
                7,
                "status 503: 2, timed out: 1, unfinished at the drain: 4".to_owned()
            )
        );
        let first = failures.lock().expect("not poisoned").first.clone();
        assert_eq!(first.as_deref(), Some("unexpected status 503: busy"));
        let none = outcome(&Mutex::new(Failures::default()));
        assert_eq!((none.errors(), none.failure_kinds()), (0, String::new()));
    }

    #[test]
    fn merged_outcomes_add_their_failures_kind_by_kind() {
        let failures = Mutex::new(Failures::default());
        remember(&failures, &OpError::Timeout);
        let mut merged = outcome(&failures);
        remember(&failures, &OpError::Transport("reset".to_owned()));
        merged.merge(&outcome(&failures)).expect("merges");
        assert_eq!(
            (merged.errors(), merged.failure_kinds()),
            (3, "timed out: 2, transport: 1".to_owned())
        );
    }
}
