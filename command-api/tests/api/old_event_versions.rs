//! Schema evolution on the write side: a stream holding an old event version still loads.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Call, app, stream_versions, tester};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_project_created_at_version_1_still_takes_commands(pool: PgPool) {
    // A ProjectCreated as version 1 stored it: no `created_by`, which version 2 requires.
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('Project', $1, 1, 'ProjectCreated', '1', $2, $3)",
    )
    .bind(id.to_string())
    .bind(json!({"ProjectCreated": {"name": "Old", "description": "", "owner_id": null}}))
    .bind(json!({"actor": "grace", "request_id": "r", "correlation_id": "c", "causation_id": "c"}))
    .execute(&pool)
    .await
    .unwrap();

    let app = app(&pool);
    let answer = Call::patch(&format!("/api/v1/projects/{id}"))
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Renamed"}))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.value());
    assert_eq!(answer.value()["version"], 2);
    assert_eq!(stream_versions(&pool, &id.to_string()).await, [1, 2]);

    // The stored event was not rewritten.
    let stored: (String, serde_json::Value) = sqlx::query_as(
        "SELECT event_version, payload::jsonb FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored.0, "1");
    assert!(stored.1["ProjectCreated"].get("created_by").is_none());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_new_project_is_created_at_version_2_with_its_creator(pool: PgPool) {
    let app = app(&pool);
    let id = crate::helpers::create_project(&app, "New").await;
    let (version, payload): (String, serde_json::Value) =
        sqlx::query_as("SELECT event_version, payload::jsonb FROM events WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, "2");
    assert_eq!(
        payload["ProjectCreated"]["created_by"],
        tester().id.to_string()
    );
}
