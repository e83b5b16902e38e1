//! `GET /support/tickets` and `GET /support/tickets/{id}`: the support tickets read model,
//! paginated, filtered, sorted and ETagged.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use events::ticket::TicketStatus;
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
use crate::read::sort::{TimestampSort, text_filter};
use crate::state::AppState;
use service_kit::Caller;

/// The column naming the account a ticket belongs to.
const OWNER_COLUMN: &str = "submitter_id";

/// The name of the projection (its `projection_checkpoints` row) that fills `support_tickets`.
pub const PROJECTION: &str = event_store::catalogue::SUPPORT_TICKETS.name;

/// The path of the collection, from which `Link` URLs are built.
pub const COLLECTION_PATH: &str = "/api/v1/support/tickets";

/// The longest `email` filter accepted: the longest address a ticket can have.
pub const MAX_EMAIL_CHARS: usize = 254;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    // Accounts see their own only (ACCOUNTS.md, "Who may call what"): each handler's first
    // step, `Scope::of`, answers 401 to a caller without an account before the request's shape
    // is read, so no route layer (a boxed service cloned per request) is needed for it.
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
    /// The account that opened it; null when opened anonymously.
    pub submitter_id: Option<Uuid>,
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
    /// Only tickets from this address (compared case-insensitively; 1 to 254 characters, no
    /// NUL).
    #[param(min_length = 1, max_length = 254, pattern = r"^[^\x00]*$")]
    pub email: Option<String>,
    /// Sort order: `created_at` or `updated_at`, prefixed with `-` for descending (default
    /// `-created_at`). Ties are broken by id.
    #[param(pattern = "^-?(created_at|updated_at)$")]
    pub sort: Option<String>,
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
        let status = given("status", params.status.as_deref())?
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
}

impl ListRequest for ListTickets {
    type Item = Ticket;

    fn page(&self) -> PageRequest {
        self.page
    }

    fn order_by(&self) -> String {
        self.sort.order_by()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(status) = self.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(email) = &self.email {
            query
                .push(" AND lower(email) = lower(")
                .push_bind(email.clone())
                .push(")");
        }
    }

    fn path(&self) -> Cow<'_, str> {
        Cow::Borrowed(COLLECTION_PATH)
    }

    fn query_string(&self, page: i64) -> String {
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

impl ReadModel for Ticket {
    const PROJECTION: &'static str = PROJECTION;
    const TABLE: &'static str = "support_tickets";
    const COLUMNS: &'static str =
        "id, email, subject, message, status, created_at, updated_at, version, submitter_id";
}

impl Item for Ticket {
    const NOUN: &'static str = "ticket";

    fn version(&self) -> i64 {
        self.version
    }
}

/// Lists support tickets.
#[utoipa::path(
    get,
    path = "/api/v1/support/tickets",
    tag = "support",
    operation_id = "list_tickets",
    params(
        ListTicketsParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "One page of tickets", body = Page<Ticket>, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn list_tickets(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<ListTicketsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = Scope::of(&caller, OWNER_COLUMN)?;
    let Query(params) = query?;
    let request = ListTickets::parse(&params)?;
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

/// Reads one support ticket.
#[utoipa::path(
    get,
    path = "/api/v1/support/tickets/{id}",
    tag = "support",
    operation_id = "get_ticket",
    params(
        ("id" = Uuid, Path, description = "The ticket's id"),
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "The ticket", body = Ticket, headers(
            ("ETag" = String, description = "The aggregate version, e.g. \"3\""),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ItemAnswers,
    )
)]
pub async fn get_ticket(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let scope = Scope::of(&caller, OWNER_COLUMN)?;
    item::item_response_scoped::<Ticket>(&state, &headers, id, Some(scope)).await
}

#[cfg(test)]
mod tests {
    use crate::checkpoint::Checkpoint;

    use super::*;
    use crate::etag::list_etag;

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
            list_etag(Checkpoint::default(), &a.query_string(1)),
            list_etag(Checkpoint::default(), &b.query_string(1))
        );
    }
}
