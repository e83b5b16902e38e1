//! The auditors' view of the event log: `GET /audit/events` pages through the global log in
//! commit-safe order with an opaque cursor, and `GET /audit/streams/{type}/{id}` pages through
//! one stream in version order. Both read the event store directly, not a read model, and every
//! event comes upcast to its current schema version.
//!
//! A page's `next` cursor is the log position of its last event (or the cursor it was asked
//! with, when it is empty). Reads only see transactions older than the oldest one still running
//! (docs/decisions/0001-commit-safe-order.md), so an event that commits later always sorts
//! after every cursor handed out before it: following `next` never skips or repeats an event,
//! also while appends continue.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use event_store::LogFilter;
use events::position::{decode_position, encode_position};
use events::{LogPosition, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiError;
use crate::openapi::answers::{BadRequest, InvalidPath, NotFound, Unavailable};
use crate::state::AppState;

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most events per page.
pub const MAX_LIMIT: i64 = 1000;
/// The longest text filter accepted, in characters (as the document's `maxLength` counts).
pub const MAX_FILTER_CHARS: usize = 256;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_events))
        .routes(routes!(audit_stream))
        // The log is an auditor's; admin is not auditor (ACCOUNTS.md, "Who may call what").
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_auditor,
        ))
}

/// An event as auditors see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Envelope {
    /// The event's global position.
    pub position: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The stream revision (from 1).
    pub version: i64,
    /// The event's type name.
    pub event_type: String,
    /// The event's schema version (always the current one: older ones are upcast on read).
    pub event_version: String,
    /// The event, passed on as stored, never parsed (events::envelope).
    #[schema(value_type = Object)]
    pub payload: Box<serde_json::value::RawValue>,
    /// Who, when, from where: `actor`, `ip`, `user_agent`, `request_id`, `correlation_id`,
    /// `causation_id`, and `idempotency_key` and `traceparent` when the request had them.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// When it was appended (RFC 3339, UTC).
    pub recorded_at: DateTime<Utc>,
}

impl From<RecordedEvent> for Envelope {
    fn from(event: RecordedEvent) -> Self {
        Self {
            position: event.position,
            event_id: event.event_id,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            version: event.version,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
        }
    }
}

/// One page of the log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events in commit-safe order.
    pub items: Vec<Envelope>,
    /// Pass as `after` for the events that follow; when `items` is empty it is the cursor of
    /// this request (poll it again later).
    pub next: String,
}

/// One page of a stream's events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamEvents {
    /// Events in version order.
    pub items: Vec<Envelope>,
    /// Pass as `from_version` for the events that follow; null when this page reaches the
    /// stream's end.
    pub next_version: Option<i64>,
}

/// The query parameters of `GET /audit/events`, as sent (checked in [`AuditQuery::parse`]).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Opaque cursor: the `next` of the previous page (default: the start of the log). Only
    /// a cursor this API issued is taken; anything else is a 400.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only this aggregate type (e.g. `Project`; 1 to 256 characters, no NUL).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00]*$")]
    pub aggregate_type: Option<String>,
    /// Only this aggregate id (1 to 256 characters, no NUL).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00]*$")]
    pub aggregate_id: Option<String>,
    /// Only this event type (e.g. `ProjectCreated`; 1 to 256 characters, no NUL).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00]*$")]
    pub event_type: Option<String>,
    /// Only events whose metadata names this actor (1 to 256 characters, no NUL).
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00]*$")]
    pub actor: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// Recorded before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
}

/// A checked `GET /audit/events` request.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// Read after this position.
    pub after: LogPosition,
    /// Events per page.
    pub limit: i64,
    /// What to read.
    pub filter: LogFilter,
}

/// A text filter: 1 to [`MAX_FILTER_CHARS`], no NUL (which PostgreSQL text cannot hold).
fn text_filter(name: &'static str, raw: Option<&String>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw)
            if raw.is_empty() || raw.chars().count() > MAX_FILTER_CHARS || raw.contains('\0') =>
        {
            Err(ApiError::bad_parameter(
                name,
                format!("must be 1 to {MAX_FILTER_CHARS} characters without NUL"),
            ))
        }
        Some(raw) => Ok(Some(raw.clone())),
    }
}

fn timestamp(name: &'static str, raw: Option<&String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| ApiError::bad_parameter(name, "must be an RFC 3339 timestamp"))
    })
    .transpose()
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| ApiError::bad_parameter("limit", format!("must be 1 to {MAX_LIMIT}"))),
    }
}

