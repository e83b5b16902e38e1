//! `GET /projections`: every projection's checkpoint and how far it lags behind the log.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::answers::Unavailable;
use crate::state::AppState;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    // Projection progress is for admins and auditors (ACCOUNTS.md, "Who may call what").
    OpenApiRouter::new()
        .routes(routes!(list_projections))
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_admin_or_auditor,
        ))
}

/// One projection's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The global position of the last event it applied (0 before the first).
    pub checkpoint: i64,
    /// How many events it reads lie after its checkpoint in commit order.
    pub lag_events: i64,
    /// Seconds since the oldest of those events was recorded; 0 when there are none.
    pub lag_seconds: f64,
    /// `running`, or whatever state the projector reports (e.g. `failed`, `rebuilding`).
    pub state: String,
    /// The last error the projector recorded, if any.
    pub last_error: Option<String>,
    /// How many events it has applied in all.
    pub events_applied: i64,
    /// When the checkpoint last moved (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

/// Reads every checkpoint with its lag, ordered by name.
///
/// # Errors
///
/// The database fails.
pub async fn projection_statuses(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    // The catalogue's source map, one (name, aggregate type) pair per source; the statement
    // lives with every other one on the checkpoint table (event_store::checkpoints).
    let sources: Vec<(&str, &str)> = event_store::catalogue::READ_MODELS
        .iter()
        .flat_map(|model| model.sources.iter().map(move |t| (model.name, *t)))
        .collect();
    let statuses = event_store::checkpoints::statuses(pool, &sources).await?;
    Ok(statuses
        .into_iter()
        .map(|status| ProjectionStatus {
            name: status.name,
            checkpoint: status.checkpoint,
            lag_events: status.lag_events,
            lag_seconds: status.lag_seconds,
            state: status.state,
            last_error: status.last_error,
            events_applied: status.events_applied,
            updated_at: status.updated_at,
        })
        .collect())
}

/// Lists the projections with their checkpoints and lag.
#[utoipa::path(
    get,
    path = "/api/v1/projections",
    tag = "projections",
    operation_id = "list_projections",
    responses(
        (status = 200, description = "Every projection, by name", body = Vec<ProjectionStatus>),
        Unavailable,
    )
)]
pub async fn list_projections(
    State(state): State<AppState>,
) -> Result<Json<Vec<ProjectionStatus>>, ApiError> {
    Ok(Json(projection_statuses(state.pool()).await?))
}
