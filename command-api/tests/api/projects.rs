//! Project commands end to end: answers, headers, stored events and metadata.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn creating_a_project_answers_201_with_location_etag_and_token(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::post("/api/v1/projects")
        .json(&json!({ "name": "  Apollo ", "description": "moon", "owner_id": "0195a7d4-1c2b-7def-8000-000000000001" }))
        .header("user-agent", "tests/1.0")
        .header("x-request-id", "req-123")
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let body = answer.value();
    let id = body["id"].as_str().unwrap();
    assert_eq!(answer.value()["version"], 1);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/projects/{id}").as_str())
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    let token = body["consistency_token"].as_str().unwrap();
    assert_eq!(answer.header("x-consistency-token"), Some(token));
    // The token names the event's place in the log and its aggregate type.
    let token = events::ConsistencyToken::decode(token).unwrap();
    let (tx_id, position): (i64, i64) = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events WHERE aggregate_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(token.position, events::LogPosition { tx_id, position });
    assert_eq!(token.last_type.as_deref(), Some("Project"));
    assert_eq!(answer.header("x-request-id"), Some("req-123"));

    let (event_type, payload, metadata): (String, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT event_type, payload::jsonb, metadata::jsonb FROM events WHERE aggregate_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(event_type, "ProjectCreated");
    assert_eq!(payload["ProjectCreated"]["name"], "Apollo");
    assert_eq!(metadata["actor"], tester().id.to_string());
    assert_eq!(metadata["session_id"], tester().session.to_string());
    assert_eq!(metadata["request_id"], "req-123");
    assert_eq!(metadata["correlation_id"], "req-123");
    assert_eq!(metadata["user_agent"], "tests/1.0");
    assert!(
        metadata["causation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_client_generated_id_is_kept_and_cannot_be_created_twice(pool: PgPool) {
    let app = app(&pool);
    let id = "0195a7d4-1c2b-7def-8000-0000000000aa";
    let first = Call::post("/api/v1/projects")
        .json(&json!({ "id": id, "name": "A" }))
        .send(&app)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.value()["id"], id);
    let second = Call::post("/api/v1/projects")
        .json(&json!({ "id": id, "name": "B" }))
        .send(&app)
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(
        second.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn update_archive_and_restore_move_the_version(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let updated = Call::patch(&format!("/api/v1/projects/{id}"))
        .json(&json!({ "name": "Gemini" }))
        .send(&app)
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.value()["version"], 2);
    assert_eq!(updated.header("etag"), Some("\"2\""));

    let archived = Call::post(&format!("/api/v1/projects/{id}/archive"))
        .send(&app)
        .await;
    assert_eq!(archived.status, StatusCode::OK);
    assert_eq!(archived.value()["version"], 3);

    let refused = Call::patch(&format!("/api/v1/projects/{id}"))
        .json(&json!({ "description": "x" }))
        .send(&app)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let again = Call::post(&format!("/api/v1/projects/{id}/archive"))
        .send(&app)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let restored = Call::post(&format!("/api/v1/projects/{id}/restore"))
        .send(&app)
        .await;
    assert_eq!(restored.status, StatusCode::OK);
    assert_eq!(restored.value()["version"], 4);
    assert_eq!(stream_versions(&pool, &id).await, vec![1, 2, 3, 4]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_update_that_changes_nothing_appends_nothing(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let answer = Call::patch(&format!("/api/v1/projects/{id}"))
        .json(&json!({ "name": "Apollo" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.value()["version"], 1);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn commands_on_an_unknown_project_are_404(pool: PgPool) {
    let app = app(&pool);
    let id = "0195a7d4-1c2b-7def-8000-0000000000bb";
    for call in [
        Call::patch(&format!("/api/v1/projects/{id}")).json(&json!({ "name": "x" })),
        Call::post(&format!("/api/v1/projects/{id}/archive")),
        Call::post(&format!("/api/v1/projects/{id}/restore")),
    ] {
        let answer = call.send(&app).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.value()["type"], "/problems/not-found");
    }
    assert_eq!(event_count(&pool).await, 0);
}
