//! The answer sets every command operation shares in the OpenAPI document, declared once:
//! each route lists its success answer and these sets instead of repeating the error list.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// An error answer (RFC 9457), as `service_kit::Problem` renders it. Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// The problem type's documentation path, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this instance.
    pub detail: Option<String>,
    /// The request's `X-Request-ID`.
    pub request_id: Option<String>,
    /// The invalid fields, for validation problems.
    pub errors: Option<Vec<FieldErrorDoc>>,
}

/// One invalid field of a request, e.g. `events[3].properties`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    /// The field's name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The 412 answer: a problem that says which version the aggregate is at.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PreconditionFailed)]
pub struct PreconditionFailedDoc {
    /// `/problems/precondition-failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Precondition failed`.
    pub title: String,
    /// 412.
    pub status: u16,
    /// What happened.
    pub detail: Option<String>,
    /// The request's `X-Request-ID`.
    pub request_id: Option<String>,
    /// The version the aggregate is at: refetch, decide, and send `If-Match` with it.
    pub current_version: i64,
}

/// The errors any command may answer, whatever it does.
#[derive(IntoResponses)]
pub enum CommandErrors {
    /// Malformed JSON, or a malformed `If-Match` (a quoted version, e.g. `"3"`).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// A rule of the aggregate forbids the command in its current state, a create names an id
    /// that exists, the request's `Idempotency-Key` is still in flight (with `Retry-After`),
    /// or concurrent writers kept winning every retry.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
    /// `If-Match` does not name the aggregate's version (a weak tag never matches); the body
    /// carries `current_version`.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(PreconditionFailedDoc),
    /// The body is over the route's limit (256 KiB; 1 MiB for analytics batches).
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(ProblemDoc),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    /// Validation failed (each invalid field named), wrong JSON types, missing or unknown
    /// fields, an invalid path value or `Idempotency-Key`, or a key reused for another request.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDoc),
    /// The event store is unavailable, or the command timed out before its append (nothing
    /// was written); retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

/// The error of a command addressing an aggregate by id.
#[derive(IntoResponses)]
pub enum UnknownId {
    /// No aggregate has this id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}
