//! Support ticket commands end to end: answers, lifecycle rules, If-Match, idempotency, stored
//! events and metadata, and bad input that writes nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

fn ticket() -> Value {
    json!({ "email": " ada@example.com ", "subject": " Login fails ", "message": "Since\nmorning" })
}

async fn open(app: &axum::Router) -> String {
    create(app, "/api/v1/support/tickets", &ticket()).await
}

async fn move_to(app: &axum::Router, id: &str, status: &str) -> Answer {
    Call::post(&format!("/api/v1/support/tickets/{id}/status"))
        .json(&json!({ "status": status }))
        .send(app)
        .await
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn opening_a_ticket_answers_201_and_records_it_with_metadata(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::post("/api/v1/support/tickets")
        .json(&ticket())
        .header("x-request-id", "req-ticket")
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    let body = answer.value();
    let id = body["id"].as_str().unwrap();
    assert_eq!(answer.value()["version"], 1);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/support/tickets/{id}").as_str())
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert!(answer.header("x-consistency-token").is_some());

    let events = stream(&pool, "SupportTicket", id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "TicketOpened");
    assert_eq!(
        events[0].2["TicketOpened"],
        json!({
            "email": "ada@example.com",
            "subject": "Login fails",
            "message": "Since\nmorning",
            "submitter_id": tester().id,
        })
    );
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata::jsonb FROM events WHERE aggregate_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(metadata["request_id"], "req-ticket");
    assert_eq!(metadata["actor"], tester().id.to_string());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_ticket_walks_its_lifecycle_including_a_reopen(pool: PgPool) {
    let app = app(&pool);
    let id = open(&app).await;
    let mut version = 1;
    for status in [
        "in_progress",
        "resolved",
        "open",
        "in_progress",
        "resolved",
        "closed",
    ] {
        let answer = move_to(&app, &id, status).await;
        version += 1;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{status}: {:?}",
            answer.value()
        );
        assert_eq!(answer.value()["version"], version);
        assert_eq!(
            answer.header("etag"),
            Some(format!("\"{version}\"").as_str())
        );
    }
    let events = stream(&pool, "SupportTicket", &id).await;
    assert_eq!(events.len(), 7);
    assert_eq!(
        events[3].2["TicketStatusChanged"],
        json!({ "from": "resolved", "to": "open" })
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_closed_ticket_cannot_be_closed_again(pool: PgPool) {
    let app = app(&pool);
    let id = open(&app).await;
    for status in ["in_progress", "resolved", "closed"] {
        assert_eq!(move_to(&app, &id, status).await.status, StatusCode::OK);
    }
    let before = event_count(&pool).await;
    let again = move_to(&app, &id, "closed").await;
    assert_problem(&again, StatusCode::CONFLICT);
    assert_eq!(event_count(&pool).await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn moves_outside_the_lifecycle_are_conflicts_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let id = open(&app).await;
    for status in ["open", "resolved", "closed"] {
        let answer = move_to(&app, &id, status).await;
        assert_problem(&answer, StatusCode::CONFLICT);
    }
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_unknown_status_value_is_a_validation_error_naming_status(pool: PgPool) {
    let app = app(&pool);
    let id = open(&app).await;
    for status in ["done", "OPEN", "in progress", "", "open\u{0}"] {
        let answer = move_to(&app, &id, status).await;
        assert_invalid_field(&answer, "status");
    }
    let wrong_type = Call::post(&format!("/api/v1/support/tickets/{id}/status"))
        .json(&json!({ "status": 3 }))
        .send(&app)
        .await;
    assert_problem(&wrong_type, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn changing_the_status_of_an_unknown_or_malformed_ticket_fails_cleanly(pool: PgPool) {
    let app = app(&pool);
    let unknown = move_to(&app, "0195a7d4-1c2b-7def-8000-0000000000ff", "in_progress").await;
    assert_problem(&unknown, StatusCode::NOT_FOUND);
    let malformed = move_to(&app, "not-a-uuid", "in_progress").await;
    assert_invalid_field(&malformed, "id");
    nothing_written(&pool, 0).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_client_generated_ticket_id_cannot_be_opened_twice(pool: PgPool) {
    let app = app(&pool);
    let id = "0195a7d4-1c2b-7def-8000-0000000000ab";
    let mut body = ticket();
    body["id"] = json!(id);
    let first = Call::post("/api/v1/support/tickets")
        .json(&body)
        .send(&app)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.value()["id"], id);
    let second = Call::post("/api/v1/support/tickets")
        .json(&body)
        .send(&app)
        .await;
    assert_problem(&second, StatusCode::CONFLICT);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stale_if_match_on_a_status_change_gets_412_with_the_current_version(pool: PgPool) {
    let app = app(&pool);
    let id = open(&app).await;
    assert_eq!(
        move_to(&app, &id, "in_progress").await.status,
        StatusCode::OK
    );
    let stale = Call::post(&format!("/api/v1/support/tickets/{id}/status"))
        .header("if-match", "\"1\"")
        .json(&json!({ "status": "resolved" }))
        .send(&app)
        .await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.value()["current_version"], 2);
    let fresh = Call::post(&format!("/api/v1/support/tickets/{id}/status"))
        .header("if-match", "\"2\"")
        .json(&json!({ "status": "resolved" }))
        .send(&app)
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.value()["version"], 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_repeated_open_with_the_same_key_is_replayed_and_appended_once(pool: PgPool) {
    let app = app(&pool);
    let first = Call::post("/api/v1/support/tickets")
        .header("idempotency-key", "ticket-1")
        .json(&ticket())
        .send(&app)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = Call::post("/api/v1/support/tickets")
        .header("idempotency-key", "ticket-1")
        .json(&ticket())
        .send(&app)
        .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.value(), first.value());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.header("location"), first.header("location"));
    assert_eq!(event_count(&pool).await, 1);
    let other = Call::post("/api/v1/support/tickets")
        .header("idempotency-key", "ticket-1")
        .json(&json!({ "email": "b@example.com", "subject": "s", "message": "m" }))
        .send(&app)
        .await;
    assert_problem(&other, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_ticket_bodies_name_their_field_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let ok = |field: &str, value: Value| {
        let mut body = json!({ "email": "ada@example.com", "subject": "s", "message": "m" });
        body[field] = value;
        body
    };
    let long_email = format!("{}@example.com", "a".repeat(250));
    let cases: Vec<(Value, &str)> = vec![
        (ok("email", json!("not-an-email")), "email"),
        (ok("email", json!("ada@example")), "email"),
        (ok("email", json!(long_email)), "email"),
        (ok("email", json!("ada\u{0}@example.com")), "email"),
        (ok("subject", json!("   ")), "subject"),
        (ok("subject", json!("s".repeat(201))), "subject"),
        (ok("subject", json!("a\u{0}b")), "subject"),
        (ok("subject", json!("two\nlines")), "subject"),
        (ok("message", json!("")), "message"),
        (ok("message", json!("m".repeat(10_001))), "message"),
        (ok("message", json!("nul\u{0}")), "message"),
    ];
    for (body, field) in cases {
        let answer = Call::post("/api/v1/support/tickets")
            .header("idempotency-key", "bad")
            .json(&body)
            .send(&app)
            .await;
        assert_invalid_field(&answer, field);
    }
    let shapes: Vec<(Call, StatusCode)> = vec![
        (
            Call::post("/api/v1/support/tickets").raw("application/json", "{\"email\": "),
            StatusCode::BAD_REQUEST,
        ),
        (
            Call::post("/api/v1/support/tickets")
                .json(&json!({ "email": 1, "subject": "s", "message": "m" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/support/tickets")
                .json(&json!({ "email": "a@b.co", "subject": "s" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/support/tickets")
                .json(&json!({ "email": "a@b.co", "subject": "s", "message": "m", "priority": 1 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/support/tickets")
                .json(&json!({ "id": "nope", "email": "a@b.co", "subject": "s", "message": "m" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Call::post("/api/v1/support/tickets").raw("text/plain", "hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Call::new(Method::PUT, "/api/v1/support/tickets").json(&ticket()),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (call, status) in shapes {
        let answer = call.header("idempotency-key", "bad").send(&app).await;
        assert_problem(&answer, status);
    }
    nothing_written(&pool, 0).await;
}
