//! Set-based batch application equals applying event by event.

use event_store::LogFilter;
use event_store::append::append;
use events::project::ProjectEvent;
use projector::Projection as _;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Lcg, created, project_event, project_rows, renamed, settle};

/// A log of many projects, each with a pseudo-random history of updates, archives and
/// restores; several events of one project often fall into one batch.
async fn seed(pool: &PgPool) {
    let mut random = Lcg::new(7);
    let ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let mut versions = vec![0_i64; ids.len()];
    let mut archived = vec![false; ids.len()];
    for step in 0..600 {
        let slot = usize::try_from(random.below(ids.len() as u64)).unwrap();
        let event = if versions[slot] == 0 {
            created(&format!("project {slot}"))
        } else {
            match random.below(4) {
                0 if !archived[slot] => ProjectEvent::ProjectArchived {},
                1 if archived[slot] => ProjectEvent::ProjectRestored {},
                2 => ProjectEvent::ProjectUpdated {
                    name: None,
                    description: Some(format!("description {step}")),
                },
                _ => renamed(&format!("name {step}")),
            }
        };
        match event {
            ProjectEvent::ProjectArchived {} => archived[slot] = true,
            ProjectEvent::ProjectRestored {} => archived[slot] = false,
            _ => {}
        }
        versions[slot] += 1;
        let appended = project_event(ids[slot], versions[slot], &event);
        append(pool, &[appended], None).await.unwrap();
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn applying_a_batch_at_once_equals_applying_it_event_by_event(pool: PgPool) {
    seed(&pool).await;
    // The engine hands whole batches to `apply_batch`.
    settle(&pool, 250).await;
    let bulk = project_rows(&pool).await;

    sqlx::query("DELETE FROM projects")
        .execute(&pool)
        .await
        .unwrap();
    let log = event_store::log::read_after(
        &pool,
        events::LogPosition::START,
        10_000,
        &LogFilter::default(),
    )
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for event in &log {
        ProjectsProjection.apply(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    let per_event = project_rows(&pool).await;

    assert_eq!(bulk.len(), 40);
    assert_eq!(bulk, per_event);
}
