//! A batch claims its checkpoint with one statement that checks and moves it: two sinks
//! delivering the same batch apply it once, and a deleted checkpoint row sends the live model
//! back to the start of the log.

use std::time::{Duration, Instant};

use event_store::LogFilter;
use event_store::append::append;
use events::LogPosition;
use events::project::AGGREGATE_TYPE;
use projector::projections::ProjectsProjection;
use projector::subscription::{Delivered, ReadModelSink, Sink};
use projector::{EngineError, Target};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    checkpoint, created, project_event, project_rows, renamed, wipe_projects_model,
};

/// Appends one project created then renamed; returns the batch a projection reads from the
/// start of the log once it is below the commit-safe horizon.
async fn one_batch(pool: &PgPool) -> Vec<events::RecordedEvent> {
    let id = Uuid::now_v7();
    append(
        pool,
        &[
            project_event(id, 1, &created("claimed")),
            project_event(id, 2, &renamed("claimed twice?")),
        ],
        None,
    )
    .await
    .unwrap();
    let filter = LogFilter {
        aggregate_types: vec![AGGREGATE_TYPE.to_owned()],
        ..LogFilter::default()
    };
    // The horizon is cluster-wide: another test's open transaction holds the events back
    // until it ends.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let batch = event_store::log::read_after(pool, LogPosition::START, 100, &filter)
            .await
            .unwrap();
        if batch.len() == 2 {
            return batch;
        }
        assert!(Instant::now() < deadline, "events stayed held back for 15s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn two_sinks_delivering_the_same_batch_apply_it_once(pool: PgPool) {
    let batch = one_batch(&pool).await;
    let last = batch.last().unwrap().log_position;
    let target = Target::live(&ProjectsProjection, false);
    let mut first = ReadModelSink::new(&pool, &ProjectsProjection, target.clone());
    let mut second = ReadModelSink::new(&pool, &ProjectsProjection, target);
    assert_eq!(first.start(&pool).await.unwrap(), LogPosition::START);
    assert_eq!(second.start(&pool).await.unwrap(), LogPosition::START);

    let (a, b) = tokio::join!(
        first.deliver(LogPosition::START, &batch),
        second.deliver(LogPosition::START, &batch),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let moved = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Delivered::Moved { count: 2, .. }))
        .count();
    let overtaken = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Delivered::Overtaken(at) if at == &last))
        .count();
    assert_eq!((moved, overtaken), (1, 1), "{outcomes:?}");
    let state = checkpoint(&pool).await;
    assert_eq!((state.tx_id, state.position), (last.tx_id, last.position));
    assert_eq!(state.events_applied, 2, "counted once");
    let rows = project_rows(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].version, 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_read_after_a_stale_checkpoint_writes_nothing(pool: PgPool) {
    let batch = one_batch(&pool).await;
    let mut sink = ReadModelSink::new(
        &pool,
        &ProjectsProjection,
        Target::live(&ProjectsProjection, false),
    );
    sink.start(&pool).await.unwrap();
    let first = batch.first().unwrap().log_position;
    // Delivered as if read after the first event, while the checkpoint rests at the start.
    let outcome = sink.deliver(first, &batch[1..]).await.unwrap();
    assert!(
        matches!(outcome, Delivered::Overtaken(at) if at == LogPosition::START),
        "{outcome:?}"
    );
    assert!(project_rows(&pool).await.is_empty());
    assert_eq!(checkpoint(&pool).await.events_applied, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_deleted_live_checkpoint_starts_over_and_a_deleted_shadow_one_stops(pool: PgPool) {
    let batch = one_batch(&pool).await;
    let last = batch.last().unwrap().log_position;
    let live = Target::live(&ProjectsProjection, false);
    let mut sink = ReadModelSink::new(&pool, &ProjectsProjection, live.clone());
    sink.start(&pool).await.unwrap();
    assert!(matches!(
        sink.deliver(LogPosition::START, &batch).await.unwrap(),
        Delivered::Moved { count: 2, .. }
    ));

    // Deleting the live row rebuilds the model in place: the next batch, read after the old
    // checkpoint, finds the row re-created at the start and goes back there.
    wipe_projects_model(&pool).await;
    let outcome = sink.deliver(last, &batch).await.unwrap();
    assert!(
        matches!(outcome, Delivered::Overtaken(at) if at == LogPosition::START),
        "{outcome:?}"
    );
    assert!(project_rows(&pool).await.is_empty());
    assert!(matches!(
        sink.deliver(LogPosition::START, &batch).await.unwrap(),
        Delivered::Moved { count: 2, .. }
    ));
    assert_eq!(project_rows(&pool).await.len(), 1);

    // A target that must not re-create its row stops instead.
    let shadow = Target {
        create_missing: false,
        ..live
    };
    sqlx::query("DELETE FROM projection_checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    let mut sink = ReadModelSink::new(&pool, &ProjectsProjection, shadow);
    let outcome = sink.deliver(last, &batch).await;
    assert!(
        matches!(outcome, Err(EngineError::Missing { .. })),
        "{outcome:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing re-created");
}
