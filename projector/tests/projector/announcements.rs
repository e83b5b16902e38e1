//! What the projector says on `chronicle_checkpoints`: after each batch, the checkpoint, its
//! generation and the newest version of every stream the batch moved; and an idle projection
//! moving its checkpoint past events that do not concern it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::append::append;
use event_store::wake::{CHECKPOINTS_CHANNEL, CheckpointMoved};
use projector::projections::ProjectsProjection;
use projector::{LoopSettings, Projection};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use test_support::eventually;
use uuid::Uuid;

use crate::helpers::{checkpoint, created, project_event, renamed, settle};

/// The next announcement about `projection` (bounded wait).
async fn next_announcement(listener: &mut PgListener, projection: &str) -> CheckpointMoved {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no announcement about {projection}");
        let Ok(notification) = tokio::time::timeout(left, listener.recv()).await else {
            continue;
        };
        let notification = notification.unwrap();
        if let Some(moved) = CheckpointMoved::from_payload(notification.payload())
            && moved.projection == projection
        {
            return moved;
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_committed_batch_announces_its_checkpoint_and_the_newest_version_of_each_stream(
    pool: PgPool,
) {
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    append(
        &pool,
        &[
            project_event(first, 1, &created("one")),
            project_event(first, 2, &renamed("one again")),
        ],
        None,
    )
    .await
    .unwrap();
    let receipt = append(&pool, &[project_event(second, 1, &created("two"))], None)
        .await
        .unwrap();
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(CHECKPOINTS_CHANNEL).await.unwrap();

    assert_eq!(settle(&pool, 100).await, 3);
    let mut moved = next_announcement(&mut listener, ProjectsProjection::NAME).await;
    // Transactions elsewhere may have split the catch-up into two batches.
    let mut changed = moved.changed.clone();
    while moved.checkpoint < receipt.last {
        moved = next_announcement(&mut listener, ProjectsProjection::NAME).await;
        changed.extend(moved.changed.clone());
    }
    assert!(moved.complete);
    assert_eq!(moved.checkpoint, receipt.last);
    assert_eq!(moved.generation, 0);
    changed.sort();
    let mut expected = vec![(first.to_string(), 2), (second.to_string(), 1)];
    expected.sort();
    changed.dedup_by(|later, earlier| {
        later.0 == earlier.0 && {
            earlier.1 = earlier.1.max(later.1);
            true
        }
    });
    assert_eq!(changed, expected);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_idle_projection_moves_its_checkpoint_past_events_that_do_not_concern_it(pool: PgPool) {
    append(
        &pool,
        &[project_event(Uuid::now_v7(), 1, &created("mine"))],
        None,
    )
    .await
    .unwrap();
    let mut last = None;
    for n in 0..5 {
        let unrelated = crate::deep_payloads::analytics_event(&format!("other{n}"), 0);
        last = Some(append(&pool, &[unrelated], None).await.unwrap().last);
    }
    let last = last.unwrap();

    let shutdown = Shutdown::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let projection: Arc<dyn Projection> = Arc::new(ProjectsProjection);
    let running = tokio::spawn(projector::run_projection(
        pool.clone(),
        projection,
        LoopSettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(20),
            max_bytes: event_store::log::DEFAULT_MAX_BYTES,
            skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
        },
        wake,
        shutdown.clone(),
    ));
    eventually(
        Duration::from_secs(20),
        "the checkpoint passes the unrelated events",
        || {
            let pool = pool.clone();
            async move {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT tx_id, position FROM projection_checkpoints WHERE name = 'projects'",
                )
                .fetch_optional(&pool)
                .await
                .unwrap();
                row == Some((last.tx_id, last.position))
            }
        },
    )
    .await;
    let state = checkpoint(&pool).await;
    assert_eq!(state.events_applied, 1, "skipped events are not counted");
    assert_eq!(state.state, "running");

    shutdown.trigger();
    running.await.unwrap().unwrap();
}

/// The idle skip moves only up to the commit-safe horizon: a `Project` event whose
/// transaction is still open when later, unrelated transactions commit (decision 0001's
/// out-of-order commit) is applied once it commits, never skipped.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_idle_skip_never_passes_a_concerning_event_committed_out_of_order(pool: PgPool) {
    let first = Uuid::now_v7();
    append(&pool, &[project_event(first, 1, &created("first"))], None)
        .await
        .unwrap();
    // The slow transaction takes its position and transaction id first...
    let late = Uuid::now_v7();
    let mut slow = pool.begin().await.unwrap();
    let slow_receipt =
        event_store::append::append_in(&mut slow, &[project_event(late, 1, &created("late"))])
            .await
            .unwrap();
    // ...then unrelated transactions append after it and commit.
    let mut last = None;
    for n in 0..5 {
        let unrelated = crate::deep_payloads::analytics_event(&format!("other{n}"), 0);
        last = Some(append(&pool, &[unrelated], None).await.unwrap().last);
    }
    let last = last.unwrap();
    assert!(last > slow_receipt.last);

    let shutdown = Shutdown::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let projection: Arc<dyn Projection> = Arc::new(ProjectsProjection);
    let running = tokio::spawn(projector::run_projection(
        pool.clone(),
        projection,
        LoopSettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(20),
            max_bytes: event_store::log::DEFAULT_MAX_BYTES,
            // Every idle round tries to skip: the test wants many tries.
            skip_every: Duration::ZERO,
        },
        wake,
        shutdown.clone(),
    ));
    let position = || {
        let pool = pool.clone();
        async move {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT tx_id, position FROM projection_checkpoints WHERE name = 'projects'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            row.map(|(tx_id, position)| events::LogPosition { tx_id, position })
        }
    };
    // The first event is applied; then about fifty idle rounds (one every 20 ms) while the
    // slow transaction is open: none may move the checkpoint onto or past its event.
    eventually(
        Duration::from_secs(20),
        "the first event is applied",
        || {
            let position = position();
            async move { position.await.is_some_and(|at| at.position > 0) }
        },
    )
    .await;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        let at = position().await.unwrap();
        assert!(
            at < slow_receipt.last,
            "the checkpoint {at:?} passed the open transaction's event {:?}",
            slow_receipt.last
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    slow.commit().await.unwrap();
    eventually(
        Duration::from_secs(20),
        "the late event is applied and the unrelated ones skipped",
        || {
            let position = position();
            async move { position.await == Some(last) }
        },
    )
    .await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, vec!["first".to_owned(), "late".to_owned()]);
    assert_eq!(checkpoint(&pool).await.events_applied, 2);

    shutdown.trigger();
    running.await.unwrap().unwrap();
}
