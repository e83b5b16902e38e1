//! Errors as RFC 9457 problem+json: the one error type every handler returns.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::openapi::ConflictCode;

/// The documentation page of every problem type, served at its `type` path (`/problems/...`);
/// the pages live in `docs/problems/`.
pub const PAGES: &[(&str, &str)] = &[
    (
        "account-disabled",
        include_str!("../../docs/problems/account-disabled.md"),
    ),
    (
        "email-not-verified",
        include_str!("../../docs/problems/email-not-verified.md"),
    ),
    (
        "invalid-credentials",
        include_str!("../../docs/problems/invalid-credentials.md"),
    ),
    (
        "invalid-refresh-token",
        include_str!("../../docs/problems/invalid-refresh-token.md"),
    ),
    (
        "invalid-token",
        include_str!("../../docs/problems/invalid-token.md"),
    ),
    (
        "rate-limited",
        include_str!("../../docs/problems/rate-limited.md"),
    ),
    (
        "refresh-raced",
        include_str!("../../docs/problems/refresh-raced.md"),
    ),
    (
        "mfa-required",
        include_str!("../../docs/problems/mfa-required.md"),
    ),
    (
        "totp-already-enabled",
        include_str!("../../docs/problems/totp-already-enabled.md"),
    ),
    (
        "no-pending-totp",
        include_str!("../../docs/problems/no-pending-totp.md"),
    ),
    (
        "step-up-failed",
        include_str!("../../docs/problems/step-up-failed.md"),
    ),
    (
        "unauthenticated",
        include_str!("../../docs/problems/unauthenticated.md"),
    ),
    (
        "bad-request",
        include_str!("../../docs/problems/bad-request.md"),
    ),
    ("conflict", include_str!("../../docs/problems/conflict.md")),
    (
        "forbidden",
        include_str!("../../docs/problems/forbidden.md"),
    ),
    (
        "idempotency-key-in-flight",
        include_str!("../../docs/problems/idempotency-key-in-flight.md"),
    ),
    (
        "idempotency-key-reused",
        include_str!("../../docs/problems/idempotency-key-reused.md"),
    ),
    ("internal", include_str!("../../docs/problems/internal.md")),
    (
        "invalid-body",
        include_str!("../../docs/problems/invalid-body.md"),
    ),
    (
        "method-not-allowed",
        include_str!("../../docs/problems/method-not-allowed.md"),
    ),
    (
        "not-found",
        include_str!("../../docs/problems/not-found.md"),
    ),
    (
        "payload-too-large",
        include_str!("../../docs/problems/payload-too-large.md"),
    ),
    (
        "precondition-failed",
        include_str!("../../docs/problems/precondition-failed.md"),
    ),
    (
        "unauthenticated",
        include_str!("../../docs/problems/unauthenticated.md"),
    ),
    (
        "unavailable",
        include_str!("../../docs/problems/unavailable.md"),
    ),
    (
        "unsupported-media-type",
        include_str!("../../docs/problems/unsupported-media-type.md"),
    ),
    (
        "validation",
        include_str!("../../docs/problems/validation.md"),
    ),
];

/// The page documenting problem type `name` (the last segment of its `type`).
pub fn page(name: &str) -> Option<&'static str> {
    PAGES
        .iter()
        .find(|(page, _)| *page == name)
        .map(|(_, text)| *text)
}

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's name (`events[3].name` for nested fields).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer. The request-id layer adds the request's id to its body.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// The problem type's documentation path, e.g. `/problems/validation`.
    pub kind: &'static str,
    /// A short, fixed summary of the type.
    pub title: &'static str,
    /// What happened in this instance.
    pub detail: Option<String>,
    /// The invalid fields, for validation problems.
    pub errors: Vec<FieldError>,
    /// Further members, such as `current_version` on a 412.
    pub extensions: Map<String, Value>,
    /// `Retry-After` seconds: rendered both as the header and as the body's `retry_after`, so
    /// the two always agree. Private so that no 429 or 503 goes without it ([`Self::new`]
    /// gives those [`DEFAULT_RETRY_AFTER_SECS`]); set it with [`Self::retry_after`].
    retry_after: Option<u64>,
}

