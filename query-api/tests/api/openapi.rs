//! `GET /api/v1/openapi.json` and the shared plumbing routes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sqlx::PgPool;

use crate::helpers::{app, get, send};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_openapi_document_lists_every_path_and_the_problem_schema(pool: PgPool) {
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/openapi.json").await;

    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.json();
    assert!(
        document["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.")
    );
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{id}",
        "/api/v1/projections",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "missing {path}");
    }
    for schema in ["Project", "ProjectPage", "ProjectionStatus", "Problem"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "missing schema {schema}"
        );
    }
    let parameters = document["paths"]["/api/v1/projects"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    for name in ["page", "page_size", "owner_id", "archived", "q", "sort"] {
        assert!(
            parameters.iter().any(|p| p["name"] == name),
            "missing parameter {name}"
        );
    }
}

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
