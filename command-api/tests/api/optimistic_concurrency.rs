//! Optimistic concurrency: `If-Match`, and retries of unconditioned commands.

use axum::http::StatusCode;
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stale_if_match_gets_412_with_the_current_version(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    Call::patch(&format!("/api/v1/projects/{id}"))
        .json(&json!({ "name": "B" }))
        .send(&app)
        .await;
    let stale = Call::patch(&format!("/api/v1/projects/{id}"))
        .header("if-match", "\"1\"")
        .json(&json!({ "name": "C" }))
        .send(&app)
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.value()["current_version"], 2);
    assert_eq!(stream_versions(&pool, &id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn of_concurrent_conditional_updates_exactly_one_wins(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let attempts = (0..16).map(|n| {
        Call::patch(&format!("/api/v1/projects/{id}"))
            .header("if-match", "\"1\"")
            .json(&json!({ "name": format!("name {n}") }))
            .send(&app)
    });
    let answers = join_all(attempts).await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let lost: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::PRECONDITION_FAILED)
        .collect();
    assert_eq!(
        won,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(lost.len(), 15);
    assert!(lost.iter().all(|a| a.value()["current_version"] == 2));
    assert_eq!(stream_versions(&pool, &id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn concurrent_unconditioned_updates_all_land_with_consecutive_versions(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let updates = (0..12).map(|n| {
        Call::patch(&format!("/api/v1/projects/{id}"))
            .json(&json!({ "description": format!("revision {n}") }))
            .send(&app)
    });
    let answers = join_all(updates).await;
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{:?}",
        answers
            .iter()
            .map(|a| (a.status, a.value()))
            .collect::<Vec<_>>()
    );
    let mut versions: Vec<i64> = answers
        .iter()
        .map(|a| a.value()["version"].as_i64().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=13).collect::<Vec<_>>());
    assert_eq!(
        stream_versions(&pool, &id).await,
        (1..=13).collect::<Vec<_>>()
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn concurrent_creates_with_one_client_id_create_once(pool: PgPool) {
    let app = app(&pool);
    let id = "0195a7d4-1c2b-7def-8000-0000000000cc";
    let creates = (0..8).map(|n| {
        Call::post("/api/v1/projects")
            .json(&json!({ "id": id, "name": format!("P{n}") }))
            .send(&app)
    });
    let answers = join_all(creates).await;
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.status == StatusCode::CREATED)
            .count(),
        1
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.status == StatusCode::CONFLICT)
            .count(),
        7
    );
    assert_eq!(stream_versions(&pool, id).await, vec![1]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_weak_if_match_never_matches_and_gets_412_with_the_current_version(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    // Strong comparison (RFC 9110): W/"1" does not match version 1, although "1" would.
    let weak = Call::patch(&format!("/api/v1/projects/{id}"))
        .header("if-match", "W/\"1\"")
        .json(&json!({ "name": "B" }))
        .send(&app)
        .await;
    assert_eq!(
        weak.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        weak.value()
    );
    assert_eq!(weak.value()["current_version"], 1);
    assert_eq!(stream_versions(&pool, &id).await, vec![1]);
}
