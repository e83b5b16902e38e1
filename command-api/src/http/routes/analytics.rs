//! Analytics ingest: `POST /analytics/events`, a batch of 1 to 1000 tracked events.
//!
//! Each request becomes a new `AnalyticsBatch/<uuid v7>` stream holding one event, appended
//! through the same path as every command (idempotency key, metadata, consistency token), so
//! concurrent batches never contend (docs/decisions/0005-analytics-streams.md). The route
//! accepts bodies up to [`BODY_LIMIT`], unlike the 256 KiB of other commands.

use std::fmt;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use service_kit::Problem;
use service_kit::problem::FieldError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::limits;
use crate::domain::analytics::{
    AnalyticsCommand, Batch, BatchSizeError, ClientId, EventName, MAX_BATCH, OccurredAt,
    Properties, ValidEvent,
};
use crate::execute::{Kind, Reads};
use crate::http::fields::Fields;
use crate::http::input::CommandInput;
use crate::http::openapi::{CommandErrors, CreateHeaders, ProblemDoc, text};
use crate::http::{Accepted, Target, run_command};
use crate::state::AppState;

/// The largest body this route accepts: 1 MiB.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Routes of analytics ingest, with their own body limit.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_events))
        // Layered on the route itself, so it overrides the service-wide default.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// `POST /analytics/events` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestEvents {
    /// 1 to 1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<TrackEvent>,
}

/// One tracked event as the client sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackEvent {
    /// `[a-z0-9_.:-]{1,100}`.
    #[schema(pattern = "^[a-z0-9_.:-]{1,100}$")]
    name: String,
    /// A JSON object of at most 8 KiB serialized, nested at most 16 levels deep.
    #[schema(value_type = Option<Object>)]
    properties: Option<Value>,
    /// 1 to 128 characters after trimming, no control characters.
    #[schema(schema_with = text::client_id)]
    session_id: Option<String>,
    /// 1 to 128 characters after trimming, no control characters.
    #[schema(schema_with = text::client_id)]
    user_id: Option<String>,
    /// RFC 3339; at most 5 minutes ahead of the server (default: now).
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    occurred_at: Option<String>,
}

/// An event's field as a 422 names it, `events[3].name`; formatted only when the field is
/// invalid, as a batch holds up to 1000 events.
struct EventField(usize, &'static str);

impl fmt::Display for EventField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "events[{}].{}", self.0, self.1)
    }
}

/// Validates every event, naming each invalid field (`events[3].name`).
fn validate(body: IngestEvents) -> Result<Batch, Problem> {
    // The size first: a batch of the wrong size is refused without looking at its events.
    if !(1..=MAX_BATCH).contains(&body.events.len()) {
        return Err(Problem::validation(vec![FieldError::new(
            "events",
            BatchSizeError.to_string(),
        )]));
    }
    let now = Utc::now();
    let mut fields = Fields::default();
    let mut valid = Vec::with_capacity(body.events.len());
    for (i, event) in body.events.into_iter().enumerate() {
        let name = fields.check(EventField(i, "name"), EventName::parse(&event.name));
        let properties = event
            .properties
            .map(|raw| fields.check(EventField(i, "properties"), Properties::parse(raw)));
        let session_id = event
            .session_id
            .map(|raw| fields.check(EventField(i, "session_id"), ClientId::parse(&raw)));
        let user_id = event
            .user_id
            .map(|raw| fields.check(EventField(i, "user_id"), ClientId::parse(&raw)));
        let occurred_at = match event.occurred_at {
            Some(raw) => fields.check(EventField(i, "occurred_at"), OccurredAt::parse(&raw, now)),
            None => OccurredAt::parse(&now.to_rfc3339(), now).ok(),
        };
        // Every `None` from a given value pushed its error above.
        if let (Some(name), Some(properties), Some(session_id), Some(user_id), Some(occurred_at)) = (
            name,
            properties.map_or(Some(None), |p| p.map(Some)),
            session_id.map_or(Some(None), |s| s.map(Some)),
            user_id.map_or(Some(None), |u| u.map(Some)),
            occurred_at,
        ) {
            valid.push(ValidEvent {
                name,
                properties,
                session_id,
                user_id,
                occurred_at,
            });
        }
    }
    fields.finish()?;
    Batch::new(valid)
        .map_err(|error| Problem::validation(vec![FieldError::new("events", error.to_string())]))
}

/// Ingests a batch of tracked events.
#[utoipa::path(
    post, path = "/api/v1/analytics/events", tag = "analytics",
    request_body = IngestEvents,
    params(CreateHeaders),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 429, description = "`/problems/rate-limited`: over the per-IP limit on batches (`RATE_LIMIT_ANALYTICS_IP`, 600 per minute), with `Retry-After`", body = ProblemDoc, content_type = "application/problem+json"),
        CommandErrors,
    )
)]
async fn ingest_events(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    // Open to anonymous callers (the PWA sends before login, `sendBeacon` cannot sign), so a
    // per-IP brake instead (ACCOUNTS.md, "Rate limits"), counted before any work.
    if let Some(auth) = &state.auth {
        limits::analytics_batch(
            &state.pool,
            &auth.settings.rate_limits,
            limits::ip_of(input.metadata.ip.as_deref()),
        )
        .await??;
    }
    let body: IngestEvents = input.json()?;
    let batch = validate(body)?;
    let id = Uuid::now_v7().to_string();
    // Each batch starts a stream of its own: nothing to read.
    let target = Target {
        id: &id,
        kind: Kind::Accepted { items: batch.len() },
        reads: Reads::NewStream,
        location: None,
    };
    let command = AnalyticsCommand::Ingest(batch);
    run_command(&state, &state.analytics, &input, target, command).await
}
