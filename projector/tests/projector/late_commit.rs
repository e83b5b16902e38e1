//! A transaction that commits after later ones must be neither skipped nor applied twice.

use event_store::append::{append, append_in};
use events::LogPosition;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    checkpoint, created, event_count, project_event, project_rows, renamed, settle,
};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_late_commit_is_neither_skipped_nor_doubled(pool: PgPool) {
    // The slow transaction takes its identity position and transaction id first...
    let slow_project = Uuid::now_v7();
    let mut slow = pool.begin().await.unwrap();
    let slow_receipt = append_in(
        &mut slow,
        &[project_event(slow_project, 1, &created("slow"))],
    )
    .await
    .unwrap();

    // ...then later transactions append and commit.
    let mut fast_projects = Vec::new();
    for n in 0..5 {
        let id = Uuid::now_v7();
        let receipt = append(
            &pool,
            &[
                project_event(id, 1, &created(&format!("fast {n}"))),
                project_event(id, 2, &renamed(&format!("fast {n} renamed"))),
            ],
            None,
        )
        .await
        .unwrap();
        assert!(receipt.last.position > slow_receipt.last.position);
        fast_projects.push(id);
    }

    let first = projector::catch_up(&pool, &ProjectsProjection, 3)
        .await
        .unwrap();
    assert_eq!(
        first.applied, 0,
        "the open transaction holds later commits back"
    );
    assert!(first.held_back, "the later commits are reported as waiting");
    assert_eq!(first.checkpoint, LogPosition::START);
    assert!(project_rows(&pool).await.is_empty());
    assert_eq!(checkpoint(&pool).await.events_applied, 0);

    slow.commit().await.unwrap();
    let applied = settle(&pool, 3).await;

    assert_eq!(applied, 11);
    let state = checkpoint(&pool).await;
    assert_eq!(state.events_applied, event_count(&pool).await);
    assert_eq!(state.events_applied, 11);
    assert_eq!(state.state, "running");
    let rows = project_rows(&pool).await;
    assert_eq!(rows.len(), 6);
    for row in &rows {
        if row.id == slow_project {
            assert_eq!((row.name.as_str(), row.version), ("slow", 1));
        } else {
            let n = fast_projects.iter().position(|id| *id == row.id).unwrap();
            // The rename is revision 2: applied after the create, in stream order.
            assert_eq!(row.name, format!("fast {n} renamed"));
            assert_eq!(row.version, 2);
            assert!(row.updated_at >= row.created_at);
        }
    }

    let again = projector::catch_up(&pool, &ProjectsProjection, 3)
        .await
        .unwrap();
    assert_eq!(again.applied, 0, "nothing is applied twice");
    assert_eq!(checkpoint(&pool).await.events_applied, 11);
}
