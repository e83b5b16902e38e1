//! What the query API keeps from its own reads, against the real projector: item versions
//! learned into the version map (a later revalidation needs no query) and list totals kept per
//! checkpoint. Neither may outlive the move that makes it stale: once the announcement of a
//! move is received, the old version is never a 304 again, however many reads race with it;
//! and a total is only served at the checkpoint it was counted at.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use event_store::wake::Delivery;
use events::LogPosition;
use events::project::{AGGREGATE_TYPE, ProjectEvent};
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    app_and_state, append_project_event, get_with, insert_project, project, until_announced,
};

/// Appends event `sequence` of project `id`: its creation at 1, a rename after.
async fn append(pool: &PgPool, id: Uuid, sequence: i64) -> LogPosition {
    let event = if sequence == 1 {
        ProjectEvent::ProjectCreated {
            name: "Apollo".to_owned(),
            description: String::new(),
            owner_id: None,
            created_by: "test".to_owned(),
        }
    } else {
        ProjectEvent::ProjectUpdated {
            name: Some(format!("Apollo {sequence}")),
            description: None,
        }
    };
    append_project_event(pool, AGGREGATE_TYPE, &id.to_string(), sequence, &event).await
}

/// Runs the projects projection until it has applied everything up to `upto`, as the
/// projector's loop does (announcing each batch), and waits until `state` has received the
/// announcement.
async fn project_all(pool: &PgPool, state: &query_api::AppState, upto: LogPosition) {
    // The commit-safe horizon is the whole server's: another database's open transaction
    // can hold the events back for a while, so catch up again until they are applied.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done = projector::catch_up(pool, &ProjectsProjection, 500)
            .await
            .expect("projected");
        if done.checkpoint >= upto {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events up to {upto:?} not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    until_announced(state, "projects", upto).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_read_version_is_learned_and_never_served_after_the_projector_moved_past_it(
    pool: PgPool,
) {
    let (app, state) = app_and_state(&pool, query_api::Settings::default()).await;
    let id = Uuid::now_v7();
    let uri = format!("/api/v1/projects/{id}");
    let at = append(&pool, id, 1).await;
    project_all(&pool, &state, at).await;

    // Forget what the projector announced: only a read can teach the map now.
    state.announced().apply(&Delivery::Gap);
    assert_eq!(state.announced().version("projects", &id.to_string()), None);
    let read = get_with(&app, &uri, &[]).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        state.announced().version("projects", &id.to_string()),
        Some(1)
    );

    // Reads race with every move from here on, each trying to teach the map what it read.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|n| {
            let (app, uri, stop) = (app.clone(), uri.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let tag = if n % 2 == 0 { "\"0\"" } else { "*" };
                    let answer = get_with(&app, &uri, &[("if-none-match", tag)]).await;
                    assert!(
                        answer.status == StatusCode::OK
                            || answer.status == StatusCode::NOT_MODIFIED,
                        "{}",
                        answer.status
                    );
                }
            })
        })
        .collect();
    for version in 2..=20 {
        let at = append(&pool, id, version).await;
        project_all(&pool, &state, at).await;
        let known = state.announced().version("projects", &id.to_string());
        assert!(
            known.is_none_or(|known| known >= version),
            "the map holds {known:?} after the move to {version} was announced"
        );
        let stale = format!("\"{}\"", version - 1);
        let answer = get_with(&app, &uri, &[("if-none-match", &stale)]).await;
        assert_eq!(answer.status, StatusCode::OK, "revalidating {stale}");
        assert_eq!(
            answer.header("etag").expect("etag header"),
            format!("\"{version}\"")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replica_state_learns_nothing_from_its_reads(pool: PgPool) {
    let settings = query_api::Settings {
        auth: test_support::auth::settings(),
        learn_versions: true,
        ..query_api::Settings::default()
    };
    let state = query_api::app_state_with_primary(pool.clone(), pool.clone(), settings)
        .await
        .expect("state");
    assert!(!state.learns_from_reads());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_list_total_is_kept_only_while_the_checkpoint_stands_still(pool: PgPool) {
    let (app, state) = app_and_state(&pool, query_api::Settings::default()).await;
    let mut upto = LogPosition::default();
    for _ in 0..3 {
        upto = append(&pool, Uuid::now_v7(), 1).await;
    }
    project_all(&pool, &state, upto).await;
    let total = async || {
        let answer = get_with(&app, "/api/v1/projects?page_size=2", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()["total"].as_i64().expect("a total")
    };
    assert_eq!(total().await, 3);

    // A row that appears without the checkpoint moving (never done by the projector) shows
    // that the total is the one kept for this checkpoint, not counted again.
    insert_project(&pool, &project("Outside the projector")).await;
    assert_eq!(total().await, 3);

    // The projector moves: the total is counted again, and includes everything.
    let at = append(&pool, Uuid::now_v7(), 1).await;
    project_all(&pool, &state, at).await;
    assert_eq!(total().await, 5);

    // Off: every page counts.
    let settings = query_api::Settings {
        totals_cache: 0,
        ..query_api::Settings::default()
    };
    let (uncached, _) = app_and_state(&pool, settings).await;
    insert_project(&pool, &project("Outside again")).await;
    let answer = get_with(&uncached, "/api/v1/projects?page_size=2", &[]).await;
    assert_eq!(answer.json()["total"].as_i64(), Some(6));
}
