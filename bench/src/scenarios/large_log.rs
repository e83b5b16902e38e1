//! A large log behind idle projections: the same creates and the same projector wake-ups on an
//! empty log and after 1,000,000 events of a type no projection reads were appended.
//!
//! Every projection loop wakes on every append and polls when idle; each wake reads the log
//! after its checkpoint and checks whether committed events are held back. Projections whose
//! checkpoint sits before a million events they do not read must not pay for those events:
//! a read that walks them (a scan in commit order filtering on the type, or a generic plan
//! that cannot use the type's index) makes every wake cost O(log), on every append.
//!
//! The wake cost is measured by timing the projector's lag, not by `EXPLAIN ANALYZE`: the bench
//! talks to the services over HTTP and SQL only and must not copy their statements (which
//! change). A probe is one create on an otherwise idle system, then a `GET` of the new project
//! polled every 2 ms until it answers 200: the time from the create's 201 to visibility is one
//! wake of every loop (the projects loop's read and apply, the others' reads and checks
//! competing for the same two cores). The idle windows' CPU use (projector and PostgreSQL, in
//! the CPU table) shows what the periodic polls cost between appends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::client::OpError;
use crate::cpu::Meter;
use crate::load::{Outcome, closed_loop};
use crate::report::{Measurement, Row, new_histogram, record};
use crate::scenarios::{Context, create_probe, poll_visible};

/// The aggregate type of the filler events: no projection reads it (`AnalyticsBatch`, which
/// the issue names as an example, is read by `analytics_daily` and would be applied).
pub const FILLER_TYPE: &str = "BenchFiller";

/// Filler events per stream.
const FILLER_STREAM: i64 = 1000;

/// Concurrency of the create figure.
const CONCURRENCY: usize = 32;

/// Pause before each probe, so every loop has finished the previous wake and waits again.
const PROBE_PAUSE: Duration = Duration::from_millis(50);

/// Polling interval of a probe.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Longest a probe waits for visibility.
const POLL_LIMIT: Duration = Duration::from_secs(10);

/// How long the idle windows last.
const IDLE: Duration = Duration::from_secs(3);

/// Appends `events` filler events in one `INSERT ... SELECT generate_series`, then refreshes
/// the planner's statistics as autovacuum would within a minute, and writes the seed out with
/// a `CHECKPOINT`. Without it, the checkpoints the seed's WAL sets off are spread over the
/// next minute and overlap the large-log figures by chance: the same binaries then gave the
/// large-log creates 0.73x to 1.09x of the empty log's, a cost of the one-time seeding, not
/// of the log's size. Returns how long it took.
pub async fn seed(context: &Context, events: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         SELECT $1, 'filler-' || ((g - 1) / $3), (g - 1) % $3 + 1, 'BenchFillerRecorded', '1', \
                ('{\"n\":' || g || '}')::json, '{\"actor\":\"bench\"}'::json \
           FROM generate_series(1::bigint, $2::bigint) AS g \
          ORDER BY g",
    )
    .bind(FILLER_TYPE)
    .bind(events)
    .bind(FILLER_STREAM)
    .execute(&context.pool)
    .await?;
    sqlx::query("ANALYZE events").execute(&context.pool).await?;
    sqlx::query("CHECKPOINT").execute(&context.pool).await?;
    Ok(started.elapsed())
}

