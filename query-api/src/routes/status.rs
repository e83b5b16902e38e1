//! The public status page: `GET /status` (every service's latest status and the overall
//! status) and `GET /status/services/{service_id}/history` (a service's reports, newest
//! first, paginated).
//!
//! Both are public: asked anonymously and without a consistency token they are
//! `Cache-Control: public, max-age=5, stale-while-revalidate=30` ([`Audience`]), which lets
//! browsers and CDNs absorb a crowd refreshing during an incident at the price of a few seconds
//! of staleness, and the ETag (derived from the `service_status` checkpoint) makes
//! revalidation a 304 costing one primary-key read.
//!
//! The overall status is the worst service status, by the severity order of
//! [`ServiceHealth`]: `operational < under_maintenance < degraded_performance <
//! partial_outage < major_outage`; `operational` when no service has reported.
//!
//! A well-formed service id that never reported has an empty history (200 with `total: 0`),
//! not a 404: every slug names a stream that simply has no events yet, and answering the
//! same way for both keeps the endpoint from distinguishing "unknown" from "quiet".

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use events::status::ServiceHealth;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::checkpoint::Checkpoint;
use crate::consistency;
use crate::error::ApiError;
use crate::etag::{Audience, ETag, list_etag};
use crate::openapi::ReadHeaders;
use crate::openapi::answers::{InvalidPath, ListAnswers};
use crate::pagination::PageRequest;
use crate::read::page::{self, ListRequest, Page, ReadModel};
use crate::state::AppState;

/// The name of the projection (its `projection_checkpoints` row) that fills
/// `service_status_latest` and `service_status_history`.
pub const PROJECTION: &str = event_store::catalogue::SERVICE_STATUS.name;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status_page))
        .routes(routes!(service_history))
}

/// One service's latest status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct ServiceLatest {
    /// The service's slug.
    pub service_id: String,
    /// Its latest reported status.
    #[schema(
        pattern = "^(operational|under_maintenance|degraded_performance|partial_outage|major_outage)$"
    )]
    pub status: String,
    /// What the latest report said, if anything.
    pub description: Option<String>,
    /// When the latest report was recorded (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

/// The status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusPage {
    /// The worst status among the services (`operational` when there are none). Severity:
    /// operational < under_maintenance < degraded_performance < partial_outage < major_outage.
    #[schema(
        pattern = "^(operational|under_maintenance|degraded_performance|partial_outage|major_outage)$"
    )]
    pub overall: String,
    /// Every service that has reported, by service id.
    pub services: Vec<ServiceLatest>,
}

/// One report in a service's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct StatusReport {
    /// The reported status.
    pub status: String,
    /// What the report said, if anything.
    pub description: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
}

/// The query parameters of the history, as sent. Unknown parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Page number, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
}

/// The worst of `statuses`, `operational` when there are none.
///
/// # Errors
///
/// A stored status that is not a [`ServiceHealth`] (only a bug could write one).
pub fn overall<'a>(statuses: impl IntoIterator<Item = &'a str>) -> Result<ServiceHealth, ApiError> {
    statuses
        .into_iter()
        .map(|raw| {
            raw.parse::<ServiceHealth>()
                .map_err(|error| ApiError::Database(sqlx::Error::Decode(Box::new(error))))
        })
        .try_fold(ServiceHealth::Operational, |worst, health| {
            Ok(worst.max(health?))
        })
}

impl ReadModel for StatusReport {
    const PROJECTION: &'static str = PROJECTION;
    const TABLE: &'static str = "service_status_history";
    const COLUMNS: &'static str = "status, description, created_at";
    const PUBLIC: bool = true;
}

/// A checked history request: one service's reports, a page of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The service, a valid slug ([`events::status::ServiceId`]).
    pub service_id: String,
    /// The page.
    pub page: PageRequest,
}

impl ListRequest for HistoryRequest {
    type Item = StatusReport;

    fn page(&self) -> PageRequest {
        self.page
    }

    /// Newest first; the stream revision breaks ties between reports recorded in the same
    /// instant (and is the true order within a stream).
    fn order_by(&self) -> String {
        "created_at DESC, version DESC".to_owned()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        query
            .push(" AND service_id = ")
            .push_bind(self.service_id.clone());
    }

    /// The slug needs no encoding: it is [a-z0-9-] only.
    fn path(&self) -> Cow<'_, str> {
        Cow::Owned(format!(
            "/api/v1/status/services/{}/history",
            self.service_id
        ))
    }

    fn query_string(&self, page: i64) -> String {
        format!("page={page}&page_size={}", self.page.page_size)
    }

    /// Unlike the other lists, the tag also hashes the path: the service is in it.
    fn etag(&self, at: Checkpoint) -> ETag {
        list_etag(
            at,
            &format!("{}?{}", self.path(), self.query_string(self.page.page)),
        )
    }
}

/// The status page: every service's latest status and the overall status.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "status",
    operation_id = "status_page",
    params(
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "The status page", body = StatusPage, headers(
            ("ETag" = String, description = "Weak tag of the page at the projection's checkpoint"),
            ("Cache-Control" = String, description = "public, max-age=5, stale-while-revalidate=30 when asked without Authorization and X-Consistency-Token; else private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn status_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let checkpoint = consistency::tag_checkpoint(&state, &headers, PROJECTION).await?;
    let etag = list_etag(checkpoint, "status");
    let audience = Audience::of(true, &headers);
    if etag.matches_if_none_match(&headers) {
        return Ok(etag.not_modified(audience));
    }
    let services: Vec<ServiceLatest> = sqlx::query_as(
        "SELECT service_id, status, description, updated_at FROM service_status_latest \
          ORDER BY service_id",
    )
    .fetch_all(state.pool())
    .await?;
    let overall = overall(services.iter().map(|service| service.status.as_str()))?;
    let page = StatusPage {
        overall: overall.as_str().to_owned(),
        services,
    };
    Ok(etag.decorate(audience, Json(page).into_response()))
}

/// A service's reports, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/status/services/{service_id}/history",
    tag = "status",
    operation_id = "service_history",
    params(
        ("service_id" = String, Path, description = "The service's slug, `[a-z0-9-]{1,64}`", pattern = "^[a-z0-9-]{1,64}$"),
        HistoryParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "One page of reports, newest first; empty for a service that never reported", body = Page<StatusReport>, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "public, max-age=5, stale-while-revalidate=30 when asked without Authorization and X-Consistency-Token; else private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers, InvalidPath,
    )
)]
pub async fn service_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    service_id: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let invalid = || ApiError::InvalidPath {
        field: "service_id",
        message: "must be 1 to 64 characters of a-z, 0-9 and -",
    };
    let Path(service_id) = service_id.map_err(|_| invalid())?;
    if events::status::ServiceId::parse(&service_id).is_err() {
        return Err(invalid());
    }
    let Query(params) = query?;
    let request = HistoryRequest {
        service_id,
        page: PageRequest::parse(params.page.as_deref(), params.page_size.as_deref())?,
    };
    page::list_response(&state, &headers, &request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_status_is_the_worst_one() {
        assert_eq!(overall([]).ok(), Some(ServiceHealth::Operational));
        assert_eq!(
            overall(["operational", "under_maintenance"]).ok(),
            Some(ServiceHealth::UnderMaintenance)
        );
        assert_eq!(
            overall(["partial_outage", "degraded_performance", "operational"]).ok(),
            Some(ServiceHealth::PartialOutage)
        );
        assert!(overall(["broken"]).is_err());
    }
}
