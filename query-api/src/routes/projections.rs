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
    OpenApiRouter::new().routes(routes!(list_projections))
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
    // The catalogue's source map travels as two parallel arrays, one (name, aggregate type)
    // pair per element, so that one statement serves every projection. A checkpoint missing
    // from it (the relay, a shadow) counts every event.
    let (names, types): (Vec<&str>, Vec<&str>) = event_store::catalogue::READ_MODELS
        .iter()
        .flat_map(|model| model.sources.iter().map(move |t| (model.name, *t)))
        .unzip();
    // "After the checkpoint" is in commit order, (tx_id, global_position), like the projector
    // reads; events of transactions still running are invisible here and not yet lag.
    sqlx::query_as(
        "WITH sources AS (SELECT * FROM unnest($1::text[], $2::text[]) AS s(name, aggregate_type)) \
         SELECT c.name, c.position AS checkpoint, lag.lag_events, lag.lag_seconds, c.state, \
                c.last_error, c.events_applied, c.updated_at \
           FROM projection_checkpoints c \
          CROSS JOIN LATERAL ( \
                SELECT count(*) AS lag_events, \
                       COALESCE(GREATEST(EXTRACT(EPOCH FROM now() - min(e.recorded_at)), 0), 0)::float8 \
                           AS lag_seconds \
                  FROM events e \
                 WHERE (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position) \
                   AND (NOT EXISTS (SELECT 1 FROM sources s WHERE s.name = c.name) \
                        OR e.aggregate_type IN \
                           (SELECT s.aggregate_type FROM sources s WHERE s.name = c.name)) \
                ) lag \
          ORDER BY c.name",
    )
    .bind(names)
    .bind(types)
    .fetch_all(pool)
    .await
}

/// Lists the projections with their checkpoints and lag.
#[utoipa::path(
    get,
    path = "/projections",
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
