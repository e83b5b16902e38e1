//! Conflict answers a client can act on (FRONTEND.md, "Conflicts an offline client can
//! resolve"): every 409 names a stable `code`, and a 412 carries the resource as it is now.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// Asserts a 409 whose `code` is `code`, never stored by a cache, and returns its body.
fn conflict(answer: &Answer, code: &str) -> Value {
    let body = answer.problem(StatusCode::CONFLICT);
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    body
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_create_naming_a_taken_id_is_already_exists(pool: PgPool) {
    let app = app(&pool);
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({ "id": id, "name": "A" });
    let first = Call::post("/api/v1/projects").json(&body).send(&app).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = Call::post("/api/v1/projects")
        .json(&json!({ "id": id, "name": "B" }))
        .send(&app)
        .await;
    conflict(&again, "already_exists");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_update_of_an_archived_project_is_archived(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let archived = Call::post(&format!("/api/v1/projects/{id}/archive"))
        .send(&app)
        .await;
    assert_eq!(archived.status, StatusCode::OK);
    let update = Call::patch(&format!("/api/v1/projects/{id}"))
        .json(&json!({ "name": "Artemis" }))
        .send(&app)
        .await;
    conflict(&update, "archived");
    let again = Call::post(&format!("/api/v1/projects/{id}/archive"))
        .send(&app)
        .await;
    let body = conflict(&again, "invalid_transition");
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str()),
        (Some("archived"), Some("archived"))
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_move_outside_the_ticket_lifecycle_is_invalid_transition_with_from_and_to(pool: PgPool) {
    let app = app(&pool);
    let id = create(
        &app,
        "/api/v1/support/tickets",
        &json!({ "email": "ada@example.com", "subject": "Broken", "message": "It broke." }),
    )
    .await;
    let answer = Call::post(&format!("/api/v1/support/tickets/{id}/status"))
        .json(&json!({ "status": "closed" }))
        .send(&app)
        .await;
    let body = conflict(&answer, "invalid_transition");
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str()),
        (Some("open"), Some("closed"))
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_edit_of_a_deleted_post_is_deleted(pool: PgPool) {
    let app = app(&pool);
    let id = create(
        &app,
        "/api/v1/community/posts",
        &json!({ "title": "Hello", "content": "First post", "author": "ada" }),
    )
    .await;
    let path = format!("/api/v1/community/posts/{id}");
    let deleted = Call::delete(&path).send(&app).await;
    assert_eq!(deleted.status, StatusCode::OK);
    let edit = Call::patch(&path)
        .json(&json!({ "title": "Again" }))
        .send(&app)
        .await;
    conflict(&edit, "deleted");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_412_carries_the_current_version_and_the_project_as_it_is_now(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let path = format!("/api/v1/projects/{id}");
    let theirs = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({ "description": "theirs" }))
        .send(&app)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let mine = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({ "description": "mine" }))
        .send(&app)
        .await;
    let body = mine.problem(StatusCode::PRECONDITION_FAILED);
    assert_eq!(mine.header("cache-control"), Some("no-store"));
    assert_eq!(body["current_version"], 2);
    let current = &body["current"];
    assert_eq!(current["id"], id.as_str());
    assert_eq!(current["name"], "Apollo");
    assert_eq!(current["description"], "theirs");
    assert_eq!(current["version"], 2);
    assert_eq!(current["archived"], false);
    assert_eq!(current["owner_id"], tester().id.to_string());
    assert!(current["created_at"].is_string() && current["updated_at"].is_string());
    assert_eq!(
        stream_versions(&pool, &id).await,
        vec![1, 2],
        "mine wrote nothing"
    );
}
