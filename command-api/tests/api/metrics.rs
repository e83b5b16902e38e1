//! `/metrics` after real traffic: every family catalogued in docs/metrics.md with its type,
//! labels and HELP, nothing unprefixed, and `promtool check metrics` clean.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use test_support::exposition::{assert_catalogued, value};

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn metrics_match_the_catalogue_after_commands(pool: PgPool) {
    let app = app(&pool);
    for _ in 0..2 {
        let answer = Call::post("/api/v1/projects")
            .header("idempotency-key", "metrics-scrape-1")
            .json(&json!({ "name": "Scraped" }))
            .send(&app)
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    }
    let missing = Call::get("/no/such/route").send(&app).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let scrape = Call::get("/metrics").send(&app).await;
    assert_eq!(scrape.status, StatusCode::OK);
    let text = scrape.text();
    assert_catalogued(&text);

    let at_least_one = |name: &str, labels: &[(&str, &str)]| {
        let found = value(&text, name, labels);
        assert!(
            found.is_some_and(|v| v >= 1.0),
            "{name} {labels:?}: {found:?}\n{text}"
        );
    };
    let project = ("aggregate_type", "Project");
    at_least_one("chronicle_commands_total", &[project, ("outcome", "ok")]);
    at_least_one(
        "chronicle_commands_total",
        &[project, ("outcome", "replayed")],
    );
    at_least_one("chronicle_events_appended_total", &[project]);
    at_least_one(
        "chronicle_idempotency_requests_total",
        &[("result", "first")],
    );
    at_least_one(
        "chronicle_idempotency_requests_total",
        &[("result", "replayed")],
    );
    let created = [
        ("service", "command-api"),
        ("method", "POST"),
        ("route", "/api/v1/projects"),
        ("status", "201"),
    ];
    at_least_one("chronicle_http_requests_total", &created);
    at_least_one("chronicle_http_request_duration_seconds_count", &created);
    at_least_one(
        "chronicle_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    );
    at_least_one(
        "chronicle_db_query_duration_seconds_count",
        &[("service", "command-api"), ("operation", "INSERT")],
    );
    at_least_one(
        "chronicle_db_pool_max_connections",
        &[("service", "command-api")],
    );
    assert!(
        value(
            &text,
            "chronicle_db_pool_connections",
            &[("service", "command-api"), ("state", "idle")]
        )
        .is_some(),
        "{text}"
    );
}
