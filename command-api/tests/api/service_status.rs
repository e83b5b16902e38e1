//! Service status reports end to end: one stream per service slug, every report recorded,
//! validation of the slug, status and description, If-Match and idempotency.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

fn report(service_id: &str) -> Call {
    Call::post(&format!("/api/v1/status/services/{service_id}/reports"))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_report_answers_201_with_the_service_id_and_its_history_as_location(pool: PgPool) {
    let app = app(&pool);
    let answer = report("api")
        .json(&json!({ "status": "degraded_performance", "description": " slow \n" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    assert_eq!(answer.value()["id"], "api");
    assert_eq!(answer.value()["version"], 1);
    assert_eq!(
        answer.header("location"),
        Some("/api/v1/status/services/api/history")
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert!(answer.value()["consistency_token"].is_string());
    let events = stream(&pool, "ServiceStatus", "api").await;
    assert_eq!(events[0].1, "StatusReported");
    assert_eq!(
        events[0].2["StatusReported"],
        json!({ "status": "degraded_performance", "description": "slow" })
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_report_extends_the_services_own_stream(pool: PgPool) {
    let app = app(&pool);
    for (n, status) in [
        "operational",
        "major_outage",
        "under_maintenance",
        "partial_outage",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = report("db")
            .json(&json!({ "status": status }))
            .send(&app)
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
        assert_eq!(answer.value()["version"], n + 1);
    }
    let other = report("web")
        .json(&json!({ "status": "operational" }))
        .send(&app)
        .await;
    assert_eq!(other.value()["version"], 1);
    assert_eq!(stream(&pool, "ServiceStatus", "db").await.len(), 4);
    assert_eq!(stream(&pool, "ServiceStatus", "web").await.len(), 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stale_if_match_on_a_report_gets_412(pool: PgPool) {
    let app = app(&pool);
    for _ in 0..2 {
        report("api")
            .json(&json!({ "status": "operational" }))
            .send(&app)
            .await;
    }
    let stale = report("api")
        .header("if-match", "\"1\"")
        .json(&json!({ "status": "major_outage" }))
        .send(&app)
        .await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.value()["current_version"], 2);
    assert_eq!(event_count(&pool).await, 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_repeated_report_with_the_same_key_is_recorded_once(pool: PgPool) {
    let app = app(&pool);
    let body = json!({ "status": "partial_outage" });
    let first = report("api")
        .header("idempotency-key", "r-1")
        .json(&body)
        .send(&app)
        .await;
    let replay = report("api")
        .header("idempotency-key", "r-1")
        .json(&body)
        .send(&app)
        .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.value(), first.value());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_service_id_is_a_validation_error_naming_service_id(pool: PgPool) {
    let app = app(&pool);
    let long = "a".repeat(65);
    for service_id in [
        "API",
        "eu_west",
        "a%20b",
        "%00",
        "caf%C3%A9",
        long.as_str(),
        "a.b",
    ] {
        let answer = report(service_id)
            .header("idempotency-key", "bad")
            .json(&json!({ "status": "operational" }))
            .send(&app)
            .await;
        assert_invalid_field(&answer, "service_id");
    }
    nothing_written(&pool, 0).await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_report_bodies_name_their_field_and_write_nothing(pool: PgPool) {
    let app = app(&pool);
    let fields = [
        (json!({ "status": "down" }), "status"),
        (json!({ "status": "Operational" }), "status"),
        (json!({ "status": "" }), "status"),
        (
            json!({ "status": "operational", "description": "d".repeat(2001) }),
            "description",
        ),
        (
            json!({ "status": "operational", "description": "nul\u{0}" }),
            "description",
        ),
    ];
    for (body, field) in fields {
        let answer = report("api")
            .header("idempotency-key", "bad")
            .json(&body)
            .send(&app)
            .await;
        assert_invalid_field(&answer, field);
    }
    for body in [
        json!({}),
        json!({ "status": 1 }),
        json!({ "status": "operational", "severity": 3 }),
        json!({ "status": "operational", "description": 5 }),
    ] {
        let answer = report("api").json(&body).send(&app).await;
        assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let malformed = report("api").raw("application/json", "{").send(&app).await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST);
    nothing_written(&pool, 0).await;
}
