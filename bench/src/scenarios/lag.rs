//! Projection lag: from a command's 2xx to the moment the query API shows its result, under a
//! steady fixed-rate load.
//!
//! One command in `probe_every` is followed by a probe: of the probes, most are one GET
//! carrying the command's `X-Consistency-Token` (the query API holds it until the projection
//! covers the token), which measures lag without adding polling load; one in ten is instead
//! polled (a plain GET every 2 ms until it stops answering 404), a cross-check that does not
//! depend on the query API's wait.
//!
//! Probes are a sample because they are the measurement's load, not the system's: with every
//! command probed (`probe_every` 1) the reads, about 1.6 per create with the polls, cost the
//! two cores about as much as the creates themselves, so "half of the peak command rate" ran
//! the machine near its full load. Which commands are probed follows their sequence number
//! alone, not their timing, so the sample's percentiles estimate every command's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::OpError;
use crate::load::fixed_rate;
use crate::report::{Measurement, Row, new_histogram, record};
use crate::scenarios::{Context, create_probe, poll_visible, scrape};

/// Polling interval of the cross-check.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Longest a poll waits for visibility.
const POLL_LIMIT: Duration = Duration::from_secs(6);

/// Issue 10, item 5: projection lag p99 under 50 ms at half of the peak command rate.
const LAG_P99_GOAL_MS: f64 = 50.0;

/// Where a lag load's rate comes from, for its label.
#[derive(Debug, Clone, Copy)]
pub enum RateIs {
    /// Half of the run's create peak: the rate issue 10's goal is set at.
    HalfOfPeak,
    /// Set with `--lag-rate`.
    Fixed,
}

/// What follows the `i`-th create of a lag load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Polled every [`POLL_EVERY`] until visible.
    Poll,
    /// One GET with the create's consistency token.
    Token,
    /// Nothing: the create is load only.
    None,
}

impl Probe {
    /// One create in `every` is probed, and one probe in ten is polled.
    fn of(i: u64, every: u64) -> Self {
        if i.is_multiple_of(10 * every) {
            Self::Poll
        } else if i.is_multiple_of(every) {
            Self::Token
        } else {
            Self::None
        }
    }
}

