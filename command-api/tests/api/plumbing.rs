//! What every command shares: health, readiness and metrics routes, the audit trail's client
//! address, and the request deadline.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn health_readiness_and_metrics_answer(pool: PgPool) {
    let app = app(&pool);
    create_project(&app, "Apollo").await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            Call::new(axum::http::Method::GET, path)
                .send(&app)
                .await
                .status,
            StatusCode::OK
        );
    }
    let metrics = Call::new(axum::http::Method::GET, "/metrics")
        .send(&app)
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(pool: PgPool) {
    let forwarded = |app: axum::Router, name: &'static str| async move {
        Call::post("/api/v1/projects")
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .json(&json!({ "name": name }))
            .send(&app)
            .await
    };
    forwarded(app(&pool), "direct").await;
    let mut trusting = settings();
    trusting.trust_forwarded_for = true;
    forwarded(
        app_with(&pool, trusting, command_api::Hooks::default()),
        "proxied",
    )
    .await;

    let ips: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT payload->'ProjectCreated'->>'name', metadata->>'ip' FROM events ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // In-process calls have no socket address; only the trusting instance reads the header.
    assert_eq!(
        ips,
        vec![
            ("direct".to_owned(), None),
            ("proxied".to_owned(), Some("203.0.113.9".to_owned())),
        ]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_command_past_its_deadline_answers_503_and_writes_nothing(pool: PgPool) {
    let mut expired = settings();
    expired.request_timeout = std::time::Duration::ZERO;
    let app = app_with(&pool, expired, command_api::Hooks::default());
    let answer = Call::post("/api/v1/projects")
        .header("idempotency-key", "late-1")
        .json(&json!({ "name": "Apollo" }))
        .send(&app)
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.value()
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(event_count(&pool).await, 0);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "the claim is released");
}
