//! The shared plumbing routes (`/healthz`, `/readyz`, `/metrics`), the problem+json fallback
//! for unknown routes, and the methods the query API refuses.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sqlx::PgPool;

use crate::helpers::{app, get, send};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_plumbing_routes_answer(pool: PgPool) {
    let app = app(&pool).await;

    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/metrics").await.status, StatusCode::OK);
    get(&app, "/api/v1/nowhere")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn only_get_and_head_are_served(pool: PgPool) {
    let app = app(&pool).await;

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let request = Request::builder()
            .method(method)
            .uri("/api/v1/projects")
            .body(Body::empty())
            .expect("valid request");
        let answer = send(&app, request).await;
        answer.problem(StatusCode::METHOD_NOT_ALLOWED);
    }
}
