//! Guarantee 5: bad input never yields 500 and never writes anything.

use axum::http::StatusCode;
use command_api::Hooks;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

async fn nothing_written(pool: &PgPool, before: i64) {
    assert_eq!(event_count(pool).await, before, "events were written");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "idempotency records were written");
}

fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{:?}", answer.value());
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.value()["status"], status.as_u16());
    assert!(
        answer.value()["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(
        answer.value()["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/"))
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_create_bodies_get_problems_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let long = "n".repeat(121);
    let cases: Vec<(Call, StatusCode)> = vec![
        (
            Call::post("/api/v1/projects").raw("application/json", "{\"name\": "),
            StatusCode::BAD_REQUEST,
        ),
        (
            Call::post("/api/v1/projects").raw("application/json", "not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": 42 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": "a", "color": "red" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": long })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": "   " })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": "a\u{0}b" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": "ok", "description": "x\u{0}" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects")
                .json(&json!({ "name": "ok", "description": "d".repeat(2001) })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "id": "not-a-uuid", "name": "ok" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!({ "name": "ok", "owner_id": 7 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").json(&json!(["name"])),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects").raw("text/plain", "{\"name\":\"a\"}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Call::post("/api/v1/projects"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Call::post("/api/v1/projects")
                .header("idempotency-key", &"k".repeat(256))
                .json(&json!({ "name": "ok" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects")
                .header("idempotency-key", "has space")
                .json(&json!({ "name": "ok" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (call, status) in cases {
        let answer = call.send(&app).await;
        assert_problem(&answer, status);
    }
    nothing_written(&pool, 0).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn validation_problems_name_every_invalid_field(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::post("/api/v1/projects")
        .json(&json!({ "name": "", "description": "d".repeat(2001) }))
        .send(&app)
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.value();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "description"]);
    assert_eq!(answer.value()["detail"], "2 fields are invalid");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn oversized_bodies_are_413(pool: PgPool) {
    let mut settings = settings();
    settings.body_limit = 1024;
    let app = app_with(&pool, settings, Hooks::default());
    let answer = Call::post("/api/v1/projects")
        .json(&json!({ "name": "ok", "description": "d".repeat(4096) }))
        .send(&app)
        .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE);
    nothing_written(&pool, 0).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_changes_to_an_existing_project_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let path = format!("/api/v1/projects/{id}");
    let cases: Vec<(Call, StatusCode)> = vec![
        (
            Call::patch(&path).json(&json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch(&path).json(&json!({ "name": "" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch(&path).json(&json!({ "name": "x", "archived": true })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch(&path).json(&json!({ "name": "x\u{0}" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch(&path)
                .header("if-match", "\"abc\"")
                .json(&json!({ "name": "x" })),
            StatusCode::BAD_REQUEST,
        ),
        // The document's If-Match pattern, exactly: no sign, no half quotes, at most 18 digits.
        (
            Call::patch(&path)
                .header("if-match", "+1")
                .json(&json!({ "name": "x" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Call::patch(&path)
                .header("if-match", "\"1")
                .json(&json!({ "name": "x" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            Call::patch(&path)
                .header("if-match", "0000000000000000001")
                .json(&json!({ "name": "x" })),
            StatusCode::BAD_REQUEST,
        ),
        // A partial update leaves a field out to keep it: `null` is refused, not "absent".
        (
            Call::patch(&path).json(&json!({ "name": null })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch(&path).json(&json!({ "name": "x", "description": null })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::patch("/api/v1/projects/not-a-uuid").json(&json!({ "name": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects/not-a-uuid/archive"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/projects/0195a7d4-1c2b-7def-8000-0000000000ee/restore"),
            StatusCode::NOT_FOUND,
        ),
        (Call::post("/api/v1/nowhere"), StatusCode::NOT_FOUND),
        (
            Call::new(axum::http::Method::PUT, &path).json(&json!({ "name": "x" })),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (call, status) in cases {
        let answer = call.send(&app).await;
        assert_problem(&answer, status);
    }
    nothing_written(&pool, 1).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_post_edit_refuses_null_fields_as_its_schema_does(pool: PgPool) {
    let app = app(&pool);
    let id = create(
        &app,
        "/api/v1/community/posts",
        &json!({ "title": "T", "content": "C", "author": "A" }),
    )
    .await;
    let path = format!("/api/v1/community/posts/{id}");
    for body in [
        json!({ "title": null }),
        json!({ "content": null }),
        json!({ "title": "T2", "content": null }),
    ] {
        let answer = Call::patch(&path).json(&body).send(&app).await;
        assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    }
    nothing_written(&pool, 1).await;
    let answer = Call::patch(&path)
        .json(&json!({ "title": "T2" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.value());
}
