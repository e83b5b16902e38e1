//! One module per resource, each owning its router and handlers.

pub mod analytics;
pub mod community;
pub mod csp;
pub mod projects;
pub mod status;
pub mod support;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every command route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(projects::router())
        .merge(analytics::router())
        .merge(support::router())
        .merge(community::router())
        .merge(status::router())
        .merge(csp::router())
}
