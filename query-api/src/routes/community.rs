//! `GET /community/posts` and `GET /community/posts/{id}`: the community posts read model,
//! paginated, filtered, sorted and ETagged. Deleted posts are never served: 404 and not
//! listed.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{IF_NONE_MATCH, LINK};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::support::{TimestampSort, text_filter};
use crate::AppState;
use crate::consistency;
use crate::error::ApiError;
use crate::etag::{ETag, list_etag};
use crate::openapi::ProblemDetails;
use crate::pagination::{self, PageRequest};

/// The name of the projection (its `projection_checkpoints` row) that fills `community_posts`.
pub const PROJECTION: &str = "community_posts";

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
}

/// One page of posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostPage {
    /// The posts on this page (empty past the last page).
    pub items: Vec<Post>,
    /// How many posts match the filters, over all pages.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// The page size asked for.
    pub page_size: i64,
    /// How many pages the matches fill (0 when none match).
    pub pages: i64,
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
    /// Only posts by this author (exact match; at most 80 characters).
    #[param(max_length = 80)]
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

    /// The canonical query string of this request at page `page` (the `Link` target and the
    /// input of the list ETag).
    pub fn query_string(&self, page: i64) -> String {
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

const COLUMNS: &str = "id, title, content, author, created_at, updated_at, version";

fn push_filters(query: &mut QueryBuilder<'_, Postgres>, request: &ListPosts) {
    // Deleted posts keep their rows for the projector, but are never read.
    query.push(" WHERE deleted_at IS NULL");
    if let Some(author) = &request.author {
        query.push(" AND author = ").push_bind(author.clone());
    }
}

#[derive(sqlx::FromRow)]
struct CountedPost {
    #[sqlx(flatten)]
    post: Post,
    total: i64,
}

/// Reads one page of posts and the total matching the filters.
///
/// # Errors
///
/// The database fails.
pub async fn fetch_page(pool: &PgPool, request: &ListPosts) -> Result<PostPage, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM community_posts"
    ));
    push_filters(&mut query, request);
    // `id` breaks ties so that pages neither repeat nor skip rows with equal timestamps.
    query.push(format!(
        " ORDER BY {column} {direction}, id {direction} LIMIT ",
        column = request.sort.column(),
        direction = request.sort.direction()
    ));
    query
        .push_bind(request.page.page_size)
        .push(" OFFSET ")
        .push_bind(request.page.offset());
    let rows: Vec<CountedPost> = query.build_query_as().fetch_all(pool).await?;
    // A page past the end has no row to carry the window count: only then count on its own.
    let total = match rows.first() {
        Some(row) => row.total,
        None if request.page.page > 1 => {
            let mut count = QueryBuilder::new("SELECT count(*) FROM community_posts");
            push_filters(&mut count, request);
            count.build_query_scalar().fetch_one(pool).await?
        }
        None => 0,
    };
    Ok(PostPage {
        items: rows.into_iter().map(|row| row.post).collect(),
        total,
        page: request.page.page,
        page_size: request.page.page_size,
        pages: request.page.pages(total),
    })
}

/// Lists community posts (deleted ones are not listed).
#[utoipa::path(
    get,
    path = "/community/posts",
    tag = "community",
    operation_id = "list_posts",
    params(
        ListPostsParams,
        ("If-None-Match" = Option<String>, Header, description = "ETags of cached pages; a match answers 304"),
        ("X-Consistency-Token" = Option<String>, Header, description = "Token from a command answer: wait until the projection covers it"),
    ),
    responses(
        (status = 200, description = "One page of posts", body = PostPage, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "no-cache"),
        )),
        (status = 304, description = "The cached page is current", headers(("ETag" = String))),
        (status = 400, description = "A query parameter or the consistency token is invalid", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach the consistency token in time", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub async fn list_posts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListPostsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        query.map_err(|rejection| ApiError::BadQueryString(rejection.body_text()))?;
    let request = ListPosts::parse(&params)?;
    let checkpoint = match consistency::honour(&state, &headers, PROJECTION).await? {
        Some(checkpoint) => checkpoint,
        None => consistency::checkpoint(state.pool(), PROJECTION).await?,
    };
    let etag = list_etag(checkpoint, &request.query_string(request.page.page));
    if etag.matches_if_none_match(&headers) {
        return Ok(etag.not_modified());
    }
    let page = fetch_page(state.pool(), &request).await?;
    let link = pagination::link_header(page.page, page.pages, |n| {
        format!("{COLLECTION_PATH}?{}", request.query_string(n))
    });
    let mut response = etag.decorate(Json(page).into_response());
    // Always valid: every component is percent-encoded to visible ASCII.
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(LINK, value);
    }
    Ok(response)
}

/// Reads one community post; a deleted post is 404.
#[utoipa::path(
    get,
    path = "/community/posts/{id}",
    tag = "community",
    operation_id = "get_post",
    params(
        ("id" = Uuid, Path, description = "The post's id"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of cached versions; a match answers 304"),
        ("X-Consistency-Token" = Option<String>, Header, description = "Token from a command answer: wait until the projection covers it"),
    ),
    responses(
        (status = 200, description = "The post", body = Post, headers(
            ("ETag" = String, description = "The aggregate version, e.g. \"3\""),
            ("Cache-Control" = String, description = "no-cache"),
        )),
        (status = 304, description = "The cached version is current", headers(("ETag" = String))),
        (status = 400, description = "The consistency token is malformed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No post has this id, or it was deleted", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach the consistency token in time", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub async fn get_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let invalid_id = || ApiError::InvalidPath {
        field: "id",
        message: "must be a UUID",
    };
    let Path(raw) = id.map_err(|_| invalid_id())?;
    let id = Uuid::try_parse(&raw).map_err(|_| invalid_id())?;
    consistency::honour(&state, &headers, PROJECTION).await?;
    let not_found = || ApiError::NotFound(format!("no post with id {id}"));
    // A revalidation is answered from the version alone, without reading the whole row.
    if headers.contains_key(IF_NONE_MATCH) {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM community_posts WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(state.pool())
        .await?;
        let etag = ETag::strong(version.ok_or_else(not_found)?);
        if etag.matches_if_none_match(&headers) {
            return Ok(etag.not_modified());
        }
    }
    let post: Post = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM community_posts WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(state.pool())
    .await?
    .ok_or_else(not_found)?;
    Ok(ETag::strong(post.version).decorate(Json(post).into_response()))
}
