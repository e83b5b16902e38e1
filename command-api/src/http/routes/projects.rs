//! Project commands: create, update, archive, restore.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use service_kit::Problem;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::project::{Description, ProjectCommand, ProjectName};
use crate::http::fields::{Fields, present};
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::{ChangeHeaders, CommandErrors, CreateHeaders, UnknownId, text};
use crate::http::{ChangeAnswer, change, create};
use crate::state::AppState;

/// Routes of the project commands.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project))
        .routes(routes!(update_project))
        .routes(routes!(archive_project))
        .routes(routes!(restore_project))
}

/// `POST /projects` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Client-generated id (UUID) for offline clients; generated when absent.
    id: Option<Uuid>,
    /// 1 to 120 characters after trimming.
    #[schema(schema_with = text::project_name)]
    name: String,
    /// At most 2000 characters after trimming.
    #[schema(schema_with = text::description)]
    description: Option<String>,
    /// The owning user.
    owner_id: Option<Uuid>,
}

/// `PATCH /projects/{id}` body: at least one field; `null` is refused (leave a field out to
/// keep it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateProject {
    /// 1 to 120 characters after trimming.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = text::project_name_patch)]
    name: Option<String>,
    /// At most 2000 characters after trimming.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = text::description_patch)]
    description: Option<String>,
}

fn location(id: &str) -> String {
    format!("/api/v1/projects/{id}")
}

/// Creates a project.
#[utoipa::path(
    post, path = "/api/v1/projects", tag = "projects",
    request_body = CreateProject,
    params(CreateHeaders),
    responses(
        (status = 201, description = "Created", body = ChangeAnswer),
        CommandErrors,
    )
)]
async fn create_project(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let body: CreateProject = input.json()?;
    let mut fields = Fields::default();
    let name = fields.check("name", ProjectName::parse(&body.name));
    let description = body
        .description
        .as_deref()
        .and_then(|raw| fields.check("description", Description::parse(raw)));
    let Some(name) = name else {
        return Err(fields.problem());
    };
    fields.finish()?;
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = ProjectCommand::Create {
        name,
        description,
        owner_id: body.owner_id,
        created_by: input.metadata.actor.clone(),
    };
    create(
        &state,
        &state.projects,
        &input,
        &id.to_string(),
        location,
        command,
    )
    .await
}

/// Changes a project's name and/or description.
#[utoipa::path(
    patch, path = "/api/v1/projects/{id}", tag = "projects",
    request_body = UpdateProject,
    params(
        ("id" = Uuid, Path, description = "Project id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Updated", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn update_project(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let body: UpdateProject = input.json()?;
    let mut fields = Fields::default();
    let name = body
        .name
        .as_deref()
        .and_then(|raw| fields.check("name", ProjectName::parse(raw)));
    let description = body
        .description
        .as_deref()
        .and_then(|raw| fields.check("description", Description::parse(raw)));
    if body.name.is_none() && body.description.is_none() {
        fields.refuse("name", "give name or description (or both)");
    }
    fields.finish()?;
    let command = ProjectCommand::Update { name, description };
    change(&state, &state.projects, &input, &id.to_string(), command).await
}

/// Archives a project.
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/archive", tag = "projects",
    params(
        ("id" = Uuid, Path, description = "Project id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Archived", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn archive_project(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?.to_string();
    change(
        &state,
        &state.projects,
        &input,
        &id,
        ProjectCommand::Archive,
    )
    .await
}

/// Restores an archived project.
#[utoipa::path(
    post, path = "/api/v1/projects/{id}/restore", tag = "projects",
    params(
        ("id" = Uuid, Path, description = "Project id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Restored", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn restore_project(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?.to_string();
    change(
        &state,
        &state.projects,
        &input,
        &id,
        ProjectCommand::Restore,
    )
    .await
}
