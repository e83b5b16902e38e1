//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and served
//! at `GET /api/v1/openapi.json`.

use utoipa::OpenApi;

/// The document's frame: title, version, tags and the shared problem schema. The paths are
/// added by the routers (`crate::routes`), which depend on this module, never the reverse.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chronicle query API",
        description = "Read models of Chronicle: paginated, filtered and ETagged. Errors are \
                       application/problem+json (RFC 9457).",
    ),
    components(schemas(ProblemDoc, FieldErrorDoc, PreconditionFailedDoc, ConflictCode)),
    tags(
        (name = "projects", description = "The projects read model"),
        (name = "projections", description = "Projection checkpoints and lag"),
        (name = "support", description = "The support tickets read model"),
        (name = "community", description = "The community posts read model (deleted posts are not served)"),
        (name = "status", description = "The public status page and each service's history"),
        (name = "analytics", description = "The daily analytics summary"),
        (name = "audit", description = "The event log, for auditors: global order and single streams"),
        (name = "auth", description = "The public keys access tokens are verified with"),
    )
)]
pub struct ApiDoc;

pub use service_kit::openapi::{ConflictCode, FieldErrorDoc, PreconditionFailedDoc, ProblemDoc};

/// The shape of a consistency token (and of an audit cursor): URL-safe base64 of at most 64
/// characters. Necessary, not sufficient: the value must also be one this system issued.
pub const CONSISTENCY_TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The request headers every read of a read model takes, described once: `If-None-Match` and
/// `X-Consistency-Token` (`params(ListProjectsParams, ReadHeaders)`).
pub struct ReadHeaders;

impl utoipa::IntoParams for ReadHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};

        let header = |name: &str, description: &str, pattern: Option<&str>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(pattern),
                ))
                .build()
        };
        vec![
            header(
                "If-None-Match",
                "Tags of cached representations; a match answers 304",
                None,
            ),
            header(
                "X-Consistency-Token",
                "Token from a command answer: wait until the projection covers it (at most \
                 CONSISTENCY_WAIT_MS, else 503). Opaque and URL-safe; only a token this \
                 system issued is taken, anything else is a 400",
                Some(CONSISTENCY_TOKEN_PATTERN),
            ),
        ]
    }
}

/// The answers many operations share, described once: a path lists the sets it can answer
/// (`responses((status = 200, ..), ItemAnswers)`) instead of repeating them.
pub mod answers {
    use std::collections::BTreeMap;

    use utoipa::IntoResponses;
    use utoipa::openapi::{
        ContentBuilder, Header, Ref, RefOr, Response, ResponseBuilder, Type,
        schema::{ObjectBuilder, Schema},
    };

    /// The media type of every error answer.
    pub const PROBLEM_JSON: &str = "application/problem+json";

    fn string() -> Schema {
        Schema::Object(ObjectBuilder::new().schema_type(Type::String).build())
    }

    fn header(description: &str) -> Header {
        let mut header = Header::new(string());
        header.description = Some(description.to_owned());
        header
    }

    /// An error answer: the Problem schema as problem+json, never stored by caches.
    fn problem(description: &str) -> ResponseBuilder {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .header("Cache-Control", header("no-store"))
    }

    fn entry(status: u16, response: ResponseBuilder) -> (String, RefOr<Response>) {
        (status.to_string(), RefOr::T(response.build()))
    }

    fn not_modified() -> (String, RefOr<Response>) {
        entry(
            304,
            ResponseBuilder::new()
                .description("The cached representation is current (`If-None-Match` matched)")
                .header("ETag", header("The same tag as the 200 would carry"))
                .header(
                    "Cache-Control",
                    header("As the 200 would carry: `private, no-cache`, or `public, ...` for public reads"),
                ),
        )
    }

    fn bad_request() -> (String, RefOr<Response>) {
        entry(
            400,
            problem(
                "A query parameter (named in `parameter`) or the `X-Consistency-Token` header \
                 (named in `header`) is invalid",
            ),
        )
    }

    fn not_found() -> (String, RefOr<Response>) {
        entry(404, problem("No such resource"))
    }

    fn invalid_path() -> (String, RefOr<Response>) {
        entry(
            422,
            problem("A path value is invalid (a malformed id); `errors` names it"),
        )
    }

    fn unavailable() -> (String, RefOr<Response>) {
        entry(
            503,
            problem(
                "The database is unavailable, or the projection did not reach the \
                 `X-Consistency-Token` within `CONSISTENCY_WAIT_MS`",
            )
            .header("Retry-After", header("Seconds to wait before retrying")),
        )
    }

    /// What a list of a read model can answer besides 200: 304, 400, 503.
    pub struct ListAnswers;

    impl IntoResponses for ListAnswers {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([not_modified(), bad_request(), unavailable()])
        }
    }

    /// What a read-model item can answer besides 200: 304, 400, 404, 422, 503.
    pub struct ItemAnswers;

    impl IntoResponses for ItemAnswers {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([
                not_modified(),
                bad_request(),
                not_found(),
                invalid_path(),
                unavailable(),
            ])
        }
    }

    /// 400: a bad query parameter.
    pub struct BadRequest;

    impl IntoResponses for BadRequest {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([bad_request()])
        }
    }

    /// 404: no such resource.
    pub struct NotFound;

    impl IntoResponses for NotFound {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([not_found()])
        }
    }

    /// 422: an invalid path value.
    pub struct InvalidPath;

    impl IntoResponses for InvalidPath {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([invalid_path()])
        }
    }

    /// 503 with `Retry-After`.
    pub struct Unavailable;

    impl IntoResponses for Unavailable {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            BTreeMap::from([unavailable()])
        }
    }
}
