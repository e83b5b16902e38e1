//! Batches bounded in bytes as well as in count (issues 9.6, 10.5): a read stops early once it
//! holds its byte budget, and the next one goes on from there, skipping and repeating nothing.

use std::sync::Arc;
use std::time::Duration;

use event_store::LogFilter;
use event_store::append::{NewEvent, append};
use events::{LogPosition, analytics};
use projector::LoopSettings;
use projector::projections::AnalyticsDailyProjection;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use test_support::eventually;

const KIB: usize = 1024;

/// An analytics batch whose one event carries `size` bytes of properties.
fn big_event(size: usize) -> NewEvent {
    let payload = serde_json::json!({ "AnalyticsBatchIngested": { "events": [{
        "name": "big",
        "properties": { "blob": "x".repeat(size) },
        "session_id": null,
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

/// Appends `count` big events and waits (bounded) until all are below the commit-safe
/// horizon, which transactions of other tests may hold back for a moment.
async fn append_big(pool: &PgPool, count: usize, size: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let event = big_event(size);
        ids.push(event.event_id);
        append(pool, &[event], None).await.unwrap();
    }
    eventually(Duration::from_secs(15), "the events are readable", || {
        let pool = pool.clone();
        async move {
            let visible = event_store::log::read_after_within(
                &pool,
                LogPosition::START,
                1000,
                i64::MAX,
                &LogFilter::default(),
            )
            .await
            .unwrap();
            visible.len() == count
        }
    })
    .await;
    ids
}

/// Reads the whole log in pages of at most 500 events and `budget` bytes; returns the pages.
async fn pages(pool: &PgPool, budget: i64, filter: &LogFilter) -> Vec<Vec<events::RecordedEvent>> {
    let mut pages = Vec::new();
    let mut after = LogPosition::START;
    loop {
        let page = event_store::log::read_after_within(pool, after, 500, budget, filter)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return pages;
        };
        after = last.log_position;
        pages.push(page);
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_read_over_its_byte_budget_stops_early_and_the_next_goes_on_without_gap_or_repeat(
    pool: PgPool,
) {
    let ids = append_big(&pool, 12, 300 * KIB).await;
    let budget = i64::try_from(1024 * KIB).unwrap();
    for filter in [
        LogFilter::default(),
        LogFilter {
            aggregate_types: vec![analytics::AGGREGATE_TYPE.to_owned()],
            ..LogFilter::default()
        },
    ] {
        let pages = pages(&pool, budget, &filter).await;
        let read: Vec<Uuid> = pages.iter().flatten().map(|event| event.event_id).collect();
        assert_eq!(read, ids, "every event once, in order");
        assert!(pages.len() >= 3, "{} pages", pages.len());
        for page in &pages {
            let sizes: Vec<usize> = page.iter().map(|event| event.payload.get().len()).collect();
            let before_last: usize = sizes[..sizes.len() - 1].iter().sum();
            assert!(
                i64::try_from(before_last).unwrap() < budget,
                "only the event that crosses the budget may pass it: {sizes:?}"
            );
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_event_bigger_than_the_budget_is_still_read_alone(pool: PgPool) {
    let ids = append_big(&pool, 2, 64 * KIB).await;
    let pages = pages(&pool, 1, &LogFilter::default()).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 1]);
    let read: Vec<Uuid> = pages.iter().flatten().map(|event| event.event_id).collect();
    assert_eq!(read, ids);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_cut_by_bytes_is_followed_at_once_not_after_the_poll(pool: PgPool) {
    append_big(&pool, 10, 300 * KIB).await;
    let shutdown = Shutdown::new();
    let running = tokio::spawn(projector::run_projection(
        pool.clone(),
        Arc::new(AnalyticsDailyProjection),
        LoopSettings {
            batch_size: 500,
            // Nothing wakes the loop but its own judgement that the batch was full.
            poll_interval: Duration::from_secs(600),
            max_bytes: i64::try_from(1024 * KIB).unwrap(),
            skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
        },
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
    ));
    eventually(
        Duration::from_secs(20),
        "every big event is counted",
        || {
            let pool = pool.clone();
            async move {
                let counted: Option<i64> =
                    sqlx::query_scalar("SELECT sum(count)::bigint FROM analytics_daily")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                counted == Some(10)
            }
        },
    )
    .await;
    let batches: i64 = sqlx::query_scalar(
        "SELECT events_applied FROM projection_checkpoints WHERE name = 'analytics_daily'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(batches, 10);
    shutdown.trigger();
    running.await.unwrap().unwrap();
}
