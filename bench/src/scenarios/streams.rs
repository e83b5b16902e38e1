//! Long streams: `PATCH /projects/{id}` latency on a project with 100,000 events against one
//! with a single event, one request at a time, the two interleaved (A B A B) so drift of the
//! shared machine hits both alike.
//!
//! The long stream is seeded by SQL in the shape the command side writes it: `ProjectCreated`
//! at revision 1 (its current schema version), then `ProjectUpdated` renames at revisions
//! 2..=n, compact JSON payloads and the usual audit metadata. The short one is created over
//! HTTP. The projector applies the seeded stream before anything is measured, so its catch-up
//! does not compete with the PATCHes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::load::{Budget, Outcome, closed_loop};
use crate::report::Row;
use crate::scenarios::{Context, commands};

/// Rounds of the interleaving (each round: short side, then long side).
const ROUNDS: usize = 2;

/// Longest wait for the projector to apply the seeded stream.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);

/// Appends the long stream `id`: `events` events, revisions 1..=events.
async fn seed(context: &Context, id: Uuid, events: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let created = events::project::current_version("ProjectCreated")
        .ok_or_else(|| anyhow::anyhow!("ProjectCreated has no current version"))?;
    let updated = events::project::current_version("ProjectUpdated")
        .ok_or_else(|| anyhow::anyhow!("ProjectUpdated has no current version"))?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         SELECT 'Project', $1, g, \
                CASE WHEN g = 1 THEN 'ProjectCreated' ELSE 'ProjectUpdated' END, \
                CASE WHEN g = 1 THEN $3 ELSE $4 END, \
                CASE WHEN g = 1 \
                     THEN '{\"ProjectCreated\":{\"name\":\"long stream\",\"description\":\"\",\
                           \"owner_id\":null,\"created_by\":\"anonymous\"}}' \
                     ELSE format('{\"ProjectUpdated\":{\"name\":\"renamed %s\",\
                                  \"description\":null}}', g) END::json, \
                format('{\"actor\":\"anonymous\",\"ip\":\"127.0.0.1\",\"request_id\":\"%s\",\
                        \"correlation_id\":\"%s\",\"causation_id\":\"%s\"}', \
                       gen_random_uuid(), gen_random_uuid(), gen_random_uuid())::json \
           FROM generate_series(1::bigint, $2::bigint) AS g \
          ORDER BY g",
    )
    .bind(id.to_string())
    .bind(events)
    .bind(created)
    .bind(updated)
    .execute(&context.pool)
    .await?;
    Ok(started.elapsed())
}

/// Waits until the query API shows project `id` at `version`; false after `limit`.
async fn wait_visible(context: &Context, id: Uuid, version: i64, limit: Duration) -> bool {
    let url = format!("{}/api/v1/projects/{id}", context.query);
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(answer) = context.http.get(&url, &[]).await
            && answer.status.as_u16() == 200
            && serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|body| body.get("version")?.as_i64())
                .is_some_and(|seen| seen >= version)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// PATCHes of project `id`, one at a time, for the plan's stream step (at least one).
async fn patches(context: &Context, id: Uuid, offset: u64) -> anyhow::Result<Outcome> {
    let (http, url) = (
        context.http.clone(),
        format!("{}/api/v1/projects/{id}", context.command),
    );
    let budget = Budget {
        duration: context.plan.stream_step,
        max_ops: 100_000,
    };
    closed_loop(1, budget, move |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            // A new name each time: an update that changes nothing appends nothing.
            let body = format!(r#"{{"name":"renamed by the bench {}"}}"#, offset + i);
            http.send(Method::PATCH, &url, &[], Some(Bytes::from(body)))
                .await?
                .expect(&[200])?;
            Ok(())
        }
    })
    .await
}

/// Seeds the long stream, creates the short one, and compares their PATCH latency.
pub async fn long_streams(context: &Context) -> anyhow::Result<Vec<Row>> {
    let events = context.plan.long_stream_events;
    let long = Uuid::now_v7();
    eprintln!("  seeding a {events}-event stream");
    let seeded = seed(context, long, events).await?;
    let (short, _) = commands::create_one(&context.http, &context.command).await?;
    eprintln!(
        "  seeded in {:.1} s; waiting for the projector",
        seeded.as_secs_f64()
    );
    let started = Instant::now();
    let caught_up = wait_visible(context, long, events, CATCH_UP_LIMIT).await
        && wait_visible(context, short, 1, CATCH_UP_LIMIT).await;
    let catch_up = started.elapsed();

    let mut short_total: Option<Outcome> = None;
    let mut long_total: Option<Outcome> = None;
    let mut offset = 0;
    for round in 0..ROUNDS {
        eprintln!("  PATCH round {}", round + 1);
        for (id, total) in [(short, &mut short_total), (long, &mut long_total)] {
            let outcome = patches(context, id, offset).await?;
            offset += outcome.histogram.len() + outcome.errors();
            match total {
                Some(total) => total.merge(&outcome)?,
                None => *total = Some(outcome),
            }
        }
    }
    let (Some(short_total), Some(long_total)) = (short_total, long_total) else {
        anyhow::bail!("long-stream runs produced nothing");
    };
    let mut row = Row::new(
        "long streams",
        format!("PATCH /projects/{{id}} on a {events}-event stream"),
        format!("1 client, sequential, {ROUNDS}x interleaved with the 1-event stream"),
    )
    .measured(long_total.measurement(1, "req/s"))
    .latency_baseline(
        "PATCH on a 1-event stream",
        short_total.measurement(1, "req/s"),
    );
    if let Some(ratio) = row.ratio {
        row = row.goal("p50 <= 1.5x the 1-event stream", ratio, 1.5, false);
    }
    let projector = if caught_up {
        format!(
            "the projector applied it in {:.1} s",
            catch_up.as_secs_f64()
        )
    } else {
        format!(
            "the projector had NOT applied it after {} s; measured anyway",
            catch_up.as_secs()
        )
    };
    Ok(vec![row.note(format!(
        "stream seeded by SQL in {:.1} s; {projector}; each PATCH appends one more event",
        seeded.as_secs_f64()
    ))])
}