/// Runs creates at `rate` per second and measures how long one in `probe_every` takes to
/// become visible.
pub async fn lag(
    context: &Context,
    rate: f64,
    rate_is: RateIs,
    probe_every: u64,
) -> anyhow::Result<Vec<Row>> {
    let probe_every = probe_every.max(1);
    eprintln!("  projection lag at {rate:.0}/s, one command in {probe_every} probed");
    let token_lag = Arc::new(Mutex::new(new_histogram()?));
    let poll_lag = Arc::new(Mutex::new(new_histogram()?));
    let shared = (
        context.clone(),
        Arc::clone(&token_lag),
        Arc::clone(&poll_lag),
    );
    let metrics = [
        "chronicle_projection_events_applied_total",
        "chronicle_projection_batch_duration_seconds_count",
        "chronicle_projection_batch_duration_seconds_sum",
    ];
    let mut before = Vec::new();
    for name in metrics {
        before.push(scrape(&context.http, &context.projector, name).await);
    }
    let started = Instant::now();
    let outcome = fixed_rate(rate, context.plan.fixed_budget(), move |i| {
        let (context, token_lag, poll_lag) = shared.clone();
        async move {
            let (id, answer, acknowledged) =
                create_probe(&context, &format!("lag probe {i}")).await?;
            match Probe::of(i, probe_every) {
                Probe::Poll => {
                    let lag =
                        poll_visible(&context, id, acknowledged, POLL_EVERY, POLL_LIMIT).await?;
                    if let Ok(mut histogram) = poll_lag.lock() {
                        record(&mut histogram, lag);
                    }
                }
                Probe::Token => {
                    let url = format!("{}/api/v1/projects/{id}", context.query);
                    let token = answer
                        .header("x-consistency-token")
                        .ok_or_else(|| OpError::Invalid("no X-Consistency-Token".into()))?
                        .to_owned();
                    context
                        .http
                        .get(&url, &[("x-consistency-token", &token)])
                        .await
                        .and_then(|answer| answer.expect(&[200]))
                        // Said apart from a refused create: a wait that holds a slot is the read
                        // side's load, not the write side's.
                        .map_err(|error| OpError::Invalid(format!("query API: {error}")))?;
                    if let Ok(mut histogram) = token_lag.lock() {
                        record(&mut histogram, acknowledged.elapsed());
                    }
                }
                Probe::None => {}
            }
            if let Ok(mut projects) = context.projects.lock() {
                projects.push(id);
            }
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let mut after = Vec::new();
    for name in metrics {
        after.push(scrape(&context.http, &context.projector, name).await);
    }
    // A projector started just before has no samples yet: its metrics start at zero.
    let delta = |i: usize| {
        let after = after.get(i).copied().flatten()?;
        Some(after - before.get(i).copied().flatten().unwrap_or(0.0))
    };
    let projector_note = match (delta(0), delta(1), delta(2)) {
        (Some(events), Some(batches), Some(seconds)) if batches > 0.0 => format!(
            "; projector meanwhile: {events:.0} events in {batches:.0} batches, \
             {:.1} events/batch, {:.2} ms/batch, busy {:.0}% of the run",
            events / batches,
            seconds * 1000.0 / batches,
            seconds * 100.0 / elapsed.as_secs_f64()
        ),
        _ => "; projector metrics unavailable".to_owned(),
    };
    let rate_is = match rate_is {
        RateIs::HalfOfPeak => "half of peak",
        RateIs::Fixed => "--lag-rate",
    };
    let load = format!("{rate:.0} creates/s fixed rate ({rate_is}), 1 in {probe_every} probed");
    let snapshot = |histogram: &Arc<Mutex<_>>| {
        histogram
            .lock()
            .map(|histogram| Measurement::from_histogram(&histogram, 0, elapsed, 1, "probes/s"))
            .map_err(|_| anyhow::anyhow!("a lag probe panicked while recording"))
    };
    let token = snapshot(&token_lag)?;
    let poll = snapshot(&poll_lag)?;
    let mut rows = Vec::new();
    let mut token_row = Row::new(
        "projection lag",
        "2xx -> visible (X-Consistency-Token wait)",
        load.clone(),
    )
    .measured(token)
    .note(format!(
        "{} commands, {} failed{}; includes one GET round trip{projector_note}",
        outcome.histogram.len(),
        outcome.errors(),
        if outcome.failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", outcome.failure_kinds())
        }
    ));
    if let Some(p99) = token_row.measured.as_ref().and_then(|m| m.p99_ms) {
        token_row = token_row.goal("p99 < 50 ms", p99, LAG_P99_GOAL_MS, false);
    }
    rows.push(token_row);
    let mut poll_row = Row::new(
        "projection lag",
        "2xx -> visible (GET polled every 2 ms)",
        load,
    )
    .measured(poll);
    if let Some(p99) = poll_row.measured.as_ref().and_then(|m| m.p99_ms) {
        poll_row = poll_row.goal("p99 < 50 ms", p99, LAG_P99_GOAL_MS, false);
    }
    rows.push(poll_row);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::Probe;

    fn count(every: u64, kind: Probe) -> usize {
        (0..1000).filter(|&i| Probe::of(i, every) == kind).count()
    }

    #[test]
    fn one_create_in_every_is_probed_and_one_probe_in_ten_polled() {
        assert_eq!(count(10, Probe::Poll), 10);
        assert_eq!(count(10, Probe::Token), 90);
        assert_eq!(count(10, Probe::None), 900);
    }

    #[test]
    fn every_one_is_the_old_load() {
        // Until stop 14: every create probed, one in ten of them polled.
        for i in 0..1000 {
            let old = if i % 10 == 0 {
                Probe::Poll
            } else {
                Probe::Token
            };
            assert_eq!(Probe::of(i, 1), old, "create {i}");
        }
    }
}
