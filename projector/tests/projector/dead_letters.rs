//! Poison events: parked in `projection_dead_letters` when configured, otherwise the projection
//! stops as `failed` and `/metrics` says so. Never skipped silently.

use std::time::Duration;

use event_store::append::append;
use projector::Target;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use test_support::eventually;
use uuid::Uuid;

use crate::helpers::{checkpoint, created, project_event, project_rows};
use crate::processes::{Projector, maybe_checkpoint};

/// Appends a good event, a poison one and another good one; returns (good ids, poison id,
/// poison position).
async fn poison_between_good_events(pool: &PgPool) -> ([Uuid; 2], Uuid, i64) {
    let before = Uuid::now_v7();
    append(pool, &[project_event(before, 1, &created("before"))], None)
        .await
        .unwrap();
    let mut poison = project_event(Uuid::now_v7(), 1, &created("never"));
    poison.event_type = "ProjectExploded".to_owned();
    poison.payload = serde_json::json!({"ProjectExploded": {"blast_radius": 3}});
    let poison_id = poison.event_id;
    let receipt = append(pool, &[poison], None).await.unwrap();
    let after = Uuid::now_v7();
    append(pool, &[project_event(after, 1, &created("after"))], None)
        .await
        .unwrap();
    ([before, after], poison_id, receipt.last.position)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn with_dead_lettering_a_poison_event_is_parked_and_the_projection_goes_on(pool: PgPool) {
    let (good, poison_id, poison_position) = poison_between_good_events(&pool).await;

    let target = Target::live(&ProjectsProjection, true);
    // Transactions of other tests may hold the horizon back for a moment.
    eventually(Duration::from_secs(15), "the projection caught up", || {
        let (pool, target) = (pool.clone(), target.clone());
        async move {
            let round = projector::catch_up_target(&pool, &pool, &ProjectsProjection, &target, 10)
                .await
                .expect("parking keeps the projection going");
            !round.held_back && checkpoint(&pool).await.events_applied == 2
        }
    })
    .await;

    let mut ids: Vec<Uuid> = project_rows(&pool).await.iter().map(|row| row.id).collect();
    ids.sort();
    let mut expected = good.to_vec();
    expected.sort();
    assert_eq!(
        ids, expected,
        "the events around the poison one are applied"
    );

    let parked: Vec<(String, Uuid, i64, String)> =
        sqlx::query_as("SELECT projection, event_id, position, error FROM projection_dead_letters")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (projection, event_id, position, error) = &parked[0];
    assert_eq!(projection, ProjectsProjection::NAME);
    assert_eq!(*event_id, poison_id);
    assert_eq!(*position, poison_position);
    assert!(error.contains("ProjectExploded"), "{error}");

    let state = checkpoint(&pool).await;
    assert_eq!(state.state, "running");
    assert!(
        state.position > poison_position,
        "the checkpoint moved past it"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn without_dead_lettering_a_poison_event_fails_the_projection_and_metrics_show_it(
    pool: PgPool,
) {
    let (_, poison_id, _) = poison_between_good_events(&pool).await;
    let projector = Projector::start(&pool, &[]);

    eventually(
        Duration::from_secs(20),
        "the projection is recorded failed",
        || {
            let pool = pool.clone();
            async move {
                maybe_checkpoint(&pool)
                    .await
                    .is_some_and(|c| c.state == "failed")
            }
        },
    )
    .await;
    let state = checkpoint(&pool).await;
    assert!(
        state.last_error.unwrap().contains(&poison_id.to_string()),
        "the failure names the event"
    );
    assert_eq!(state.events_applied, 1, "nothing after the poison event");
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0, "nothing is parked unless configured");

    eventually(
        Duration::from_secs(20),
        "/metrics reports one failed projection",
        || {
            let projector = &projector;
            async move {
                projector.get("/metrics").await.is_some_and(|body| {
                    body.contains(
                        "chronicle_projection_state{projection=\"projects\",state=\"failed\"} 1",
                    ) && body.contains(
                        "chronicle_projection_state{projection=\"projects\",state=\"running\"} 0",
                    )
                })
            }
        },
    )
    .await;
}
