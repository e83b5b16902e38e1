//! Community post commands: publish, edit, delete.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use service_kit::Problem;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::post::CommunityPost;
use crate::domain::post::{Author, Content, PostCommand, Title};
use crate::http::fields::{Fields, present};
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::{ChangeHeaders, CommandErrors, CreateHeaders, UnknownId, text};
use crate::http::{ChangeAnswer, change_guarded, create};
use crate::state::AppState;

/// Routes of the community post commands.
pub fn router() -> OpenApiRouter<AppState> {
    // Every post command needs an account (ACCOUNTS.md, "Who may call what").
    OpenApiRouter::new()
        .routes(routes!(publish_post))
        .routes(routes!(edit_post, delete_post))
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_account,
        ))
}

/// `POST /community/posts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishPost {
    /// Client-generated id (UUID) for offline clients; generated when absent.
    id: Option<Uuid>,
    /// 1 to 200 characters after trimming.
    #[schema(schema_with = text::subject)]
    title: String,
    /// 1 to 20000 characters after trimming.
    #[schema(schema_with = text::content)]
    content: String,
    /// 1 to 80 characters after trimming.
    #[schema(schema_with = text::author)]
    author: String,
}

/// `PATCH /community/posts/{id}` body: at least one field; `null` is refused (leave a field
/// out to keep it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct EditPost {
    /// 1 to 200 characters after trimming.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = text::title_patch)]
    title: Option<String>,
    /// 1 to 20000 characters after trimming.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = text::content_patch)]
    content: Option<String>,
}

fn location(id: &str) -> String {
    format!("/api/v1/community/posts/{id}")
}

/// Publishes a community post.
#[utoipa::path(
    post, path = "/api/v1/community/posts", tag = "community",
    request_body = PublishPost,
    params(CreateHeaders),
    responses(
        (status = 201, description = "Published", body = ChangeAnswer),
        CommandErrors,
    )
)]
async fn publish_post(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let body: PublishPost = input.json()?;
    let mut fields = Fields::default();
    let title = fields.check("title", Title::parse(&body.title));
    let content = fields.check("content", Content::parse(&body.content));
    let author = fields.check("author", Author::parse(&body.author));
    let (Some(title), Some(content), Some(author)) = (title, content, author) else {
        return Err(fields.problem());
    };
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = PostCommand::Publish {
        title,
        content,
        author,
        author_id: input.caller.account_id(),
    };
    create(
        &state,
        &state.posts,
        &input,
        &id.to_string(),
        location,
        command,
    )
    .await
}

/// Changes a post's title and/or content.
#[utoipa::path(
    patch, path = "/api/v1/community/posts/{id}", tag = "community",
    request_body = EditPost,
    params(
        ("id" = Uuid, Path, description = "Post id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Edited", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn edit_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let body: EditPost = input.json()?;
    let mut fields = Fields::default();
    let title = body
        .title
        .as_deref()
        .and_then(|raw| fields.check("title", Title::parse(raw)));
    let content = body
        .content
        .as_deref()
        .and_then(|raw| fields.check("content", Content::parse(raw)));
    if body.title.is_none() && body.content.is_none() {
        fields.refuse("title", "give title or content (or both)");
    }
    fields.finish()?;
    let command = PostCommand::Edit { title, content };
    let guard = author_guard(&input)?;
    change_guarded(
        &state,
        &state.posts,
        &input,
        &id.to_string(),
        command,
        &guard,
    )
    .await
}

/// Deletes a post: it vanishes from reads and takes no further commands.
#[utoipa::path(
    delete, path = "/api/v1/community/posts/{id}", tag = "community",
    params(
        ("id" = Uuid, Path, description = "Post id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Deleted", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn delete_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?.to_string();
    let guard = author_guard(&input)?;
    change_guarded(
        &state,
        &state.posts,
        &input,
        &id,
        PostCommand::Delete,
        &guard,
    )
    .await
}

/// Only the author or an admin may change a post.
fn author_guard(
    input: &CommandInput,
) -> Result<impl Fn(&CommunityPost) -> Result<(), crate::domain::post::PostError> + Sync, Problem> {
    let account = input.caller.require_account()?;
    let (account_id, admin) = (account.account_id, account.is_admin());
    Ok(move |post: &CommunityPost| post.changeable_by(account_id, admin))
}
