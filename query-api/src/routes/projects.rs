//! `GET /projects` and `GET /projects/{id}`: the projects read model, paginated, filtered,
//! sorted and ETagged.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiError;
use crate::openapi::ReadHeaders;
use crate::openapi::answers::{ItemAnswers, ListAnswers};
use crate::pagination::given;
use crate::pagination::{self, PageRequest};
use crate::read::item::{self, Item};
use crate::read::page::{self, ListRequest, Page, ReadModel};
use crate::read::scope::{Scope, Scoped};
use crate::read::sort::{self, text_filter};
use crate::state::AppState;
use service_kit::Caller;

/// The column naming the account a project belongs to.
const OWNER_COLUMN: &str = "owner_id";

/// The name of the projection (its `projection_checkpoints` row) that fills `projects`.
pub const PROJECTION: &str = event_store::catalogue::PROJECTS.name;

/// The path of the collection, from which `Link` URLs are built.
pub const COLLECTION_PATH: &str = "/api/v1/projects";

/// The longest `q` accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    // Accounts see their own only (ACCOUNTS.md, "Who may call what"): each handler's first
    // step, `Scope::of`, answers 401 to a caller without an account before the request's shape
    // is read, so no route layer (a boxed service cloned per request) is needed for it.
    OpenApiRouter::new()
        .routes(routes!(list_projects))
        .routes(routes!(get_project))
}

/// A project as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Project {
    /// The project's id.
    pub id: Uuid,
    /// Its name (1 to 120 characters).
    pub name: String,
    /// Its description; empty when none was given.
    pub description: String,
    /// The owning user, when one was named.
    pub owner_id: Option<Uuid>,
    /// Whether the project is archived.
    pub archived: bool,
    /// When it was created (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
    /// The aggregate version this row reflects; the item's ETag.
    pub version: i64,
}

/// The query parameters of `GET /projects`, as sent. Every field is read as text and checked
/// in [`ListProjects::parse`], so that a bad value is a 400 naming its parameter rather than a
/// generic deserialization error. Unknown parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProjectsParams {
    /// Page number, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// Only projects of this owner.
    #[param(value_type = Option<Uuid>)]
    pub owner_id: Option<String>,
    /// Only archived (`true`) or only active (`false`) projects.
    #[param(value_type = Option<bool>)]
    pub archived: Option<String>,
    /// Only projects whose name contains this text, case-insensitively (1 to 200
    /// characters, no NUL; `%` and `_` match themselves).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub q: Option<String>,
    /// Sort order: `created_at`, `updated_at` or `name`, prefixed with `-` for descending
    /// (default `-created_at`). Ties are broken by id.
    #[param(pattern = "^-?(created_at|updated_at|name)$")]
    pub sort: Option<String>,
}

/// A field projects can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// `created_at`
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
    /// `name`
    Name,
}

impl sort::SortField for SortField {
    const ALL: &'static [Self] = &[Self::CreatedAt, Self::UpdatedAt, Self::Name];
    const DEFAULT: Self = Self::CreatedAt;
    const EXPECTED: &'static str =
        "must be one of created_at, updated_at, name, optionally prefixed with `-`";

    fn column(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::Name => "name",
        }
    }
}

/// A sort order over projects.
pub type Sort = sort::Sort<SortField>;

/// Which projects a list request matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    /// `owner_id`
    pub owner_id: Option<Uuid>,
    /// `archived`
    pub archived: Option<bool>,
    /// `q`, as given (not yet escaped for LIKE); never empty.
    pub name_contains: Option<String>,
}

/// A validated, normalized list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListProjects {
    /// The filters.
    pub filter: ProjectFilter,
    /// The order.
    pub sort: Sort,
    /// The page.
    pub page: PageRequest,
}

impl ListProjects {
    /// Validates the raw parameters.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the first parameter that is invalid.
    pub fn parse(params: &ListProjectsParams) -> Result<Self, ApiError> {
        let page = PageRequest::parse(params.page.as_deref(), params.page_size.as_deref())?;
        let owner_id = given("owner_id", params.owner_id.as_deref())?
            .map(|raw| {
                Uuid::try_parse(raw)
                    .map_err(|_| ApiError::bad_parameter("owner_id", "must be a UUID"))
            })
            .transpose()?;
        let archived = given("archived", params.archived.as_deref())?
            .map(|raw| match raw {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::bad_parameter(
                    "archived",
                    "must be `true` or `false`",
                )),
            })
            .transpose()?;
        let name_contains = text_filter("q", params.q.as_deref(), MAX_QUERY_CHARS)?;
        let sort = Sort::parse(params.sort.as_deref())?;
        Ok(Self {
            filter: ProjectFilter {
                owner_id,
                archived,
                name_contains,
            },
            sort,
            page,
        })
    }
}

