//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and served
//! at `GET /api/v1/openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The document's frame: title, version, tags and the shared problem schema. The paths are
/// added by the routers in [`crate::routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chronicle query API",
        description = "Read models of Chronicle: paginated, filtered and ETagged. Errors are \
                       application/problem+json (RFC 9457).",
    ),
    components(schemas(ProblemDetails, FieldErrorDetails)),
    tags(
        (name = "projects", description = "The projects read model"),
        (name = "projections", description = "Projection checkpoints and lag"),
        (name = "support", description = "The support tickets read model"),
        (name = "community", description = "The community posts read model (deleted posts are not served)"),
        (name = "status", description = "The public status page and each service's history"),
        (name = "analytics", description = "The daily analytics summary"),
        (name = "audit", description = "The event log, for auditors: global order and single streams"),
    )
)]
pub struct ApiDoc;

/// An error answer (RFC 9457), as `service_kit::Problem` renders it. Documentation only.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDetails {
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldErrorDetails>,
    /// The offending query parameter, for 400s about one.
    pub parameter: Option<String>,
    /// The offending header, for 400s about one (`X-Consistency-Token`).
    pub header: Option<String>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDetails {
    /// The field's name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The complete document, without a database or running server (for generating client types).
pub fn document() -> utoipa::openapi::OpenApi {
    crate::routes::api().into_openapi()
}
