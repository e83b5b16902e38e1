//! The `analytics_daily` projection, and schema evolution as projections see it.

use chrono::{DateTime, NaiveDate, Utc};
use event_store::append::NewEvent;
use events::analytics::{self, AnalyticsEvent, TrackedEvent};
use std::time::{Duration, Instant};

use projector::projections::AnalyticsDailyProjection;
use projector::{Projection, catch_up};
use sqlx::PgPool;
use uuid::Uuid;

fn tracked(name: &str, session: Option<&str>, at: &str) -> TrackedEvent {
    TrackedEvent {
        name: name.to_owned(),
        properties: serde_json::Map::new(),
        session_id: session.map(str::to_owned),
        user_id: None,
        occurred_at: DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc),
    }
}

fn batch_event(events: Vec<TrackedEvent>) -> NewEvent {
    let event = AnalyticsEvent::AnalyticsBatchIngested { events };
    crate::helpers::domain_event(
        analytics::AGGREGATE_TYPE,
        &Uuid::now_v7().to_string(),
        1,
        &event,
    )
}

async fn daily(pool: &PgPool) -> Vec<(NaiveDate, String, i64, i64)> {
    sqlx::query_as(
        "SELECT day, name, count, unique_sessions FROM analytics_daily ORDER BY day, name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Catches `projection` up until no committed event is held back (bounded): tests share the
/// server, and another test's open transaction holds the commit-safe horizon back.
async fn settle(pool: &PgPool, projection: &dyn Projection, batch_size: i64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut applied = 0;
    loop {
        let round = catch_up(pool, projection, batch_size).await.unwrap();
        applied += round.applied;
        if !round.held_back {
            return applied;
        }
        assert!(Instant::now() < deadline, "events stayed held back for 15s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn day(raw: &str) -> NaiveDate {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_daily_summary_counts_events_and_distinct_sessions_per_utc_day(pool: PgPool) {
    let first = batch_event(vec![
        tracked("view", Some("s1"), "2026-01-31T10:00:00Z"),
        tracked("view", Some("s1"), "2026-01-31T11:00:00Z"),
        tracked("view", Some("s2"), "2026-02-01T01:00:00+02:00"),
        tracked("signup", None, "2026-02-01T09:00:00Z"),
    ]);
    // A later batch: s1 again (not new), s3 new, and a session seen on another day.
    let second = batch_event(vec![
        tracked("view", Some("s1"), "2026-01-31T12:00:00Z"),
        tracked("view", Some("s3"), "2026-01-31T13:00:00Z"),
        tracked("view", Some("s1"), "2026-02-01T13:00:00Z"),
    ]);
    event_store::append::append(&pool, &[first], None)
        .await
        .unwrap();
    event_store::append::append(&pool, &[second], None)
        .await
        .unwrap();

    assert_eq!(settle(&pool, &AnalyticsDailyProjection, 500).await, 2);
    assert_eq!(
        daily(&pool).await,
        [
            (day("2026-01-31"), "view".to_owned(), 5, 3),
            (day("2026-02-01"), "signup".to_owned(), 1, 0),
            (day("2026-02-01"), "view".to_owned(), 1, 1),
        ]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn batches_applied_one_by_one_or_together_give_the_same_summary(pool: PgPool) {
    for n in 0..6 {
        let session = format!("s{}", n % 3);
        let event = batch_event(vec![tracked("tap", Some(&session), "2026-03-01T00:00:00Z")]);
        event_store::append::append(&pool, &[event], None)
            .await
            .unwrap();
    }
    // One event per transaction: the batch size does not change what is counted.
    assert_eq!(settle(&pool, &AnalyticsDailyProjection, 1).await, 6);
    assert_eq!(
        daily(&pool).await,
        [(day("2026-03-01"), "tap".to_owned(), 6, 3)]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_project_created_at_version_1_is_read_as_version_2_and_projected(pool: PgPool) {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('Project', $1, 1, 'ProjectCreated', '1', $2, $3)",
    )
    .bind(id.to_string())
    .bind(
        serde_json::json!({"ProjectCreated": {"name": "Old", "description": "", "owner_id": null}}),
    )
    .bind(test_support::metadata::json("grace"))
    .execute(&pool)
    .await
    .unwrap();

    let read = event_store::log::read_stream(&pool, "Project", &id.to_string(), 1, 10)
        .await
        .unwrap();
    assert_eq!(read[0].event_version, "2");
    let payload: serde_json::Value = serde_json::from_str(read[0].payload.get()).unwrap();
    assert_eq!(payload["ProjectCreated"]["created_by"], "grace");

    assert_eq!(crate::helpers::settle(&pool, 100).await, 1);
    let name: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "Old");
}