impl AuditQuery {
    /// Checks the parameters.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the first bad parameter.
    pub fn parse(params: &AuditParams) -> Result<Self, ApiError> {
        let after = match params.after.as_deref() {
            None => LogPosition::START,
            Some(raw) => decode_position(raw)
                .map_err(|_| ApiError::bad_parameter("after", "is not a cursor this API issued"))?,
        };
        let limit = limit(params.limit.as_deref())?;
        let from = timestamp("from", params.from.as_ref())?;
        let to = timestamp("to", params.to.as_ref())?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(ApiError::bad_parameter("from", "must not be after `to`"));
        }
        let filter = LogFilter {
            aggregate_types: text_filter("aggregate_type", params.aggregate_type.as_ref())?
                .into_iter()
                .collect(),
            aggregate_id: text_filter("aggregate_id", params.aggregate_id.as_ref())?,
            event_type: text_filter("event_type", params.event_type.as_ref())?,
            actor: text_filter("actor", params.actor.as_ref())?,
            from,
            to,
        };
        Ok(Self {
            after,
            limit,
            filter,
        })
    }
}

/// Pages through the global event log.
#[utoipa::path(
    get,
    path = "/api/v1/audit/events",
    tag = "audit",
    operation_id = "audit_events",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of the log", body = EventPage),
        BadRequest, Unavailable,
    )
)]
pub async fn audit_events(
    State(state): State<AppState>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(params) = query?;
    let query = AuditQuery::parse(&params)?;
    let events =
        event_store::log::read_after(state.pool(), query.after, query.limit, &query.filter).await?;
    let next = events
        .last()
        .map_or(query.after, |event| event.log_position);
    Ok(Json(EventPage {
        items: events.into_iter().map(Envelope::from).collect(),
        next: encode_position(next),
    }))
}

/// The query parameters of `GET /audit/streams/{aggregate_type}/{aggregate_id}`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// First version to return (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub from_version: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// Pages through one stream in version order.
#[utoipa::path(
    get,
    path = "/api/v1/audit/streams/{aggregate_type}/{aggregate_id}",
    tag = "audit",
    operation_id = "audit_stream",
    params(
        ("aggregate_type" = String, Path, description = "e.g. `Project`; 1 to 256 characters, no NUL", pattern = r"^[^\x00]{1,256}$"),
        ("aggregate_id" = String, Path, description = "The stream's id; 1 to 256 characters, no NUL", pattern = r"^[^\x00]{1,256}$"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "Up to `limit` of the stream's events from `from_version` on, and where the next page starts", body = StreamEvents),
        BadRequest, NotFound, InvalidPath, Unavailable,
    )
)]
pub async fn audit_stream(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let invalid = |field| ApiError::InvalidPath {
        field,
        message: "must be 1 to 256 characters without NUL",
    };
    let Path((aggregate_type, aggregate_id)) = path.map_err(|_| invalid("aggregate_type"))?;
    let valid = |raw: &str| {
        !raw.is_empty() && raw.chars().count() <= MAX_FILTER_CHARS && !raw.contains('\0')
    };
    if !valid(&aggregate_type) {
        return Err(invalid("aggregate_type"));
    }
    if !valid(&aggregate_id) {
        return Err(invalid("aggregate_id"));
    }
    let Query(params) = query?;
    let from_version = match params.from_version.as_deref() {
        None => 1,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|version| *version >= 1)
            .ok_or_else(|| ApiError::bad_parameter("from_version", "must be an integer >= 1"))?,
    };
    let limit = limit(params.limit.as_deref())?;
    // One more than the page: whether it exists says whether the page reaches the end, so a
    // stream that is an exact multiple of the page ends with `next_version: null`, not with
    // an empty page after it.
    let mut events = event_store::log::read_stream(
        state.pool(),
        &aggregate_type,
        &aggregate_id,
        from_version,
        limit + 1,
    )
    .await?;
    let next_version = if events.len() as i64 > limit {
        events.pop().map(|next| next.version)
    } else {
        None
    };
    if events.is_empty()
        && !event_store::log::stream_exists(state.pool(), &aggregate_type, &aggregate_id).await?
    {
        return Err(ApiError::NotFound(format!(
            "no stream {aggregate_type}/{aggregate_id}"
        )));
    }
    Ok(Json(StreamEvents {
        items: events.into_iter().map(Envelope::from).collect(),
        next_version,
    })
    .into_response())
}
