//! `GET /support/tickets` and `GET /support/tickets/{id}`: the support tickets read model,
//! paginated, filtered, sorted and ETagged.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{IF_NONE_MATCH, LINK};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use events::ticket::TicketStatus;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::consistency;
use crate::error::ApiError;
use crate::etag::{ETag, list_etag};
use crate::openapi::ProblemDetails;
use crate::pagination::{self, PageRequest};

/// The name of the projection (its `projection_checkpoints` row) that fills `support_tickets`.
pub const PROJECTION: &str = "support_tickets";

/// The path of the collection, from which `Link` URLs are built.
pub const COLLECTION_PATH: &str = "/api/v1/support/tickets";

/// The longest `email` filter accepted: the longest address a ticket can have.
pub const MAX_EMAIL_CHARS: usize = 254;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets))
        .routes(routes!(get_ticket))
}

/// A support ticket as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Ticket {
    /// The ticket's id.
    pub id: Uuid,
    /// The customer's email address.
    pub email: String,
    /// The subject (1 to 200 characters).
    pub subject: String,
    /// The customer's message (1 to 10000 characters).
    pub message: String,
    /// `open`, `in_progress`, `resolved` or `closed`.
    #[schema(pattern = "^(open|in_progress|resolved|closed)$")]
    pub status: String,
    /// When it was opened (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
    /// The aggregate version this row reflects; the item's ETag.
    pub version: i64,
}

/// One page of tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketPage {
    /// The tickets on this page (empty past the last page).
    pub items: Vec<Ticket>,
    /// How many tickets match the filters, over all pages.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// The page size asked for.
    pub page_size: i64,
    /// How many pages the matches fill (0 when none match).
    pub pages: i64,
}

/// The query parameters of `GET /support/tickets`, as sent; checked in
/// [`ListTickets::parse`] so that a bad value is a 400 naming its parameter. Unknown
/// parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTicketsParams {
    /// Page number, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// Only tickets in this status.
    #[param(pattern = "^(open|in_progress|resolved|closed)$")]
    pub status: Option<String>,
    /// Only tickets from this address (compared case-insensitively; at most 254 characters).
    #[param(max_length = 254)]
    pub email: Option<String>,
    /// Sort order: `created_at` or `updated_at`, prefixed with `-` for descending (default
    /// `-created_at`). Ties are broken by id.
    #[param(pattern = "^-?(created_at|updated_at)$")]
    pub sort: Option<String>,
}

/// A sort order over the timestamp columns every wave-1 read model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampSort {
    /// `updated_at` when true, `created_at` otherwise.
    pub by_updated_at: bool,
    /// Descending when true.
    pub descending: bool,
}

impl Default for TimestampSort {
    /// Newest first: `-created_at`.
    fn default() -> Self {
        Self {
            by_updated_at: false,
            descending: true,
        }
    }
}

impl TimestampSort {
    /// Parses `field` or `-field`; absent or empty means the default.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] for `sort` when the field is unknown.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
            return Ok(Self::default());
        };
        let (descending, name) = match raw.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let by_updated_at = match name {
            "created_at" => false,
            "updated_at" => true,
            _ => {
                return Err(ApiError::bad_parameter(
                    "sort",
                    "must be created_at or updated_at, optionally prefixed with `-`",
                ));
            }
        };
        Ok(Self {
            by_updated_at,
            descending,
        })
    }

    /// The column sorted by (a constant, safe to push into SQL).
    pub fn column(self) -> &'static str {
        if self.by_updated_at {
            "updated_at"
        } else {
            "created_at"
        }
    }

    /// `ASC` or `DESC`.
    pub fn direction(self) -> &'static str {
        if self.descending { "DESC" } else { "ASC" }
    }

    /// The parameter form: `created_at` or `-created_at`.
    pub fn to_param(self) -> String {
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{}", self.column())
    }
}

/// Checks a free-text equality filter: no NUL (PostgreSQL refuses it) and at most `max`
/// characters (longer can match nothing, and bounds the work).
///
/// # Errors
///
/// [`ApiError::BadParameter`] naming `name`.
pub fn text_filter(
    name: &'static str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match raw.filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(value) if value.contains('\0') => Err(ApiError::bad_parameter(
            name,
            "must not contain NUL characters",
        )),
        Some(value) if value.chars().count() > max => Err(ApiError::bad_parameter(
            name,
            format!("must be at most {max} characters"),
        )),
        Some(value) => Ok(Some(value.to_owned())),
    }
}

/// A validated, normalized list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTickets {
    /// `status`
    pub status: Option<TicketStatus>,
    /// `email`, as given.
    pub email: Option<String>,
    /// The order.
    pub sort: TimestampSort,
    /// The page.
    pub page: PageRequest,
}

