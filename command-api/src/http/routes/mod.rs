//! One module per resource, each owning its router and handlers.

pub mod projects;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every command route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(projects::router())
}
