//! `GET /community/posts` and `GET /community/posts/{id}`: the community posts read model,
//! paginated, filtered, sorted and ETagged. Deleted posts are never served: 404 and not
//! listed.

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
use crate::pagination::{self, PageRequest};
use crate::read::item::{self, Item};
use crate::read::page::{self, ListRequest, Page, ReadModel};
use crate::read::sort::{TimestampSort, text_filter};
use crate::state::AppState;

/// The name of the projection (its `projection_checkpoints` row) that fills `community_posts`.
pub const PROJECTION: &str = event_store::catalogue::COMMUNITY_POSTS.name;

/// The path of the collection, from which `Link` URLs are built.
pub const COLLECTION_PATH: &str = "/api/v1/community/posts";

/// The longest `author` filter accepted: the longest author a post can have.
pub const MAX_AUTHOR_CHARS: usize = 80;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_posts))
        .routes(routes!(get_post))
}

/// A community post as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Post {
    /// The post's id.
    pub id: Uuid,
    /// Its title (1 to 200 characters).
    pub title: String,
    /// Its content (1 to 20000 characters).
    pub content: String,
    /// Its author (1 to 80 characters).
    pub author: String,
    /// When it was published (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
    /// The aggregate version this row reflects; the item's ETag.
    pub version: i64,
    /// The account that published it; null for posts from before accounts.
    pub author_id: Option<Uuid>,
}

/// The query parameters of `GET /community/posts`, as sent; checked in [`ListPosts::parse`].
/// Unknown parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListPostsParams {
    /// Page number, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// Only posts by this author (exact match; 1 to 80 characters, no NUL).
    #[param(min_length = 1, max_length = 80, pattern = r"^[^\x00]*$")]
    pub author: Option<String>,
    /// Sort order: `created_at` or `updated_at`, prefixed with `-` for descending (default
    /// `-created_at`). Ties are broken by id.
    #[param(pattern = "^-?(created_at|updated_at)$")]
    pub sort: Option<String>,
}

/// A validated, normalized list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPosts {
    /// `author`, as given.
    pub author: Option<String>,
    /// The order.
    pub sort: TimestampSort,
    /// The page.
    pub page: PageRequest,
}

impl ListPosts {
    /// Validates the raw parameters.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the first parameter that is invalid.
    pub fn parse(params: &ListPostsParams) -> Result<Self, ApiError> {
        Ok(Self {
            page: PageRequest::parse(params.page.as_deref(), params.page_size.as_deref())?,
            author: text_filter("author", params.author.as_deref(), MAX_AUTHOR_CHARS)?,
            sort: TimestampSort::parse(params.sort.as_deref())?,
        })
    }
}

impl ListRequest for ListPosts {
    type Item = Post;

    fn page(&self) -> PageRequest {
        self.page
    }

    fn order_by(&self) -> String {
        self.sort.order_by()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(author) = &self.author {
            query.push(" AND author = ").push_bind(author.clone());
        }
    }

    fn path(&self) -> Cow<'_, str> {
        Cow::Borrowed(COLLECTION_PATH)
    }

    fn query_string(&self, page: i64) -> String {
        let mut query = String::new();
        if let Some(author) = &self.author {
            let _ = write!(query, "author={}&", pagination::encode_component(author));
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

impl ReadModel for Post {
    const PROJECTION: &'static str = PROJECTION;
    const TABLE: &'static str = "community_posts";
    const COLUMNS: &'static str =
        "id, title, content, author, created_at, updated_at, version, author_id";
    // Deleted posts keep their rows for the projector, but are never read.
    const VISIBLE: &'static str = "deleted_at IS NULL";
    const PUBLIC: bool = true;
}

impl Item for Post {
    const NOUN: &'static str = "post";

    fn version(&self) -> i64 {
        self.version
    }
}

/// Lists community posts (deleted ones are not listed).
#[utoipa::path(
    get,
    path = "/api/v1/community/posts",
    tag = "community",
    operation_id = "list_posts",
    params(
        ListPostsParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "One page of posts", body = Page<Post>, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "public, max-age=5, stale-while-revalidate=30 when asked without Authorization and X-Consistency-Token; else private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn list_posts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListPostsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query?;
    page::list_response(&state, &headers, &ListPosts::parse(&params)?).await
}

/// Reads one community post; a deleted post is 404.
#[utoipa::path(
    get,
    path = "/api/v1/community/posts/{id}",
    tag = "community",
    operation_id = "get_post",
    params(
        ("id" = Uuid, Path, description = "The post's id"),
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "The post", body = Post, headers(
            ("ETag" = String, description = "The aggregate version, e.g. \"3\""),
            ("Cache-Control" = String, description = "public, max-age=5, stale-while-revalidate=30 when asked without Authorization and X-Consistency-Token; else private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ItemAnswers,
    )
)]
pub async fn get_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    item::item_response::<Post>(&state, &headers, id).await
}