impl ListTickets {
    /// Validates the raw parameters.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the first parameter that is invalid.
    pub fn parse(params: &ListTicketsParams) -> Result<Self, ApiError> {
        let page = PageRequest::parse(params.page.as_deref(), params.page_size.as_deref())?;
        let status = params
            .status
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                raw.parse::<TicketStatus>()
                    .map_err(|error| ApiError::bad_parameter("status", error.to_string()))
            })
            .transpose()?;
        let email = text_filter("email", params.email.as_deref(), MAX_EMAIL_CHARS)?;
        let sort = TimestampSort::parse(params.sort.as_deref())?;
        Ok(Self {
            status,
            email,
            sort,
            page,
        })
    }

    /// The canonical query string of this request at page `page` (the `Link` target and the
    /// input of the list ETag).
    pub fn query_string(&self, page: i64) -> String {
        let mut query = String::new();
        if let Some(status) = self.status {
            let _ = write!(query, "status={status}&");
        }
        if let Some(email) = &self.email {
            let _ = write!(query, "email={}&", pagination::encode_component(email));
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

const COLUMNS: &str = "id, email, subject, message, status, created_at, updated_at, version";

fn push_filters(query: &mut QueryBuilder<'_, Postgres>, request: &ListTickets) {
    query.push(" WHERE TRUE");
    if let Some(status) = request.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(email) = &request.email {
        query
            .push(" AND lower(email) = lower(")
            .push_bind(email.clone())
            .push(")");
    }
}

#[derive(sqlx::FromRow)]
struct CountedTicket {
    #[sqlx(flatten)]
    ticket: Ticket,
    total: i64,
}

/// Reads one page of tickets and the total matching the filters.
///
/// # Errors
///
/// The database fails.
pub async fn fetch_page(pool: &PgPool, request: &ListTickets) -> Result<TicketPage, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM support_tickets"
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
    let rows: Vec<CountedTicket> = query.build_query_as().fetch_all(pool).await?;
    // A page past the end has no row to carry the window count: only then count on its own.
    let total = match rows.first() {
        Some(row) => row.total,
        None if request.page.page > 1 => {
            let mut count = QueryBuilder::new("SELECT count(*) FROM support_tickets");
            push_filters(&mut count, request);
            count.build_query_scalar().fetch_one(pool).await?
        }
        None => 0,
    };
    Ok(TicketPage {
        items: rows.into_iter().map(|row| row.ticket).collect(),
        total,
        page: request.page.page,
        page_size: request.page.page_size,
        pages: request.page.pages(total),
    })
}

/// Lists support tickets.
#[utoipa::path(
    get,
    path = "/support/tickets",
    tag = "support",
    operation_id = "list_tickets",
    params(
        ListTicketsParams,
        ("If-None-Match" = Option<String>, Header, description = "ETags of cached pages; a match answers 304"),
        ("X-Consistency-Token" = Option<String>, Header, description = "Token from a command answer: wait until the projection covers it"),
    ),
    responses(
        (status = 200, description = "One page of tickets", body = TicketPage, headers(
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
pub async fn list_tickets(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListTicketsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        query.map_err(|rejection| ApiError::BadQueryString(rejection.body_text()))?;
    let request = ListTickets::parse(&params)?;
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

/// Reads one support ticket.
#[utoipa::path(
    get,
    path = "/support/tickets/{id}",
    tag = "support",
    operation_id = "get_ticket",
    params(
        ("id" = Uuid, Path, description = "The ticket's id"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of cached versions; a match answers 304"),
        ("X-Consistency-Token" = Option<String>, Header, description = "Token from a command answer: wait until the projection covers it"),
    ),
    responses(
        (status = 200, description = "The ticket", body = Ticket, headers(
            ("ETag" = String, description = "The aggregate version, e.g. \"3\""),
            ("Cache-Control" = String, description = "no-cache"),
        )),
        (status = 304, description = "The cached version is current", headers(("ETag" = String))),
        (status = 400, description = "The consistency token is malformed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No ticket has this id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The projection did not reach the consistency token in time", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub async fn get_ticket(
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
    let not_found = || ApiError::NotFound(format!("no ticket with id {id}"));
    // A revalidation is answered from the version alone, without reading the whole row.
    if headers.contains_key(IF_NONE_MATCH) {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM support_tickets WHERE id = $1")
                .bind(id)
                .fetch_optional(state.pool())
                .await?;
        let etag = ETag::strong(version.ok_or_else(not_found)?);
        if etag.matches_if_none_match(&headers) {
            return Ok(etag.not_modified());
        }
    }
    let ticket: Ticket = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM support_tickets WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(state.pool())
    .await?
    .ok_or_else(not_found)?;
    Ok(ETag::strong(ticket.version).decorate(Json(ticket).into_response()))
}

#[cfg(test)]
mod tests {
    use events::LogPosition;

    use super::*;

    #[test]
    fn sorts_are_created_at_or_updated_at_either_way() {
        assert_eq!(
            TimestampSort::parse(None).ok(),
            Some(TimestampSort::default())
        );
        let sort = TimestampSort::parse(Some("updated_at")).ok();
        assert_eq!(
            sort.map(TimestampSort::to_param).as_deref(),
            Some("updated_at")
        );
        assert!(TimestampSort::parse(Some("email")).is_err());
        assert!(TimestampSort::parse(Some("--created_at")).is_err());
    }

    #[test]
    fn equal_ticket_requests_spelled_differently_share_an_etag() {
        let a = ListTickets::parse(&ListTicketsParams {
            sort: Some("-created_at".into()),
            status: Some("open".into()),
            ..Default::default()
        });
        let b = ListTickets::parse(&ListTicketsParams {
            status: Some("open".into()),
            page: Some("1".into()),
            ..Default::default()
        });
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("both parse");
        };
        assert_eq!(
            list_etag(LogPosition::START, &a.query_string(1)),
            list_etag(LogPosition::START, &b.query_string(1))
        );
    }
}
