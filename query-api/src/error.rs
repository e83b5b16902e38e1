//! The query API's error type and its one mapping to problem+json.
//!
//! Handlers return [`ApiError`]; [`IntoResponse`] turns it into a [`Problem`] here and nowhere
//! else, so every status and problem type the API can answer is listed in this file.

use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use service_kit::Problem;
use service_kit::problem::FieldError;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a query parameter does not parse or is out of range; `name` is the parameter.
    #[error("query parameter `{name}` {message}")]
    BadParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// 400: the query string itself is malformed (bad percent-encoding, repeated parameter).
    #[error("malformed query string: {0}")]
    BadQueryString(String),
    /// 400: the `X-Consistency-Token` header is not a token this system issued.
    #[error("header `X-Consistency-Token` is malformed")]
    MalformedConsistencyToken,
    /// 422: a path segment is not a valid value (a malformed id).
    #[error("path parameter `{field}` {message}")]
    InvalidPath {
        /// The path parameter's name.
        field: &'static str,
        /// What is wrong with its value.
        message: &'static str,
    },
    /// 404: no resource with that id.
    #[error("{0}")]
    NotFound(String),
    /// 503 with `Retry-After: 1`: the projection did not reach the requested consistency
    /// token within `CONSISTENCY_WAIT_MS`.
    #[error("projection `{projection}` did not catch up within {waited_ms} ms")]
    ConsistencyTimeout {
        /// The projection waited for.
        projection: &'static str,
        /// How long the request waited.
        waited_ms: u128,
    },
    /// 401: the route needs an account and the request has none.
    #[error("this route needs an access token")]
    Unauthenticated,
    /// 503 with `Retry-After: 1` when the pool is exhausted or closed; 500 otherwise.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    /// A [`ApiError::BadParameter`] for `name`.
    pub fn bad_parameter(name: &'static str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            name,
            message: message.into(),
        }
    }

    /// The problem+json answer for this error. Internal errors are logged here, once.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::BadParameter { name, .. } => {
                Problem::bad_request(self.to_string()).with("parameter", *name)
            }
            Self::BadQueryString(_) => Problem::bad_request(self.to_string()),
            Self::MalformedConsistencyToken => {
                Problem::bad_request(self.to_string()).with("header", "X-Consistency-Token")
            }
            Self::InvalidPath { field, message } => {
                Problem::validation(vec![FieldError::new(*field, *message)])
            }
            Self::NotFound(detail) => Problem::not_found(detail.clone()),
            Self::Unauthenticated => service_kit::caller::unauthenticated(self.to_string()),
            Self::ConsistencyTimeout { .. } => Problem::unavailable(self.to_string(), 1),
            Self::Database(error) if service_kit::db::is_unavailable(error) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the database is unavailable; retry shortly", 1)
            }
            Self::Database(error) => Problem::internal(error),
        }
    }
}

impl From<QueryRejection> for ApiError {
    /// A query string that does not deserialize is [`ApiError::BadQueryString`], so handlers
    /// can take `Result<Query<_>, QueryRejection>` and use `?`.
    fn from(rejection: QueryRejection) -> Self {
        Self::BadQueryString(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}
