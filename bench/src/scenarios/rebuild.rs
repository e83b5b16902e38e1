//! Rebuild rate: `projector::catch_up` of the projects projection over a generated log, against
//! a plain SELECT scan of the same events in the same commit-safe order.
//!
//! It runs in a database of its own (`chronicle_bench_rebuild`), so the live projector of the
//! other figures never races the rebuild for the same events and rows.

use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use projector::projections::ProjectsProjection;

use crate::report::{Measurement, Row};
use crate::scenarios::Plan;
use crate::system;

/// The rebuild's database.
pub const DATABASE: &str = "chronicle_bench_rebuild";

/// Events per generated project: one create, then updates.
const EVENTS_PER_PROJECT: i64 = 5;

/// Events inserted per transaction while generating, so the log spans many transaction ids
/// as a real one does.
const CHUNK: i64 = 100_000;

/// The projector's default batch size (`PROJECTOR_BATCH_SIZE`).
const BATCH_SIZE: i64 = 500;

/// Generates the log in the shape the Project aggregate writes (version-1 events, as an older
/// log holds them), interleaving streams: first every project's create, then every project's
/// first update, and so on, so updates land on rows all over the table.
async fn generate(pool: &sqlx::PgPool, events: i64) -> anyhow::Result<Duration> {
    let projects = (events / EVENTS_PER_PROJECT).max(1);
    let started = Instant::now();
    let mut from = 1;
    while from <= events {
        let to = (from + CHUNK - 1).min(events);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             SELECT 'Project', \
                    md5('bench-project-' || ((g - 1) % $3))::uuid::text, \
                    (g - 1) / $3 + 1, \
                    CASE WHEN (g - 1) / $3 = 0 THEN 'ProjectCreated' ELSE 'ProjectUpdated' END, \
                    '1', \
                    CASE WHEN (g - 1) / $3 = 0 \
                         THEN json_build_object('ProjectCreated', json_build_object( \
                                'name', 'project ' || g, 'description', '', 'owner_id', NULL)) \
                         ELSE json_build_object('ProjectUpdated', json_build_object( \
                                'name', 'renamed ' || g, 'description', NULL)) END, \
                    json_build_object('actor', 'anonymous', 'ip', '127.0.0.1', \
                                      'request_id', 'bench-' || g, \
                                      'correlation_id', 'bench-' || g, \
                                      'causation_id', 'bench-' || g) \
               FROM generate_series($1::bigint, $2::bigint) AS g \
              ORDER BY g",
        )
        .bind(from)
        .bind(to)
        .bind(projects)
        .execute(pool)
        .await?;
        from = to + 1;
    }
    sqlx::query("ANALYZE events").execute(pool).await?;
    Ok(started.elapsed())
}

type EventRow = (
    i64,
    i64,
    uuid::Uuid,
    String,
    String,
    i64,
    String,
    String,
    serde_json::Value,
    serde_json::Value,
    chrono::DateTime<chrono::Utc>,
);

/// The floor: one streaming SELECT of the same columns, decoded into the same types, in the
/// same commit-safe order and below the same horizon as the projector reads. The ORDER BY
/// names the table's columns: a bare `tx_id` would name the `tx_id::text::bigint` output
/// column, which no index provides, and sort the whole log instead.
async fn scan(pool: &sqlx::PgPool) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let mut rows = sqlx::query_as::<_, EventRow>(
        "SELECT tx_id::text::bigint, global_position, event_id, aggregate_type, aggregate_id, \
                sequence, event_type, event_version, payload::jsonb, metadata::jsonb, recorded_at \
           FROM events \
          WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND aggregate_type = ANY($1) \
          ORDER BY events.tx_id, events.global_position",
    )
    .bind(vec!["Project".to_owned()])
    .fetch(pool);
    let mut count = 0_u64;
    while rows.try_next().await?.is_some() {
        count += 1;
    }
    Ok(Measurement::throughput(
        count,
        started.elapsed(),
        "events/s",
    ))
}

/// The read half of a catch-up alone: `event_store::log::read_after` batch after batch, for at
/// most `limit` (a read whose cost grows with what is left must not stall the run).
async fn read_batches(pool: &sqlx::PgPool, limit: Duration) -> anyhow::Result<Measurement> {
    let filter = event_store::LogFilter {
        aggregate_types: vec!["Project".to_owned()],
        ..event_store::LogFilter::default()
    };
    let started = Instant::now();
    let mut after = events::LogPosition::START;
    let mut count = 0_u64;
    while started.elapsed() < limit {
        let batch = event_store::log::read_after(pool, after, BATCH_SIZE, &filter).await?;
        let Some(last) = batch.last() else { break };
        after = last.log_position;
        count += batch.len() as u64;
    }
    Ok(Measurement::throughput(
        count,
        started.elapsed(),
        "events/s",
    ))
}

/// Generates the log, measures the scan, the batched read and the catch-up.
pub async fn rebuild(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let events = plan.rebuild_events;
    system::recreate_database(DATABASE).await?;
    let pool = system::pool(DATABASE, 4).await?;
    event_store::MIGRATOR.run(&pool).await?;
    eprintln!("  generating {events} events");
    let generated = generate(&pool, events).await?;
    eprintln!("  generated in {:.1} s; scanning", generated.as_secs_f64());
    let baseline = scan(&pool).await?;
    let batched = read_batches(&pool, plan.rebuild_limit / 4).await?;

    eprintln!("  catching up (at most {} s)", plan.rebuild_limit.as_secs());
    let started = Instant::now();
    let caught = tokio::time::timeout(
        plan.rebuild_limit,
        projector::catch_up(&pool, &ProjectsProjection, BATCH_SIZE),
    )
    .await;
    let elapsed = started.elapsed();
    // A timed-out catch-up keeps every batch it committed: the checkpoint row counts them.
    let applied: i64 =
        sqlx::query_scalar("SELECT events_applied FROM projection_checkpoints WHERE name = $1")
            .bind(ProjectsProjection::NAME)
            .fetch_optional(&pool)
            .await?
            .unwrap_or(0);
    let note = match caught {
        Ok(Ok(done)) => format!(
            "{} events applied (all), batch {BATCH_SIZE}; log generated in {:.0} s",
            done.applied,
            generated.as_secs_f64()
        ),
        Ok(Err(error)) => format!("catch-up FAILED after {applied} events: {error:#}"),
        Err(_) => format!(
            "stopped after {} s with {applied} of {events} events applied; rate over that part",
            plan.rebuild_limit.as_secs()
        ),
    };
    let measured =
        Measurement::throughput(u64::try_from(applied).unwrap_or(0), elapsed, "events/s");
    let load = format!("{events} events, {} projects", events / EVENTS_PER_PROJECT);
    let rate = measured.rate;
    let row = Row::new(
        "rebuild",
        "catch_up(ProjectsProjection) from empty",
        load.clone(),
    )
    .measured(measured)
    .baseline("streaming SELECT, commit-safe order", baseline.clone())
    .goal(">= 20,000 events/s", rate, 20_000.0, true)
    .note(note);
    let read_row = Row::new(
        "rebuild",
        "read half only: event_store::log::read_after batches",
        load,
    )
    .measured(batched)
    .baseline("streaming SELECT, commit-safe order", baseline)
    .note(format!(
        "batches of {BATCH_SIZE}, no apply; catch-up minus this is the apply cost"
    ));
    pool.close().await;
    Ok(vec![row, read_row])
}
