//! The services' pool options against the real server: a checkout does not ping a connection
//! used a moment ago, and does test one idle for `TEST_IDLE_AFTER`, so a connection that died
//! while idle that long is replaced before a statement is given to it (decision 0017).

mod support;

use std::time::Duration;

use service_kit::db::{DEFAULT_DATABASE_URL, TEST_IDLE_AFTER, pool_options};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

/// The server's own `postgres` database: the test creates nothing.
fn options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    url.parse::<PgConnectOptions>()
        .expect("a database URL")
        .database("postgres")
}

async fn backend(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
}

/// Ends backend `pid` from another session and waits (bounded) until it is gone.
async fn terminate(pid: i32) {
    let admin = PgPool::connect_with(options())
        .await
        .expect("an admin session");
    support::terminate(&admin, pid).await;
}

#[tokio::test]
async fn a_connection_that_died_while_idle_past_the_threshold_is_replaced_on_checkout() {
    let pool = pool_options()
        .max_connections(1)
        .connect_with(options())
        .await
        .expect("a pool");
    let first = backend(&pool).await.expect("a first statement");
    terminate(first).await;
    // Past the threshold by construction: the checkout measures the connection's idle time.
    tokio::time::sleep(TEST_IDLE_AFTER + Duration::from_millis(100)).await;
    let second = backend(&pool)
        .await
        .expect("the dead connection is tested and replaced");
    assert_ne!(first, second);
}
