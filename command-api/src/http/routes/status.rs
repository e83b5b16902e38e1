//! Service status commands: report a service's status. One stream per service, keyed by the
//! service's slug.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use events::status::ServiceHealth;
use serde::Deserialize;
use service_kit::Problem;
use service_kit::problem::FieldError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::service_status::{
    ServiceId, ServiceIdError, ServiceStatusCommand, StatusDescription,
};
use crate::execute::{Kind, Reads};
use crate::http::fields::Fields;
use crate::http::input::CommandInput;
use crate::http::openapi::{ChangeHeaders, CommandErrors, text};
use crate::http::{ChangeAnswer, Target, run_command};
use crate::state::AppState;

/// Routes of the service status commands.
pub fn router() -> OpenApiRouter<AppState> {
    // Status reports are an admin's (ACCOUNTS.md, "Who may call what").
    OpenApiRouter::new()
        .routes(routes!(report_status))
        .route_layer(axum::middleware::from_fn(service_kit::caller::needs_admin))
}

/// `POST /status/services/{service_id}/reports` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportStatus {
    /// One of `operational`, `degraded_performance`, `partial_outage`, `major_outage`,
    /// `under_maintenance`.
    #[schema(
        pattern = "^(operational|degraded_performance|partial_outage|major_outage|under_maintenance)$"
    )]
    status: String,
    /// What is going on, at most 2000 characters after trimming.
    #[schema(schema_with = text::description)]
    description: Option<String>,
}

/// Reports a service's current status.
#[utoipa::path(
    post, path = "/api/v1/status/services/{service_id}/reports", tag = "status",
    request_body = ReportStatus,
    params(
        ("service_id" = String, Path, description = "The service's slug, `[a-z0-9-]{1,64}`", pattern = "^[a-z0-9-]{1,64}$"),
        ChangeHeaders,
    ),
    responses(
        (status = 201, description = "Recorded; `Location` is the service's history", body = ChangeAnswer),
        CommandErrors,
    )
)]
async fn report_status(
    State(state): State<AppState>,
    service_id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let invalid = || {
        Problem::validation(vec![FieldError::new(
            "service_id",
            ServiceIdError.to_string(),
        )])
    };
    let Path(raw) = service_id.map_err(|_| invalid())?;
    let service_id = ServiceId::parse(&raw).map_err(|_| invalid())?;
    let body: ReportStatus = input.json()?;
    let mut fields = Fields::default();
    let status = fields.check("status", body.status.parse::<ServiceHealth>());
    let description = body
        .description
        .as_deref()
        .and_then(|raw| fields.check("description", StatusDescription::parse(raw)));
    let Some(status) = status else {
        return Err(fields.problem());
    };
    fields.finish()?;
    let id = service_id.as_str();
    let command = ServiceStatusCommand::Report {
        status,
        description,
    };
    // A report is recorded whatever came before: only the stream's revision is read, so a
    // service with a long history reports as fast as a new one.
    let target = Target {
        id,
        kind: Kind::Created,
        reads: Reads::Revision,
        location: Some(history),
    };
    run_command(&state, &state.service_status, &input, target, command).await
}

/// Each report adds an entry to the service's history: 201, with the history as `Location`.
fn history(service_id: &str) -> String {
    format!("/api/v1/status/services/{service_id}/history")
}
