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

/// Applies `batch` through `apply_batch` and through `apply` event by event, each on a copy
/// of the model holding `before`, and returns both results.
async fn both_ways(
    pool: &PgPool,
    before: &[events::RecordedEvent],
    batch: &[events::RecordedEvent],
) -> (
    Vec<crate::helpers::ProjectRow>,
    Vec<crate::helpers::ProjectRow>,
) {
    let mut results = Vec::new();
    for bulk in [true, false] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("DELETE FROM projects")
            .execute(&mut *tx)
            .await
            .unwrap();
        if !before.is_empty() {
            ProjectsProjection
                .apply_batch(&mut tx, before)
                .await
                .unwrap();
        }
        if bulk {
            ProjectsProjection
                .apply_batch(&mut tx, batch)
                .await
                .unwrap();
        } else {
            for event in batch {
                ProjectsProjection.apply(&mut tx, event).await.unwrap();
            }
        }
        let rows: Vec<crate::helpers::ProjectRow> =
            sqlx::query_as("SELECT * FROM projects ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        tx.rollback().await.unwrap();
        results.push(rows);
    }
    let per_event = results.pop().unwrap();
    (results.pop().unwrap(), per_event)
}

/// One stream folded within one batch: a rename, a description-only update, an archive and
/// a restore interleaved, with the project created in the same batch or in an earlier one.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn one_batch_folding_a_streams_updates_archive_and_restore_equals_event_by_event(
    pool: PgPool,
) {
    let id = Uuid::now_v7();
    let history = [
        created("first"),
        renamed("second"),
        ProjectEvent::ProjectUpdated {
            name: None,
            description: Some("described".to_owned()),
        },
        ProjectEvent::ProjectArchived {},
        ProjectEvent::ProjectUpdated {
            name: None,
            description: Some("described while archived".to_owned()),
        },
        ProjectEvent::ProjectRestored {},
        renamed("third"),
        ProjectEvent::ProjectArchived {},
    ];
    let appended: Vec<_> = (1_i64..)
        .zip(&history)
        .map(|(version, event)| project_event(id, version, event))
        .collect();
    append(&pool, &appended, None).await.unwrap();
    // Readable once no older transaction in the cluster is running (bounded wait).
    let mut log = Vec::new();
    for _ in 0..3000 {
        log = event_store::log::read_after(
            &pool,
            events::LogPosition::START,
            100,
            &LogFilter::default(),
        )
        .await
        .unwrap();
        if log.len() == history.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(log.len(), history.len());

    // Every split: the project created in the batch (0) or before it, and any tail length.
    for split in 0..log.len() {
        for end in split + 1..=log.len() {
            let (bulk, per_event) = both_ways(&pool, &log[..split], &log[split..end]).await;
            assert_eq!(bulk, per_event, "events {split}..{end} in one batch");
        }
    }
    let (bulk, _) = both_ways(&pool, &[], &log).await;
    let row = &bulk[0];
    assert_eq!(
        (
            row.name.as_str(),
            row.description.as_str(),
            row.archived,
            row.version
        ),
        ("third", "described while archived", true, 8)
    );
}