/// One probe: a create, then the item polled until visible; the lag from the 201, and the
/// part of it spent waiting for the event's transaction to fall below the commit-safe
/// horizon. That horizon is the whole server's (decision 0001): any transaction anywhere on
/// it holding an id (another database's `DROP DATABASE`, say) delays every new event, so only
/// the rest of the lag is the projector's own wake cost.
async fn probe(context: &Context, i: u64) -> Result<(Duration, Duration), OpError> {
    let (id, answer, acknowledged) = create_probe(context, &format!("wake probe {i}")).await?;
    let position = answer
        .headers
        .get("x-consistency-token")
        .and_then(|token| token.to_str().ok())
        .and_then(|token| events::position::decode_position(token).ok());
    let horizon = async {
        let position = position?;
        loop {
            let below: bool = sqlx::query_scalar(
                "SELECT $1::text::xid8 < pg_snapshot_xmin(pg_current_snapshot())",
            )
            .bind(position.tx_id.to_string())
            .fetch_one(&context.pool)
            .await
            .ok()?;
            if below {
                return Some(acknowledged.elapsed());
            }
            if acknowledged.elapsed() > POLL_LIMIT {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    };
    let (lag, horizon) = tokio::join!(
        poll_visible(context, id, acknowledged, POLL_EVERY, POLL_LIMIT),
        horizon
    );
    let lag = lag?;
    Ok((lag, horizon.unwrap_or(Duration::ZERO).min(lag)))
}

/// The probes' lags, whole and after the horizon.
struct Probes {
    lag: Measurement,
    after_horizon: Measurement,
}

/// `count` probes one after the other, fewer if they take longer than `limit` in all.
async fn probes(context: &Context, count: u64, limit: Duration) -> anyhow::Result<Probes> {
    let mut lags = new_histogram()?;
    let mut after_horizon = new_histogram()?;
    let mut errors = 0;
    let started = Instant::now();
    for i in 0..count {
        if i > 0 && started.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(PROBE_PAUSE).await;
        match probe(context, i).await {
            Ok((lag, horizon)) => {
                record(&mut lags, lag);
                record(&mut after_horizon, lag.saturating_sub(horizon));
            }
            Err(error) => {
                if errors == 0 {
                    eprintln!("    first probe error: {error}");
                }
                errors += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    Ok(Probes {
        lag: Measurement::from_histogram(&lags, errors, elapsed, 1, "probes/s"),
        after_horizon: Measurement::from_histogram(&after_horizon, errors, elapsed, 1, "probes/s"),
    })
}

async fn creates(context: &Context) -> anyhow::Result<Outcome> {
    let shared = context.clone();
    closed_loop(CONCURRENCY, context.plan.step_budget(), move |i| {
        let context = shared.clone();
        async move {
            let body = format!(
                r#"{{"id":"{}","name":"bench project {i}","description":"created by the benchmark"}}"#,
                Uuid::now_v7()
            );
            context
                .http
                .send(
                    Method::POST,
                    &format!("{}/api/v1/projects", context.command),
                    &[],
                    Some(Bytes::from(body)),
                )
                .await?
                .expect(&[201])?;
            Ok(())
        }
    })
    .await
}

/// The measurements of one log size.
struct Side {
    /// Cores PostgreSQL (all of it) and the projector used with no load at all.
    idle: Measurement,
    probes: Probes,
    creates: Measurement,
}

async fn side(context: &Context, meter: &mut Meter, label: &str) -> anyhow::Result<Side> {
    eprintln!("  {label}: idle {} s", IDLE.as_secs());
    meter.skip();
    tokio::time::sleep(IDLE).await;
    meter.section(&format!("large log: idle, {label}"));
    let idle_cores = meter.sections.last().map_or(0.0, |usage| {
        usage.postgres
            + usage
                .services
                .iter()
                .filter(|(name, _)| name == "projector")
                .map(|(_, cores)| cores)
                .sum::<f64>()
    });
    let mut idle = Measurement::throughput(0, IDLE, "cores");
    idle.rate = idle_cores;
    eprintln!("  {label}: {} wake probes", context.plan.wake_probes);
    let probes = probes(context, context.plan.wake_probes, context.plan.wake_limit).await?;
    eprintln!("  {label}: creates at {CONCURRENCY} clients");
    let creates = creates(context).await?.measurement(1, "req/s");
    meter.section(&format!("large log: probes + creates, {label}"));
    Ok(Side {
        idle,
        probes,
        creates,
    })
}

/// Measures the empty log, seeds the large one, measures again.
pub async fn large_log(context: &Context, meter: &mut Meter) -> anyhow::Result<Vec<Row>> {
    let events = context.plan.large_log_events;
    let empty = side(context, meter, "empty log").await?;
    eprintln!("  seeding {events} {FILLER_TYPE} events");
    let seeded = seed(context, events).await?;
    eprintln!("  seeded in {:.1} s", seeded.as_secs_f64());
    meter.skip();
    let large = side(context, meter, "large log").await?;

    let size = format!("{events} {FILLER_TYPE} events");
    let mut create = Row::new(
        "large log",
        format!("create project (POST), {size} in the log"),
        format!("{CONCURRENCY} clients, closed loop"),
    )
    .measured(large.creates)
    .baseline("same load on the empty log", empty.creates);
    if let Some(ratio) = create.ratio {
        create = create.goal(">= 0.9x the empty log", ratio, 0.9, true);
    }
    let create = create.note(format!(
        "log seeded with one INSERT ... SELECT generate_series in {:.1} s, then ANALYZE and \
         CHECKPOINT; no projection reads {FILLER_TYPE}; the relay is off in this system (it \
         reads every type and would publish the whole seed)",
        seeded.as_secs_f64()
    ));
    let wake = Row::new(
        "large log",
        format!("wake: one create -> visible on an idle projector, {size} in the log"),
        format!(
            "up to {} sequential probes in {} s, GET polled every 2 ms",
            context.plan.wake_probes,
            context.plan.wake_limit.as_secs()
        ),
    )
    .measured(large.probes.lag)
    .latency_baseline("same probes on the empty log", empty.probes.lag)
    .note(
        "wake cost measured by timing the projector's lag (not EXPLAIN ANALYZE): every \
         projection loop wakes on the append and reads after its checkpoint; see the CPU \
         table's idle windows for what the periodic polls cost",
    );
    let wake_own = Row::new(
        "large log",
        format!("wake after the horizon: the same probes' lag minus their wait for the commit-safe horizon, {size} in the log"),
        "the same probes".to_owned(),
    )
    .measured(large.probes.after_horizon)
    .latency_baseline("same on the empty log", empty.probes.after_horizon)
    .note(
        "the horizon (pg_snapshot_xmin) is the whole server's: transactions of other databases \
         delay every new event alike; what is left is the projector's own wake and apply",
    );
    let idle = Row::new(
        "large log",
        format!("idle cost: PostgreSQL + projector cores with no load, {size} in the log"),
        format!("{} s without requests (polls only)", IDLE.as_secs()),
    )
    .measured(large.idle)
    .baseline("same on the empty log", empty.idle)
    .note(
        "PostgreSQL's CPU is counted over all its processes: other databases' work on a \
         shared machine shows up here too",
    );
    Ok(vec![create, wake, wake_own, idle])
}
