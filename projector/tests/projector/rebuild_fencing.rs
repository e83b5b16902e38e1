//! A rebuild owns its shadow only while it holds its lock and its shadow checkpoint: when
//! either is lost it stops, and the live model is left as it was (issue 9.2). A swap bumps the
//! live checkpoint's generation.

use std::time::Duration;

use event_store::append::{NewEvent, append};
use projector::projections::ProjectsProjection;
use projector::rebuild::{RebuildError, rebuild};
use projector::{EngineError, Projection};
use sqlx::PgPool;
use test_support::eventually;
use uuid::Uuid;

use crate::helpers::{created, project_event, renamed, settle};

/// Appends `count` projects, each created then renamed.
async fn seed(pool: &PgPool, count: usize) {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(200) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .flat_map(|id| {
                [
                    project_event(*id, 1, &created("p")),
                    project_event(*id, 2, &renamed("p renamed")),
                ]
            })
            .collect();
        append(pool, &batch, None).await.unwrap();
    }
}

async fn generation(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT generation FROM projection_checkpoints WHERE name = 'projects'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn shadow_position(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT position FROM projection_checkpoints \
                           WHERE name = 'projects@shadow'), 0)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Starts a slow rebuild of `projects` and waits until its shadow has applied a batch.
async fn rebuild_under_way(
    pool: &PgPool,
) -> tokio::task::JoinHandle<Result<projector::rebuild::RebuildReport, RebuildError>> {
    let rebuilding = {
        let pool = pool.clone();
        tokio::spawn(async move { rebuild(&pool, &pool, &ProjectsProjection, 5, false).await })
    };
    eventually(
        Duration::from_secs(20),
        "the shadow applied a batch",
        || {
            let pool = pool.clone();
            async move { shadow_position(&pool).await > 0 }
        },
    )
    .await;
    rebuilding
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_swap_bumps_the_live_generation(pool: PgPool) {
    seed(&pool, 20).await;
    settle(&pool, 500).await;
    assert_eq!(generation(&pool).await, 0);
    rebuild(&pool, &pool, &ProjectsProjection, 500, false)
        .await
        .unwrap();
    assert_eq!(generation(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rebuild_whose_shadow_checkpoint_is_deleted_stops_and_leaves_the_live_model(
    pool: PgPool,
) {
    seed(&pool, 3000).await;
    settle(&pool, 500).await;
    let rebuilding = rebuild_under_way(&pool).await;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'projects@shadow'")
        .execute(&pool)
        .await
        .unwrap();
    let outcome = rebuilding.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(RebuildError::Engine(EngineError::Missing { .. }))
        ),
        "{outcome:?}"
    );
    assert_eq!(generation(&pool).await, 0, "nothing was swapped in");
    assert_eq!(
        shadow_position(&pool).await,
        0,
        "the deleted checkpoint was not re-created"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rebuild_whose_lock_session_dies_writes_no_further_batch(pool: PgPool) {
    seed(&pool, 3000).await;
    settle(&pool, 500).await;
    let rebuilding = rebuild_under_way(&pool).await;
    let key = projector::leader::lock_key(&format!("rebuild:{}", ProjectsProjection.name()));
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
          WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(key)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the rebuild's lock session is ended");
    let outcome = rebuilding.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(RebuildError::Engine(EngineError::Fenced { .. }))
        ),
        "{outcome:?}"
    );
    assert_eq!(generation(&pool).await, 0, "nothing was swapped in");
}
