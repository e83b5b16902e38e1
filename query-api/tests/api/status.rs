//! The public status page and service histories: overall status, public caching, ETag from
//! the checkpoint, pagination newest first, and bad input.

use axum::http::StatusCode;
use events::LogPosition;
use sqlx::PgPool;

// The status page is public: it is read as an anonymous client reads it.
use crate::helpers::{at, bare_app as app, get, get_with, set_checkpoint};

const CACHE: &str = "public, max-age=5, stale-while-revalidate=30";

/// Inserts a report into the history and makes it the service's latest when it is the newest.
async fn report(pool: &PgPool, service_id: &str, version: i64, status: &str, minutes: i64) {
    sqlx::query(
        "INSERT INTO service_status_history (service_id, version, status, description, created_at) \
         VALUES ($1, $2, $3, 'note', $4)",
    )
    .bind(service_id)
    .bind(version)
    .bind(status)
    .bind(at(minutes))
    .execute(pool)
    .await
    .expect("history row");
    sqlx::query(
        "INSERT INTO service_status_latest (service_id, status, description, updated_at, version) \
         VALUES ($1, $2, 'note', $3, $4) \
         ON CONFLICT (service_id) DO UPDATE SET status = EXCLUDED.status, \
             updated_at = EXCLUDED.updated_at, version = EXCLUDED.version \
          WHERE service_status_latest.version < EXCLUDED.version",
    )
    .bind(service_id)
    .bind(status)
    .bind(at(minutes))
    .bind(version)
    .execute(pool)
    .await
    .expect("latest row");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn with_no_services_the_overall_status_is_operational(pool: PgPool) {
    let app = app(&pool).await;
    let answer = get(&app, "/api/v1/status").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        serde_json::json!({ "overall": "operational", "services": [] })
    );
    assert_eq!(
        answer
            .header("cache-control")
            .expect("cache-control header"),
        CACHE
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_overall_status_is_the_worst_service_status(pool: PgPool) {
    report(&pool, "api", 1, "operational", 0).await;
    report(&pool, "db", 1, "under_maintenance", 1).await;
    let app = app(&pool).await;
    assert_eq!(
        get(&app, "/api/v1/status").await.json()["overall"],
        "under_maintenance"
    );
    report(&pool, "web", 1, "degraded_performance", 2).await;
    assert_eq!(
        get(&app, "/api/v1/status").await.json()["overall"],
        "degraded_performance"
    );
    report(&pool, "api", 2, "major_outage", 3).await;
    report(&pool, "db", 2, "partial_outage", 4).await;
    let page = get(&app, "/api/v1/status").await.json();
    assert_eq!(page["overall"], "major_outage");
    assert_eq!(
        page["services"][0],
        serde_json::json!({ "service_id": "api", "status": "major_outage",
                            "description": "note", "updated_at": "2026-01-01T12:03:00Z" })
    );
    assert_eq!(page["services"].as_array().map(Vec::len), Some(3));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_status_page_etag_follows_the_checkpoint_and_answers_304(pool: PgPool) {
    report(&pool, "api", 1, "operational", 0).await;
    set_checkpoint(
        &pool,
        "service_status",
        LogPosition {
            tx_id: 3,
            position: 1,
        },
    )
    .await;
    let app = app(&pool).await;
    let first = get(&app, "/api/v1/status").await;
    let etag = first.header("etag").expect("etag header").to_owned();
    let cached = get_with(&app, "/api/v1/status", &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.header("etag").expect("etag header"), etag);
    assert_eq!(
        cached
            .header("cache-control")
            .expect("cache-control header"),
        CACHE
    );
    assert!(cached.body.is_empty());

    set_checkpoint(
        &pool,
        "service_status",
        LogPosition {
            tx_id: 4,
            position: 2,
        },
    )
    .await;
    let moved = get_with(&app, "/api/v1/status", &[("if-none-match", &etag)]).await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.header("etag").expect("etag header"), etag);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_history_is_paginated_newest_first(pool: PgPool) {
    for (version, status) in ["operational", "major_outage", "partial_outage"]
        .iter()
        .enumerate()
    {
        let version = i64::try_from(version).expect("small") + 1;
        report(&pool, "api", version, status, version).await;
    }
    report(&pool, "db", 1, "operational", 9).await;
    let app = app(&pool).await;
    let uri = "/api/v1/status/services/api/history?page_size=2";
    let first = get(&app, uri).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.header("cache-control").expect("cache-control header"),
        CACHE
    );
    let body = first.json();
    assert_eq!(body["total"], 3);
    assert_eq!(body["pages"], 2);
    assert_eq!(
        body["items"],
        serde_json::json!([
            { "status": "partial_outage", "description": "note", "created_at": "2026-01-01T12:03:00Z" },
            { "status": "major_outage", "description": "note", "created_at": "2026-01-01T12:02:00Z" },
        ])
    );
    assert!(
        first
            .header("link")
            .expect("link header")
            .contains("</api/v1/status/services/api/history?page=2&page_size=2>; rel=\"next\"")
    );
    let second = get(
        &app,
        "/api/v1/status/services/api/history?page=2&page_size=2",
    )
    .await;
    assert_eq!(second.json()["items"][0]["status"], "operational");
    let cached = get_with(
        &app,
        uri,
        &[("if-none-match", first.header("etag").expect("etag header"))],
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_unknown_service_has_an_empty_history(pool: PgPool) {
    let app = app(&pool).await;
    let answer = get(&app, "/api/v1/status/services/never-reported/history").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["items"], serde_json::json!([]));
    assert_eq!(answer.json()["total"], 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_service_id_or_page_is_refused_without_500(pool: PgPool) {
    let app = app(&pool).await;
    let long = "a".repeat(65);
    for service_id in ["API", "a_b", "%00", "caf%C3%A9", long.as_str()] {
        let body = get(
            &app,
            &format!("/api/v1/status/services/{service_id}/history"),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"][0]["field"], "service_id", "{service_id}");
    }
    let body = get(&app, "/api/v1/status/services/api/history?page=0")
        .await
        .problem(StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], "page");
    get_with(
        &app,
        "/api/v1/status",
        &[("x-consistency-token", "garbage")],
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
}
