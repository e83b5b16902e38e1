//! A payload nested deeper than serde_json's recursion limit (128) never stalls the log: it
//! reads, the relay publishes it and everything after it, and only a projection that must
//! decode it treats it as its poison event (issue 9.1).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::append::{NewEvent, append};
use events::analytics;
use futures::StreamExt as _;
use lapin::options::BasicAckOptions;
use projector::projections::{AnalyticsDailyProjection, ProjectsProjection};
use projector::{EngineError, Projection, Target};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::eventually;
use uuid::Uuid;

use crate::helpers::{created, project_event};
use crate::relay::{bind_queue, relay_settings};

/// Levels of nesting inside the analytics event's properties.
const DEPTH: usize = 200;

/// An analytics batch with one event named `name`; its properties nest `depth` levels.
pub fn analytics_event(name: &str, depth: usize) -> NewEvent {
    let mut properties = serde_json::json!(1);
    for _ in 0..depth {
        properties = serde_json::json!({ "a": properties });
    }
    let payload = serde_json::json!({ "AnalyticsBatchIngested": { "events": [{
        "name": name,
        "properties": if depth == 0 { serde_json::json!({}) } else { properties },
        "session_id": "s1",
        "user_id": null,
        "occurred_at": "2026-01-01T10:00:00Z",
    }]}});
    NewEvent::from_parts(
        analytics::AGGREGATE_TYPE,
        &Uuid::now_v7().to_string(),
        1,
        ("AnalyticsBatchIngested", analytics::EVENT_VERSION),
        payload,
        test_support::metadata::json(test_support::metadata::ACTOR),
    )
}

/// Appends a good analytics event, the deep one, a project event and another good analytics
/// event; returns the deep event's id, its receipt position, and every event id in order.
async fn deep_between_good_events(pool: &PgPool) -> (Uuid, events::LogPosition, Vec<Uuid>) {
    let first = analytics_event("first", 0);
    let deep = analytics_event("deep", DEPTH);
    let project = project_event(Uuid::now_v7(), 1, &created("after the deep one"));
    let last = analytics_event("last", 0);
    let ids = vec![
        first.event_id,
        deep.event_id,
        project.event_id,
        last.event_id,
    ];
    let deep_id = deep.event_id;
    append(pool, &[first], None).await.unwrap();
    let receipt = append(pool, &[deep], None).await.unwrap();
    append(pool, &[project], None).await.unwrap();
    append(pool, &[last], None).await.unwrap();
    (deep_id, receipt.last, ids)
}

/// Reads the whole log, waiting (bounded) until `count` events are visible below the horizon.
async fn read_all(pool: &PgPool, count: usize) -> Vec<events::RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let read = event_store::log::read_after(
            pool,
            events::LogPosition::START,
            1000,
            &event_store::LogFilter::default(),
        )
        .await
        .expect("reading the log never fails on a payload");
        if read.len() >= count {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "only {} events visible",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_payload_nested_past_the_parser_limit_is_read_from_the_log_as_stored(pool: PgPool) {
    let (deep_id, _, ids) = deep_between_good_events(&pool).await;
    let read = read_all(&pool, ids.len()).await;
    let read_ids: Vec<Uuid> = read.iter().map(|event| event.event_id).collect();
    assert_eq!(read_ids, ids);
    let deep = read.iter().find(|event| event.event_id == deep_id).unwrap();
    let stored: String = sqlx::query_scalar("SELECT payload::text FROM events WHERE event_id = $1")
        .bind(deep_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deep.payload.get(), stored);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_relay_publishes_a_payload_nested_past_the_parser_limit_and_every_event_after_it(
    pool: PgPool,
) {
    let tag = Uuid::new_v4().simple().to_string();
    let settings = relay_settings(&tag);
    let (_connection, mut consumer) = bind_queue(&settings.exchange, &tag).await;
    let (deep_id, _, ids) = deep_between_good_events(&pool).await;

    let shutdown = Shutdown::new();
    let (wake, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let relay = tokio::spawn(projector::relay::run_relay(
        pool.clone(),
        pool.clone(),
        settings,
        Arc::clone(&wake),
        shutdown.clone(),
    ));

    let expected: HashSet<String> = ids.iter().map(Uuid::to_string).collect();
    let mut seen = HashSet::new();
    let mut deep_body = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !expected.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {seen:?} of {expected:?} arrived");
        let Ok(Some(delivery)) = tokio::time::timeout(left, consumer.next()).await else {
            continue;
        };
        let delivery = delivery.unwrap();
        let id = delivery
            .properties
            .message_id()
            .clone()
            .unwrap()
            .to_string();
        if id == deep_id.to_string() {
            deep_body = Some(String::from_utf8(delivery.data.clone()).unwrap());
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        seen.insert(id);
    }
    let body = deep_body.expect("the deep event was published");
    assert!(
        body.contains(&"{\"a\":".repeat(DEPTH)),
        "the payload is passed on whole"
    );

    shutdown.trigger();
    relay.await.unwrap();
    listener.abort();
}

/// The `analytics_daily` checkpoint's state and last error.
async fn analytics_state(pool: &PgPool) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, last_error FROM projection_checkpoints WHERE name = $1")
        .bind(AnalyticsDailyProjection.name())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn counted_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM analytics_daily ORDER BY name")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_payload_nested_past_the_parser_limit_fails_only_the_projection_that_decodes_it(
    pool: PgPool,
) {
    let (deep_id, deep_position, ids) = deep_between_good_events(&pool).await;
    read_all(&pool, ids.len()).await;

    let error = projector::catch_up(&pool, &AnalyticsDailyProjection, 100)
        .await
        .expect_err("the deep payload is analytics_daily's poison event");
    let EngineError::Failed {
        event_id, position, ..
    } = error
    else {
        panic!("expected a failure, got {error:?}");
    };
    assert_eq!((event_id, position), (deep_id, deep_position));
    let (state, last_error) = analytics_state(&pool).await;
    assert_eq!(state, "failed");
    let last_error = last_error.unwrap();
    assert!(last_error.contains(&deep_id.to_string()), "{last_error}");
    assert!(
        last_error.contains(&format!("position {}", deep_position.position)),
        "{last_error}"
    );
    assert_eq!(counted_names(&pool).await, ["first"]);

    // Other projections do not read it and are unaffected.
    let projects = projector::catch_up(&pool, &ProjectsProjection, 100)
        .await
        .unwrap();
    assert_eq!(projects.applied, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn with_dead_lettering_a_payload_nested_past_the_parser_limit_is_parked_and_the_rest_applied(
    pool: PgPool,
) {
    let (deep_id, _, ids) = deep_between_good_events(&pool).await;
    read_all(&pool, ids.len()).await;

    let target = Target::live(&AnalyticsDailyProjection, true);
    eventually(Duration::from_secs(15), "analytics_daily caught up", || {
        let (pool, target) = (pool.clone(), target.clone());
        async move {
            let round =
                projector::catch_up_target(&pool, &pool, &AnalyticsDailyProjection, &target, 100)
                    .await
                    .expect("parking keeps the projection going");
            !round.held_back && round.checkpoint.position >= 4
        }
    })
    .await;
    assert_eq!(counted_names(&pool).await, ["first", "last"]);
    let parked: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM projection_dead_letters")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(parked, [deep_id]);
    assert_eq!(analytics_state(&pool).await.0, "running");
}
