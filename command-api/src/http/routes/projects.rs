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
use crate::domain::project::{Project, ProjectError};
use crate::http::fields::{Fields, present};
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::{ChangeHeaders, CommandErrors, CreateHeaders, UnknownId, text};
use crate::http::{ChangeAnswer, change_guarded, create};
use crate::state::AppState;

/// Routes of the project commands.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project))
        .routes(routes!(update_project))
        .routes(routes!(archive_project))
        .routes(routes!(restore_project))
        // Projects belong to accounts (ACCOUNTS.md, "Who may call what").
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_account,
        ))
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
    let account = input.caller.require_account()?;
    // Only an admin may make a project for someone else.
    let owner = match body.owner_id {
        Some(owner) if owner != account.account_id && !account.is_admin() => {
            return Err(service_kit::caller::forbidden(
                "only an admin may create a project for another owner",
            ));
        }
        Some(owner) => owner,
        None => account.account_id,
    };
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = ProjectCommand::Create {
        name,
        description,
        owner_id: Some(owner),
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
    let guard = owner_guard(&input)?;
    change_guarded(
        &state,
        &state.projects,
        &input,
        &id.to_string(),
        command,
        &guard,
    )
    .await
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
    let guard = owner_guard(&input)?;
    change_guarded(
        &state,
        &state.projects,
        &input,
        &id,
        ProjectCommand::Archive,
        &guard,
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
    let guard = owner_guard(&input)?;
    change_guarded(
        &state,
        &state.projects,
        &input,
        &id,
        ProjectCommand::Restore,
        &guard,
    )
    .await
}

/// Only the owner or an admin may see or change a project; anyone else gets 404.
fn owner_guard(
    input: &CommandInput,
) -> Result<impl Fn(&Project) -> Result<(), ProjectError> + Sync, Problem> {
    let account = input.caller.require_account()?;
    let (account_id, admin) = (account.account_id, account.is_admin());
    Ok(move |project: &Project| project.visible_to(account_id, admin))
}
