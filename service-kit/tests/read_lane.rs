//! The read lane against a real PostgreSQL: which connections it hands out again, and which it
//! closes.

mod support;

use std::time::Duration;

use service_kit::read_lane::{LaneStatus, ReadLane, status_of};
use sqlx::PgPool;

/// A lane on the test's database, testing connections idle for `test_idle_after` or longer.
fn lane(pool: &PgPool, service: &'static str, size: usize, test_idle_after: Duration) -> ReadLane {
    ReadLane::with_idle_test(
        service,
        (*pool.connect_options()).clone(),
        size,
        Duration::from_secs(5),
        test_idle_after,
    )
    .expect("a lane")
}

/// The backend process of the connection the lane hands out next, after one statement.
async fn backend(lane: &ReadLane) -> i32 {
    let mut connection = lane.acquire().await.expect("a connection");
    let read = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *connection)
        .await;
    connection.settle(read).expect("the backend's pid")
}

const NEVER: Duration = Duration::from_secs(3600);

#[sqlx::test]
async fn a_connection_is_reused_after_a_finished_statement_and_after_a_server_error(pool: PgPool) {
    let lane = lane(&pool, "lane-test-reuse", 4, NEVER);
    let first = backend(&lane).await;
    assert_eq!(backend(&lane).await, first);
    let mut connection = lane.acquire().await.expect("a connection");
    let failed = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
        .fetch_one(&mut *connection)
        .await;
    assert!(matches!(
        connection.settle(failed),
        Err(sqlx::Error::Database(_))
    ));
    assert_eq!(
        backend(&lane).await,
        first,
        "the server answered: still in step"
    );
    assert_eq!(lane.status().open, 1);
}

#[sqlx::test]
async fn a_connection_whose_statement_was_cancelled_is_closed(pool: PgPool) {
    let lane = lane(&pool, "lane-test-cancel", 4, NEVER);
    let first = backend(&lane).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(100), async {
        let mut connection = lane.acquire().await.expect("a connection");
        let read = sqlx::query("SELECT pg_sleep(30)")
            .execute(&mut *connection)
            .await;
        connection.settle(read)
    })
    .await;
    assert!(cancelled.is_err(), "the sleep was cut off");
    support::gone(&pool, first).await;
    let next = backend(&lane).await;
    assert_ne!(next, first);
    assert_eq!(lane.status().open, 1, "closed, not kept beside the new one");
}

#[sqlx::test]
async fn a_connection_that_died_in_use_is_not_handed_out_again(pool: PgPool) {
    let lane = lane(&pool, "lane-test-died", 4, NEVER);
    let first = backend(&lane).await;
    support::terminate(&pool, first).await;
    // Not idle long enough to be tested: the statement finds out.
    let mut connection = lane.acquire().await.expect("a connection");
    let read = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
        .fetch_one(&mut *connection)
        .await;
    assert!(connection.settle(read).is_err());
    assert_ne!(backend(&lane).await, first);
}

#[sqlx::test]
async fn an_idle_connection_that_died_is_replaced_before_it_is_handed_out(pool: PgPool) {
    let lane = lane(&pool, "lane-test-idle", 4, Duration::ZERO);
    let first = backend(&lane).await;
    support::terminate(&pool, first).await;
    // Tested on its way out (idle for at least zero): the statement never sees it.
    let next = backend(&lane).await;
    assert_ne!(next, first);
}

#[sqlx::test]
async fn the_lane_opens_at_most_its_size_and_counts_with_its_service(pool: PgPool) {
    let service = "lane-test-bound";
    let lane = ReadLane::with_idle_test(
        service,
        (*pool.connect_options()).clone(),
        1,
        Duration::from_millis(200),
        NEVER,
    )
    .expect("a lane");
    let held = lane.acquire().await.expect("the one connection");
    assert!(matches!(
        lane.acquire().await.err(),
        Some(sqlx::Error::PoolTimedOut)
    ));
    assert_eq!(
        status_of(service),
        LaneStatus {
            open: 1,
            idle: 0,
            max: 1
        }
    );
    drop(held);
    assert_eq!(status_of(service).open, 0, "dropped unsettled: closed");
    backend(&lane).await;
    assert_eq!(
        status_of(service),
        LaneStatus {
            open: 1,
            idle: 1,
            max: 1
        }
    );
    drop(lane);
    assert_eq!(status_of(service), LaneStatus::default());
}
