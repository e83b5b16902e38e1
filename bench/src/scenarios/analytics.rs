//! Analytics ingest: events accepted per second through `POST /api/v1/analytics/events` in
//! batches of 100 and 1000, against one multi-row INSERT of the same rows per batch.
//!
//! The route may not exist yet: a probe answering 404 skips the section with a note.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::load::closed_loop;
use crate::report::Row;
use crate::scenarios::{Context, sample_metadata};

/// Batch sizes measured.
const BATCHES: [usize; 2] = [100, 1000];

/// Concurrent senders (a few: each request carries up to 1000 events).
const CONCURRENCY: usize = 4;

/// One analytics event as the API takes it.
fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "name": "page.view",
        "properties": {"path": format!("/docs/page-{}", i % 50), "referrer": "bench"},
        "session_id": format!("session-{}", i % 200),
        "user_id": format!("user-{}", i % 100),
    })
}

fn batch_body(size: usize) -> Bytes {
    let events: Vec<_> = (0..size).map(event).collect();
    Bytes::from(serde_json::json!({ "events": events }).to_string())
}

/// The analytics figures, or one skipped row when the route answers 404.
pub async fn ingest(context: &Context) -> anyhow::Result<Vec<Row>> {
    let url = format!("{}/api/v1/analytics/events", context.command);
    let probe = context
        .http
        .send(Method::POST, &url, &[], Some(batch_body(1)))
        .await?;
    if probe.status.as_u16() == 404 {
        return Ok(vec![Row::new("analytics", "ingest batches", "-").note(
            "skipped: POST /api/v1/analytics/events answered 404 (the route does not exist in \
             this build yet)",
        )]);
    }
    let probe = probe.expect(&[202]);
    if let Err(error) = probe {
        return Ok(vec![
            Row::new("analytics", "ingest batches", "-")
                .note(format!("skipped: a one-event probe was refused: {error}")),
        ]);
    }

    let mut rows = Vec::new();
    for size in BATCHES {
        eprintln!("  analytics batches of {size}");
        let body = batch_body(size);
        let (http, url_shared) = (context.http.clone(), Arc::new(url.clone()));
        let measured = closed_loop(CONCURRENCY, context.plan.step_budget(), move |_| {
            let (http, url, body) = (http.clone(), Arc::clone(&url_shared), body.clone());
            async move {
                http.send(Method::POST, &url, &[], Some(body))
                    .await?
                    .expect(&[202])?;
                Ok(())
            }
        })
        .await?
        .measurement(u64::try_from(size).unwrap_or(0), "events/s");

        // The same rows, one multi-row INSERT (UNNEST) per batch, one transaction each.
        let pool = context.pool.clone();
        let payloads: Arc<Vec<String>> =
            Arc::new((0..size).map(|i| event(i).to_string()).collect());
        let baseline = closed_loop(CONCURRENCY, context.plan.step_budget(), move |_| {
            let (pool, payloads) = (pool.clone(), Arc::clone(&payloads));
            async move {
                let stream = Uuid::now_v7().to_string();
                let sequences: Vec<i64> =
                    (1..=i64::try_from(payloads.len()).unwrap_or(0)).collect();
                let metadata = vec![sample_metadata(); payloads.len()];
                sqlx::query(
                    "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, \
                                               event_type, event_version, payload, metadata) \
                     SELECT 'Analytics', $1, s, 'AnalyticsEventRecorded', '1', p::json, m::json \
                       FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS e(s, p, m)",
                )
                .bind(stream)
                .bind(sequences)
                .bind(payloads.as_slice())
                .bind(metadata)
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
        .await?
        .measurement(u64::try_from(size).unwrap_or(0), "events/s");
        let rate = measured.rate;
        rows.push(
            Row::new(
                "analytics",
                format!("ingest, batches of {size}"),
                format!("{CONCURRENCY} clients, closed loop"),
            )
            .measured(measured)
            .baseline("multi-row INSERT of the same rows", baseline)
            .goal(">= 20,000 events/s", rate, 20_000.0, true),
        );
    }
    Ok(rows)
}
