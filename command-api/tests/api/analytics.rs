//! Analytics ingest: batches become one event in a stream of their own; every invalid field is
//! named; the route takes bodies up to 1 MiB.

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Call, app, event_count};

fn batch(events: Vec<Value>) -> Value {
    json!({ "events": events })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_valid_batch_is_accepted_as_one_event_in_a_new_stream(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::post("/api/v1/analytics/events")
        .header("x-request-id", "req-analytics")
        .json(&batch(vec![
            json!({"name": "page.view", "properties": {"path": "/"}, "session_id": "s1",
                   "occurred_at": "2026-01-31T12:00:00+01:00"}),
            json!({"name": "signup", "user_id": "u1"}),
        ]))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.value());
    assert_eq!(answer.value()["accepted"], 2);
    let body = answer.value();
    let token = body["consistency_token"].as_str().unwrap();
    assert_eq!(answer.header("x-consistency-token"), Some(token));

    let (aggregate_type, sequence, event_type, payload, metadata): (
        String,
        i64,
        String,
        Value,
        Value,
    ) = sqlx::query_as(
        "SELECT aggregate_type, sequence, event_type, payload::jsonb, metadata::jsonb FROM events",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(aggregate_type, "AnalyticsBatch");
    assert_eq!(sequence, 1);
    assert_eq!(event_type, "AnalyticsBatchIngested");
    let events = &payload["AnalyticsBatchIngested"]["events"];
    assert_eq!(events[0]["name"], "page.view");
    assert_eq!(events[0]["occurred_at"], "2026-01-31T11:00:00Z");
    assert_eq!(events[0]["properties"], json!({"path": "/"}));
    assert_eq!(events[1]["user_id"], "u1");
    assert!(events[1]["occurred_at"].is_string(), "defaulted to now");
    assert_eq!(metadata["request_id"], "req-analytics");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn batches_land_in_separate_streams(pool: PgPool) {
    let app = app(&pool);
    let sends = (0..8).map(|_| {
        Call::post("/api/v1/analytics/events")
            .json(&batch(vec![json!({"name": "tick"})]))
            .send(&app)
    });
    for answer in futures::future::join_all(sends).await {
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.value());
    }
    let streams: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT aggregate_id) FROM events WHERE sequence = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(streams, 8);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn each_invalid_event_field_is_named_and_nothing_is_written(pool: PgPool) {
    let app = app(&pool);
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let answer = Call::post("/api/v1/analytics/events")
        .json(&batch(vec![
            json!({"name": "ok"}),
            json!({"name": "Bad Name"}),
            json!({"name": "ok", "properties": [1, 2]}),
            json!({"name": "ok", "properties": {"big": "x".repeat(9000)}}),
            json!({"name": "ok", "occurred_at": future}),
            json!({"name": "ok", "occurred_at": "last tuesday"}),
            json!({"name": "ok", "session_id": "a\u{0}b", "user_id": "u".repeat(129)}),
        ]))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.value();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "events[1].name",
            "events[2].properties",
            "events[3].properties",
            "events[4].occurred_at",
            "events[5].occurred_at",
            "events[6].session_id",
            "events[6].user_id",
        ]
    );
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_of_no_events_or_more_than_1000_is_refused(pool: PgPool) {
    let app = app(&pool);
    for size in [0, 1001] {
        let answer = Call::post("/api/v1/analytics/events")
            .json(&batch(vec![json!({"name": "x"}); size]))
            .send(&app)
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{size}");
        assert_eq!(answer.value()["errors"][0]["field"], "events");
    }
    let wrong_shape = Call::post("/api/v1/analytics/events")
        .json(&json!({"events": [{"name": "x", "extra": 1}]}))
        .send(&app)
        .await;
    assert_eq!(wrong_shape.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_ingest_route_takes_up_to_1_mib_while_other_routes_keep_256_kib(pool: PgPool) {
    let app = app(&pool);
    // About 800 KiB: over the default limit, under the analytics one.
    let big = batch(vec![
        json!({"name": "x", "properties": {"p": "y".repeat(8000)}});
        100
    ]);
    let accepted = Call::post("/api/v1/analytics/events")
        .json(&big)
        .send(&app)
        .await;
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "{:?}",
        accepted.value()
    );

    let too_big = batch(vec![
        json!({"name": "x", "properties": {"p": "y".repeat(8000)}});
        140
    ]);
    let refused = Call::post("/api/v1/analytics/events")
        .json(&too_big)
        .send(&app)
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);

    let project = Call::post("/api/v1/projects")
        .json(&json!({"name": "n", "description": "d".repeat(300 * 1024)}))
        .send(&app)
        .await;
    assert_eq!(project.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replayed_batch_with_the_same_idempotency_key_is_appended_once(pool: PgPool) {
    let app = app(&pool);
    let send = || {
        Call::post("/api/v1/analytics/events")
            .header("idempotency-key", "batch-1")
            .json(&batch(vec![json!({"name": "x"})]))
            .send(&app)
    };
    let first = send().await;
    let second = send().await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.value(), second.value());
    assert_eq!(event_count(&pool).await, 1);
}

/// A quick throughput figure, not a benchmark: `cargo test --release -p command-api --test api
/// analytics::ingest_throughput -- --ignored --nocapture`.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
#[ignore = "a measurement; run on demand"]
async fn ingest_throughput(pool: PgPool) {
    let app = app(&pool);
    let event = json!({"name": "page.view", "properties": {"path": "/pricing", "ref": "ad"},
                       "session_id": "session-0123456789"});
    let body = batch(vec![event; 1000]);
    let (clients, batches_each) = (8, 25);
    let started = Instant::now();
    let clients = (0..clients).map(|_| {
        let app = app.clone();
        let body = body.clone();
        tokio::spawn(async move {
            for _ in 0..batches_each {
                let answer = Call::post("/api/v1/analytics/events")
                    .json(&body)
                    .send(&app)
                    .await;
                assert_eq!(answer.status, StatusCode::ACCEPTED);
            }
        })
    });
    for client in futures::future::join_all(clients).await {
        client.unwrap();
    }
    let elapsed = started.elapsed();
    let events = 8 * batches_each * 1000;
    println!(
        "ingested {events} analytics events in {:.2?}: {:.0} events/s",
        elapsed,
        events as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(event_count(&pool).await, 8 * batches_each as i64);
}

/// `{"d": {"d": … {}}}` with `levels` nested objects, the outermost included.
fn nested(levels: usize) -> Value {
    // Built as text: a recursive builder is what this test guards against.
    let text = format!(
        "{}{}",
        "{\"d\":".repeat(levels - 1),
        "{}".to_owned() + &"}".repeat(levels - 1)
    );
    serde_json::from_str(&text).unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn properties_nested_more_than_16_levels_are_refused_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let accepted = Call::post("/api/v1/analytics/events")
        .json(&batch(vec![
            json!({"name": "deep", "properties": nested(16)}),
        ]))
        .send(&app)
        .await;
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "{:?}",
        accepted.value()
    );
    for levels in [17, 124] {
        let mut events = vec![json!({"name": "ok"}); 3];
        events.push(json!({"name": "deep", "properties": nested(levels)}));
        let refused = Call::post("/api/v1/analytics/events")
            .json(&batch(events))
            .send(&app)
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{levels}: {:?}",
            refused.value()
        );
        assert_eq!(
            refused.value()["errors"][0]["field"],
            "events[3].properties"
        );
    }
    assert_eq!(event_count(&pool).await, 1);
}
