//! Community post commands end to end: publish, edit, delete, nothing after delete, If-Match,
//! idempotency, and bad input that writes nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

fn post() -> Value {
    json!({ "title": " Hello ", "content": "First\npost", "author": " ada " })
}

async fn publish(app: &axum::Router) -> String {
    create(app, "/api/v1/community/posts", &post()).await
}

fn delete(id: &str) -> Call {
    Call::new(Method::DELETE, &format!("/api/v1/community/posts/{id}"))
}

fn edit(id: &str, body: &Value) -> Call {
    Call::patch(&format!("/api/v1/community/posts/{id}")).json(body)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn publishing_a_post_answers_201_with_location_and_records_trimmed_values(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::post("/api/v1/community/posts")
        .json(&post())
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    let body = answer.value();
    let id = body["id"].as_str().unwrap();
    assert_eq!(answer.value()["version"], 1);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/community/posts/{id}").as_str())
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    let events = stream(&pool, "CommunityPost", id).await;
    assert_eq!(events[0].1, "PostPublished");
    assert_eq!(
        events[0].2["PostPublished"],
        json!({
            "title": "Hello",
            "content": "First\npost",
            "author": "ada",
            "author_id": tester().id,
        })
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_edit_records_what_changed_and_a_no_op_edit_records_nothing(pool: PgPool) {
    let app = app(&pool);
    let id = publish(&app).await;
    let changed = edit(&id, &json!({ "content": "Edited" })).send(&app).await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.value());
    assert_eq!(changed.value()["version"], 2);
    let same = edit(&id, &json!({ "title": "Hello" })).send(&app).await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.value()["version"], 2);
    let events = stream(&pool, "CommunityPost", &id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].2["PostEdited"],
        json!({ "title": null, "content": "Edited" })
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn nothing_is_accepted_after_a_delete(pool: PgPool) {
    let app = app(&pool);
    let id = publish(&app).await;
    let deleted = delete(&id).send(&app).await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.value());
    assert_eq!(deleted.value()["version"], 2);
    assert_problem(&delete(&id).send(&app).await, StatusCode::CONFLICT);
    assert_problem(
        &edit(&id, &json!({ "title": "Back" })).send(&app).await,
        StatusCode::CONFLICT,
    );
    let mut again = post();
    again["id"] = json!(id);
    assert_problem(
        &Call::post("/api/v1/community/posts")
            .json(&again)
            .send(&app)
            .await,
        StatusCode::CONFLICT,
    );
    assert_eq!(event_count(&pool).await, 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn editing_or_deleting_an_unknown_or_malformed_post_fails_cleanly(pool: PgPool) {
    let app = app(&pool);
    let unknown = "0195a7d4-1c2b-7def-8000-0000000000ee";
    assert_problem(&delete(unknown).send(&app).await, StatusCode::NOT_FOUND);
    assert_problem(
        &edit(unknown, &json!({ "title": "x" })).send(&app).await,
        StatusCode::NOT_FOUND,
    );
    assert_invalid_field(&delete("42").send(&app).await, "id");
    assert_invalid_field(&edit("42", &json!({ "title": "x" })).send(&app).await, "id");
    nothing_written(&pool, 0).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stale_if_match_on_delete_gets_412_and_deletes_nothing(pool: PgPool) {
    let app = app(&pool);
    let id = publish(&app).await;
    assert_eq!(
        edit(&id, &json!({ "title": "Two" }))
            .send(&app)
            .await
            .status,
        StatusCode::OK
    );
    let stale = delete(&id).header("if-match", "\"1\"").send(&app).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.value()["current_version"], 2);
    assert_eq!(event_count(&pool).await, 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_repeated_delete_with_the_same_key_is_replayed_not_refused(pool: PgPool) {
    let app = app(&pool);
    let id = publish(&app).await;
    let first = delete(&id)
        .header("idempotency-key", "del-1")
        .send(&app)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = delete(&id)
        .header("idempotency-key", "del-1")
        .send(&app)
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.value(), first.value());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(event_count(&pool).await, 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_post_bodies_name_their_field_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let with = |field: &str, value: Value| {
        let mut body = json!({ "title": "t", "content": "c", "author": "a" });
        body[field] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("title", json!("")), "title"),
        (with("title", json!("t".repeat(201))), "title"),
        (with("title", json!("t\u{0}")), "title"),
        (with("content", json!("  ")), "content"),
        (with("content", json!("c".repeat(20_001))), "content"),
        (with("content", json!("c\u{0}")), "content"),
        (with("author", json!("a".repeat(81))), "author"),
        (with("author", json!("a\u{0}")), "author"),
    ];
    for (body, field) in cases {
        let answer = Call::post("/api/v1/community/posts")
            .header("idempotency-key", "bad")
            .json(&body)
            .send(&app)
            .await;
        assert_invalid_field(&answer, field);
    }
    for body in [
        json!({ "title": 1, "content": "c", "author": "a" }),
        json!({ "title": "t", "content": "c" }),
        json!({ "title": "t", "content": "c", "author": "a", "tags": [] }),
    ] {
        let answer = Call::post("/api/v1/community/posts")
            .json(&body)
            .send(&app)
            .await;
        assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    }
    nothing_written(&pool, 0).await;

    let id = publish(&app).await;
    let edits: Vec<(Value, &str)> = vec![
        (json!({}), "title"),
        (json!({ "title": "" }), "title"),
        (json!({ "content": "c".repeat(20_001) }), "content"),
        (json!({ "content": "\u{0}" }), "content"),
    ];
    for (body, field) in edits {
        assert_invalid_field(&edit(&id, &body).send(&app).await, field);
    }
    for body in [json!({ "author": "b" }), json!({ "title": ["x"] })] {
        assert_problem(
            &edit(&id, &body).send(&app).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    assert_eq!(event_count(&pool).await, 1);
}
