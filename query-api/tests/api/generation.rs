//! A rebuild swap bumps the checkpoint's `generation` and may change rows without moving the
//! checkpoint: every checkpoint-derived ETag (lists, the status page, the analytics summary)
//! must change with it, so no old tag keeps getting 304 for rows it never saw.

use axum::http::StatusCode;
use events::LogPosition;
use sqlx::PgPool;

use crate::helpers::{app, get, get_with, insert_project, project, set_checkpoint};

/// What the rebuild swap does to the checkpoint row: same position, next generation.
async fn bump_generation(pool: &PgPool, projection: &str) {
    sqlx::query("UPDATE projection_checkpoints SET generation = generation + 1 WHERE name = $1")
        .bind(projection)
        .execute(pool)
        .await
        .expect("generation bumped");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_generation_bump_changes_every_checkpoint_derived_etag(pool: PgPool) {
    insert_project(&pool, &project("Apollo")).await;
    let at = LogPosition {
        tx_id: 10,
        position: 1,
    };
    for projection in ["projects", "service_status", "analytics_daily"] {
        set_checkpoint(&pool, projection, at).await;
    }
    let app = app(&pool).await;
    let uris = [
        ("projects", "/api/v1/projects"),
        ("service_status", "/api/v1/status"),
        ("service_status", "/api/v1/status/services/api/history"),
        (
            "analytics_daily",
            "/api/v1/analytics/summary?from=2026-01-01&to=2026-01-31",
        ),
    ];
    let mut tags = Vec::new();
    for (_, uri) in uris {
        let first = get(&app, uri).await;
        assert_eq!(first.status, StatusCode::OK, "{uri}");
        let tag = first.header("etag").expect("etag header").to_owned();
        let cached = get_with(&app, uri, &[("if-none-match", &tag)]).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED, "{uri}");
        tags.push(tag);
    }

    for projection in ["projects", "service_status", "analytics_daily"] {
        bump_generation(&pool, projection).await;
    }

    for ((_, uri), old) in uris.iter().zip(&tags) {
        let after = get_with(&app, uri, &[("if-none-match", old)]).await;
        assert_eq!(
            after.status,
            StatusCode::OK,
            "{uri}: the old tag still matched"
        );
        assert_ne!(after.header("etag").expect("etag header"), old, "{uri}");
    }
}
