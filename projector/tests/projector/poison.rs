//! An event a projection cannot apply stops it, loudly, right before the event.

use event_store::append::append;
use projector::EngineError;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{checkpoint, created, project_event, project_rows, try_settle};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_poison_event_fails_the_projection_and_nothing_after_it_is_applied(pool: PgPool) {
    let before = Uuid::now_v7();
    let before_receipt = append(&pool, &[project_event(before, 1, &created("before"))], None)
        .await
        .unwrap();
    let poisoned = Uuid::now_v7();
    let mut poison = project_event(poisoned, 1, &created("never"));
    poison.event_type = "ProjectExploded".to_owned();
    poison.payload = serde_json::json!({"ProjectExploded": {"blast_radius": 3}});
    let poison_id = poison.event_id;
    let poison_receipt = append(&pool, &[poison], None).await.unwrap();
    let after = Uuid::now_v7();
    append(&pool, &[project_event(after, 1, &created("after"))], None)
        .await
        .unwrap();

    for attempt in 0..2 {
        // Transactions of other tests may hold the horizon back for a moment.
        let error = try_settle(&pool, 10)
            .await
            .expect_err("the poison event fails the projection");
        let EngineError::Failed {
            projection,
            event_id,
            position,
            ..
        } = error
        else {
            panic!("expected a failure, got {error:?}");
        };
        assert_eq!(projection, ProjectsProjection::NAME);
        assert_eq!(event_id, poison_id, "attempt {attempt}");
        assert_eq!(position, poison_receipt.last);

        let state = checkpoint(&pool).await;
        assert_eq!(state.state, "failed");
        let last_error = state.last_error.expect("the failure is recorded");
        assert!(last_error.contains(&poison_id.to_string()), "{last_error}");
        assert!(
            last_error.contains(&format!("position {}", poison_receipt.last.position)),
            "{last_error}"
        );
        // The checkpoint rests right before the poison event: the event before it is kept.
        assert_eq!(
            (state.tx_id, state.position),
            (before_receipt.last.tx_id, before_receipt.last.position)
        );
        assert_eq!(state.events_applied, 1);
        let ids: Vec<Uuid> = project_rows(&pool).await.iter().map(|row| row.id).collect();
        assert_eq!(ids, [before], "nothing after the poison event is applied");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_outage_is_never_taken_for_a_poison_event(pool: PgPool) {
    use projector::ProjectionError;

    // A statement the server cancels (57014), as on a shutdown or a timeout.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = '1ms'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let cancelled = sqlx::query("SELECT pg_sleep(1)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    drop(tx);
    assert!(ProjectionError::Database(cancelled).is_outage());

    // A statement that is wrong about the data (23505) is the event's fault.
    let mut connection = pool.acquire().await.unwrap();
    sqlx::query("CREATE TEMP TABLE twice (id int PRIMARY KEY)")
        .execute(&mut *connection)
        .await
        .unwrap();
    let duplicate = sqlx::query("INSERT INTO twice VALUES (1), (1)")
        .execute(&mut *connection)
        .await
        .unwrap_err();
    assert!(!ProjectionError::Database(duplicate).is_outage());
    assert!(!ProjectionError::Database(sqlx::Error::RowNotFound).is_outage());
    assert!(ProjectionError::Database(sqlx::Error::PoolTimedOut).is_outage());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_failure_is_recorded_only_while_the_checkpoint_rests_where_it_was_found(pool: PgPool) {
    let receipt = append(
        &pool,
        &[project_event(Uuid::now_v7(), 1, &created("one"))],
        None,
    )
    .await
    .unwrap();
    try_settle(&pool, 10).await.unwrap();
    // Another process moved on past the place where this one found its failure.
    let stale = events::LogPosition::START;
    let recorded =
        event_store::checkpoints::fail_at(&pool, ProjectsProjection::NAME, stale, "stale")
            .await
            .unwrap();
    assert!(!recorded);
    assert_eq!(checkpoint(&pool).await.state, "running");
    let recorded = event_store::checkpoints::fail_at(
        &pool,
        ProjectsProjection::NAME,
        receipt.last,
        "found here",
    )
    .await
    .unwrap();
    assert!(recorded);
    assert_eq!(checkpoint(&pool).await.state, "failed");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_missing_checkpoint_that_may_not_be_created_stops_the_subscription(pool: PgPool) {
    append(
        &pool,
        &[project_event(Uuid::now_v7(), 1, &created("one"))],
        None,
    )
    .await
    .unwrap();
    let target = projector::Target {
        checkpoint: "projects@ghost".to_owned(),
        create_missing: false,
        ..projector::Target::live(&ProjectsProjection, false)
    };
    let outcome = projector::catch_up_target(&pool, &pool, &ProjectsProjection, &target, 10).await;
    assert!(
        matches!(outcome, Err(EngineError::Missing { .. })),
        "{outcome:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was applied without a checkpoint");
}