/// The `Retry-After` of a 429 or 503 whose maker named none, in seconds.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Whether answers of `status` must say when to retry (429 and 503).
pub fn needs_retry_after(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

impl Problem {
    /// A problem of the given status and type; a 429 or 503 says to retry after
    /// [`DEFAULT_RETRY_AFTER_SECS`] until [`Self::retry_after`] says otherwise.
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            status,
            kind,
            title,
            detail: None,
            errors: Vec::new(),
            extensions: Map::new(),
            retry_after: needs_retry_after(status).then_some(DEFAULT_RETRY_AFTER_SECS),
        }
    }

    /// Adds the instance's detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// Sets `Retry-After` (header and body member `retry_after`), in whole seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The `Retry-After` seconds this problem is rendered with, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }

    /// 400: the request could not be read (malformed JSON, bad query parameters).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
            "Bad request",
        )
        .detail(detail)
    }

    /// 404: no such resource or route.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "/problems/not-found", "Not found").detail(detail)
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "/problems/method-not-allowed",
            "Method not allowed",
        )
    }

    /// 409: the request conflicts with the resource's state; `code` says how, for a program.
    pub fn conflict(code: ConflictCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "/problems/conflict", "Conflict")
            .detail(detail)
            .with("code", code.as_str())
    }

    /// 409 `invalid_transition`: the lifecycle has no move from `from` to `to`.
    pub fn invalid_transition(
        from: impl Into<String>,
        to: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::conflict(ConflictCode::InvalidTransition, detail)
            .with("from", from.into())
            .with("to", to.into())
    }

    /// 412: `If-Match` does not match the current version; `current` is the resource as the
    /// query API would serve it at that version (`null` when it cannot be shown).
    pub fn precondition_failed(current_version: i64, current: Option<Value>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "/problems/precondition-failed",
            "Precondition failed",
        )
        .detail(format!("the resource is at version {current_version}"))
        .with("current_version", current_version)
        .with("current", current.unwrap_or(Value::Null))
    }

    /// 413: the body is over the route's limit.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/payload-too-large",
            "Payload too large",
        )
        .detail("the body is larger than this endpoint accepts")
    }

    /// 415: the body is not JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
            "Unsupported media type",
        )
        .detail("send the body as application/json")
    }

    /// 422: the request is well-formed but invalid; `errors` names the fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.len() {
            1 => "1 field is invalid".to_owned(),
            n => format!("{n} fields are invalid"),
        };
        let mut problem = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
            "Validation failed",
        )
        .detail(detail);
        problem.errors = errors;
        problem
    }

    /// 422: the body has the wrong shape (types, missing or unknown fields).
    pub fn invalid_body(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/invalid-body",
            "Invalid body",
        )
        .detail(detail)
    }

    /// 503: the request could not be answered before its deadline ([`crate::deadline`]).
    pub fn deadline_exceeded(timeout: std::time::Duration) -> Self {
        Self::unavailable(
            format!(
                "the request was not answered within its deadline ({} ms); retry later",
                timeout.as_millis()
            ),
            DEFAULT_RETRY_AFTER_SECS,
        )
    }

    /// 503: a dependency is down or a wait timed out; retry later.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/unavailable",
            "Service unavailable",
        )
        .detail(detail)
        .retry_after(retry_after)
    }

    /// 500: a bug. The body says nothing about internals; the cause is logged here, once.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/problems/internal",
            "Internal server error",
        )
    }

    /// The problem for an error status that arrived without a body of its own (a timeout or
    /// limit layer, an extractor's default rejection): the status's reason is its title.
    pub fn from_status(status: StatusCode) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        Self::new(status, "about:blank", title)
    }

    /// The JSON body, with `request_id` when known.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), self.kind.into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        if let Some(detail) = &self.detail {
            body.insert("detail".into(), detail.clone().into());
        }
        if let Some(id) = request_id {
            body.insert("request_id".into(), id.into());
        }
        if !self.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(&self.errors).unwrap_or_default(),
            );
        }
        for (name, value) in &self.extensions {
            body.insert(name.clone(), value.clone());
        }
        // After the extensions: the header's value, whatever a caller put there.
        if let Some(seconds) = self.retry_after {
            body.insert("retry_after".into(), seconds.into());
        }
        Value::Object(body)
    }

    /// Renders the answer, with `request_id` in the body when known; `Retry-After` and the
    /// body's `retry_after` come from the one field, so they agree.
    pub fn render(&self, request_id: Option<&str>) -> Response {
        let mut response = (self.status, Json(self.body(request_id))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // See `frontend::no_store_if_problem`.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = self.render(None);
        // The request-id layer re-renders with the id; see `http::observe`.
        response.extensions_mut().insert(self);
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_built_here_has_a_page() {
        let problems = [
            Problem::bad_request("x"),
            Problem::not_found("x"),
            Problem::method_not_allowed(),
            Problem::conflict(ConflictCode::Archived, "x"),
            Problem::precondition_failed(1, None),
            Problem::payload_too_large(),
            Problem::unsupported_media_type(),
            Problem::validation(Vec::new()),
            Problem::invalid_body("x"),
            Problem::unavailable("x", 1),
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "/problems/internal",
                "Internal server error",
            ),
        ];
        for problem in problems {
            let name = problem.kind.trim_start_matches("/problems/");
            assert!(page(name).is_some_and(|text| !text.is_empty()), "{name}");
        }
        assert!(page("idempotency-key-reused").is_some());
        assert!(page("idempotency-key-in-flight").is_some());
        assert!(page("nonsense").is_none());
    }

    #[test]
    fn every_429_and_503_says_when_to_retry_in_header_and_body_alike() {
        let problems = [
            Problem::unavailable("x", 3),
            Problem::deadline_exceeded(std::time::Duration::from_secs(2)),
            crate::shed::refusal(4),
            Problem::from_status(StatusCode::SERVICE_UNAVAILABLE),
            Problem::from_status(StatusCode::TOO_MANY_REQUESTS),
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "about:blank", "Too many"),
            Problem::conflict(ConflictCode::IdempotencyInFlight, "x").retry_after(5),
        ];
        for problem in problems {
            let response = problem.render(None);
            let header = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            assert!(header.is_some(), "{problem}: Retry-After");
            assert_eq!(
                problem.body(None)["retry_after"].as_u64(),
                header,
                "{problem}"
            );
        }
        let plain = Problem::not_found("x");
        assert!(
            plain
                .render(None)
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
        assert!(plain.body(None).get("retry_after").is_none());
    }
}
