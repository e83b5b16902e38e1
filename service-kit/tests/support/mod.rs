//! What this crate's database tests share.

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Ends backend `pid` from a session of `admin` and waits (bounded) until it is gone.
pub async fn terminate(admin: &PgPool, pid: i32) {
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(admin)
        .await
        .expect("terminate");
    gone(admin, pid).await;
}

/// Waits (bounded) until backend `pid` has left `pg_stat_activity`.
pub async fn gone(admin: &PgPool, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let present: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(admin)
                .await
                .expect("pg_stat_activity");
        if !present {
            return;
        }
        assert!(Instant::now() < deadline, "backend {pid} still there");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