impl ListRequest for ListProjects {
    type Item = Project;

    fn page(&self) -> PageRequest {
        self.page
    }

    fn order_by(&self) -> String {
        self.sort.order_by()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(owner_id) = self.filter.owner_id {
            query.push(" AND owner_id = ").push_bind(owner_id);
        }
        if let Some(archived) = self.filter.archived {
            query.push(" AND archived = ").push_bind(archived);
        }
        if let Some(text) = &self.filter.name_contains {
            query
                .push(" AND name ILIKE ")
                .push_bind(format!("%{}%", escape_like(text)))
                .push(" ESCAPE '\\'");
        }
    }

    fn path(&self) -> Cow<'_, str> {
        Cow::Borrowed(COLLECTION_PATH)
    }

    /// The filters that are set, then `sort`, `page` and `page_size`, percent-encoded.
    fn query_string(&self, page: i64) -> String {
        let mut query = String::new();
        if let Some(owner_id) = self.filter.owner_id {
            let _ = write!(query, "owner_id={owner_id}&");
        }
        if let Some(archived) = self.filter.archived {
            let _ = write!(query, "archived={archived}&");
        }
        if let Some(q) = &self.filter.name_contains {
            let _ = write!(query, "q={}&", pagination::encode_component(q));
        }
        let _ = write!(
            query,
            "sort={}&page={page}&page_size={}",
            self.sort.to_param(),
            self.page.page_size
        );
        query
    }
}

/// Escapes LIKE's wildcards (`%`, `_`) and its escape character (`\`), so the text matches
/// itself.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl ReadModel for Project {
    const PROJECTION: &'static str = PROJECTION;
    const TABLE: &'static str = "projects";
    const COLUMNS: &'static str =
        "id, name, description, owner_id, archived, created_at, updated_at, version";
}

impl Item for Project {
    const NOUN: &'static str = "project";

    fn version(&self) -> i64 {
        self.version
    }
}

/// Lists projects.
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "projects",
    operation_id = "list_projects",
    params(
        ListProjectsParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "One page of projects", body = Page<Project>, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<ListProjectsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = Scope::of(&caller, OWNER_COLUMN)?;
    let Query(params) = query?;
    let request = ListProjects::parse(&params)?;
    page::list_response(
        &state,
        &headers,
        &Scoped {
            request: &request,
            scope,
        },
    )
    .await
}

/// Reads one project.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{id}",
    tag = "projects",
    operation_id = "get_project",
    params(
        ("id" = Uuid, Path, description = "The project's id"),
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "The project", body = Project, headers(
            ("ETag" = String, description = "The aggregate version, e.g. \"7\""),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ItemAnswers,
    )
)]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let scope = Scope::of(&caller, OWNER_COLUMN)?;
    item::item_response_scoped::<Project>(&state, &headers, id, Some(scope)).await
}

#[cfg(test)]
mod tests {
    use events::LogPosition;

    use crate::checkpoint::Checkpoint;

    use super::*;

    #[test]
    fn like_wildcards_and_the_escape_character_match_themselves() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }

    #[test]
    fn equal_requests_spelled_differently_share_a_query_string() {
        let a = ListProjects::parse(&ListProjectsParams {
            sort: Some("-created_at".into()),
            page: Some("1".into()),
            ..Default::default()
        });
        let b = ListProjects::parse(&ListProjectsParams::default());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("both parse");
        };
        assert_eq!(a.query_string(1), b.query_string(1));
        assert_eq!(a.etag(Checkpoint::default()), b.etag(Checkpoint::default()));
    }

    #[test]
    fn the_list_etag_moves_with_the_checkpoint_its_generation_and_the_page() {
        let request = ListProjects::default();
        let at = Checkpoint {
            position: LogPosition {
                tx_id: 9,
                position: 4,
            },
            generation: 0,
        };
        let later = Checkpoint {
            position: LogPosition {
                tx_id: 10,
                position: 5,
            },
            ..at
        };
        let rebuilt = Checkpoint {
            generation: 1,
            ..at
        };
        assert_ne!(request.etag(at), request.etag(later));
        assert_ne!(request.etag(at), request.etag(rebuilt));
        let mut next_page = request.clone();
        next_page.page.page = 2;
        assert_ne!(request.etag(at), next_page.etag(at));
    }
}
