//! The `/api/v1` routes, one module per resource, merged here with their OpenAPI paths. The
//! list and item flow they share lives in [`crate::read`].

pub mod analytics;
pub mod audit;
pub mod community;
pub mod projections;
pub mod projects;
pub mod status;
pub mod support;

use std::sync::Arc;

use axum::Json;
use axum::response::IntoResponse as _;
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::openapi::ApiDoc;
use crate::state::AppState;

/// The prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";

/// Every documented route under `/api/v1`, with its OpenAPI paths.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        API_PREFIX,
        OpenApiRouter::new()
            .merge(projects::router())
            .merge(support::router())
            .merge(community::router())
            .merge(status::router())
            .merge(analytics::router())
            .merge(audit::router())
            .merge(projections::router()),
    )
}

/// The API routes plus `GET /api/v1/openapi.json`, bound to `state` (without the shared
/// plumbing; see [`crate::router`]).
pub fn router(state: AppState) -> axum::Router {
    let (routes, document) = api().split_for_parts();
    // Built once: the document cannot change while the process runs.
    let document = Arc::new(document);
    routes
        .route(
            &format!("{API_PREFIX}/openapi.json"),
            get(move || {
                let document = Arc::clone(&document);
                async move { Json(document.as_ref()).into_response() }
            }),
        )
        .with_state(state)
}
