//! The `/api/v1` routes, one module per resource, merged here with their OpenAPI paths. The
//! list and item flow they share lives in [`crate::read`].

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod community;
pub mod projections;
pub mod projects;
pub mod status;
pub mod support;

use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Every documented route under `/api/v1`, with its OpenAPI paths. Each operation names its
/// whole path, prefix included, as the command API's do: a router nested under the prefix
/// would strip it from, and rebuild, the URI of every request.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(projects::router())
        .merge(support::router())
        .merge(community::router())
        .merge(status::router())
        .merge(analytics::router())
        .merge(audit::router())
        .merge(projections::router())
        .merge(auth::router())
        .merge(admin::router())
}

/// The operations anyone may call; a token they carry must still be valid.
pub const PUBLIC_OPERATIONS: &[(&str, &str)] = &[
    ("get", "/api/v1/community/posts"),
    ("get", "/api/v1/community/posts/{id}"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/status/services/{service_id}/history"),
    ("get", "/api/v1/auth/jwks.json"),
];

/// The API routes plus `GET /api/v1/openapi.json` (the one document of both APIs), bound to
/// `state` (without the shared plumbing, which also checks the bearer token; see
/// [`crate::router`]).
pub fn router(state: AppState) -> axum::Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route(
            service_kit::openapi::DOCUMENT_PATH,
            get(service_kit::openapi::serve_document),
        )
        .with_state(state)
}
