//! `GET /admin/accounts`: every account, for admins (ACCOUNTS.md, "Endpoints"), from the
//! `auth_accounts` read model, paginated and filtered by address, role and state.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
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
use crate::openapi::answers::ListAnswers;
use crate::pagination::{self, PageRequest, given};
use crate::read::page::{self, ListRequest, Page, ReadModel};
use crate::read::sort::text_filter;
use crate::state::AppState;

/// The path of the collection, from which `Link` URLs are built.
pub const COLLECTION_PATH: &str = "/api/v1/admin/accounts";

/// The roles an account can hold.
const ROLES: &[&str] = &["user", "admin", "auditor"];

/// The admin routes; admins only.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts))
        .route_layer(axum::middleware::from_fn(service_kit::caller::needs_admin))
}

/// An account as the admin list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct AccountItem {
    /// The account.
    pub account_id: Uuid,
    /// Its address.
    #[schema(format = Email)]
    pub email: String,
    /// Its roles now: `user` once verified, and those granted.
    pub roles: Vec<String>,
    /// Whether an admin disabled it.
    pub disabled: bool,
    /// Whether TOTP is on.
    pub totp_enabled: bool,
    /// When it registered (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// The account stream's version this row reflects.
    pub version: i64,
}

/// The query parameters of `GET /admin/accounts`, as sent. Unknown parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAccountsParams {
    /// Page number, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// Only this address (compared case-insensitively; 1 to 254 characters, no NUL).
    #[param(min_length = 1, max_length = 254, pattern = r"^[^\x00]*$")]
    pub email: Option<String>,
    /// Only accounts holding this role.
    #[param(pattern = "^(user|admin|auditor)$")]
    pub role: Option<String>,
    /// Only disabled (`true`) or enabled (`false`) accounts.
    #[param(value_type = Option<bool>)]
    pub disabled: Option<String>,
}

/// A validated list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListAccounts {
    /// `email`, as given.
    pub email: Option<String>,
    /// `role`.
    pub role: Option<&'static str>,
    /// `disabled`.
    pub disabled: Option<bool>,
    /// The page.
    pub page: PageRequest,
}

impl ListAccounts {
    /// Validates the raw parameters.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the first parameter that is invalid.
    pub fn parse(params: &ListAccountsParams) -> Result<Self, ApiError> {
        let page = PageRequest::parse(params.page.as_deref(), params.page_size.as_deref())?;
        let email = text_filter("email", params.email.as_deref(), 254)?;
        let role = given("role", params.role.as_deref())?
            .map(|raw| {
                ROLES
                    .iter()
                    .copied()
                    .find(|role| *role == raw)
                    .ok_or_else(|| {
                        ApiError::bad_parameter("role", "must be user, admin or auditor")
                    })
            })
            .transpose()?;
        let disabled = given("disabled", params.disabled.as_deref())?
            .map(|raw| match raw {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::bad_parameter("disabled", "must be true or false")),
            })
            .transpose()?;
        Ok(Self {
            email,
            role,
            disabled,
            page,
        })
    }
}

impl ListRequest for ListAccounts {
    type Item = AccountItem;

    fn page(&self) -> PageRequest {
        self.page
    }

    fn order_by(&self) -> String {
        "created_at DESC, account_id DESC".to_owned()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(email) = &self.email {
            query
                .push(" AND lower(email) = lower(")
                .push_bind(email.clone())
                .push(")");
        }
        if let Some(role) = self.role {
            query.push(" AND ").push_bind(role).push(" = ANY(roles)");
        }
        if let Some(disabled) = self.disabled {
            query.push(" AND disabled = ").push_bind(disabled);
        }
    }

    fn path(&self) -> Cow<'_, str> {
        Cow::Borrowed(COLLECTION_PATH)
    }

    fn query_string(&self, page: i64) -> String {
        let mut query = String::new();
        if let Some(email) = &self.email {
            let _ = write!(query, "email={}&", pagination::encode_component(email));
        }
        if let Some(role) = self.role {
            let _ = write!(query, "role={role}&");
        }
        if let Some(disabled) = self.disabled {
            let _ = write!(query, "disabled={disabled}&");
        }
        let _ = write!(query, "page={page}&page_size={}", self.page.page_size);
        query
    }
}

impl ReadModel for AccountItem {
    const PROJECTION: &'static str = event_store::catalogue::AUTH_ACCOUNTS.name;
    const TABLE: &'static str = "auth_accounts";
    const COLUMNS: &'static str =
        "account_id, email, roles, disabled, totp_enabled, created_at, version";
}

/// Lists every account (admins only).
#[utoipa::path(
    get,
    path = "/api/v1/admin/accounts",
    tag = "admin",
    operation_id = "list_accounts",
    params(
        ListAccountsParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "One page of accounts, newest first", body = Page<AccountItem>, headers(
            ("ETag" = String, description = "Weak tag of this page at the projection's checkpoint"),
            ("Link" = String, description = "RFC 8288 links: first, prev, next, last"),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListAccountsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query?;
    let request = ListAccounts::parse(&params)?;
    page::list_response(&state, &headers, &request).await
}
