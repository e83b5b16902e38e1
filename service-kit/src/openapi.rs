//! The one OpenAPI document both APIs serve (FRONTEND.md, "One OpenAPI document"): the error
//! schemas they share, declared once here; the merge of the two APIs' documents, which refuses
//! a name declared twice with two meanings instead of dropping one; and the committed
//! document (`openapi/chronicle.json`), served as is at [`DOCUMENT_PATH`].
//!
//! Why the committed file is what is served: neither API may import the other (decision 0006),
//! so neither can build the whole document; the `chronicle` crate, which sees both, checks that
//! the committed file is exactly what the code produces (decision 0013).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Where both APIs serve the document.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The committed document (`openapi/chronicle.json`), byte for byte.
pub const PUBLISHED: &str = include_str!("../../openapi/chronicle.json");

/// The command that rewrites the committed document from the code.
pub const REGENERATE: &str = "cargo run -p chronicle -- openapi openapi/chronicle.json";

/// `GET /api/v1/openapi.json`: the committed document. Public, and the same for everyone.
pub async fn serve_document() -> Response {
    let mut response = PUBLISHED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// An error answer (RFC 9457), as [`crate::Problem`] renders it. Documentation only.
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
    /// Whole seconds to wait before retrying, equal to `Retry-After`; on every 429 and 503.
    pub retry_after: Option<u64>,
    /// The offending query parameter, for 400s about one.
    pub parameter: Option<String>,
    /// The offending header, for 400s about one (`X-Consistency-Token`).
    pub header: Option<String>,
    /// What a 409 conflicts with, for a program to act on (every 409 carries it).
    pub code: Option<ConflictCode>,
    /// For `invalid_transition`: the state the resource is in.
    pub from: Option<String>,
    /// For `invalid_transition`: the state the command asked for.
    pub to: Option<String>,
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

/// The 412 answer: a problem that says which version the resource is at and what it is now.
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
    /// The version the resource is at: decide, and send `If-Match` with it.
    pub current_version: i64,
    /// The resource as the query API would serve it at `current_version` (its item schema,
    /// e.g. `Project`), read from the event stream: "theirs", without another request.
    #[schema(schema_with = current_schema)]
    pub current: Option<Value>,
}

/// The resources a 412 can show (the query API's item schemas, declared in its part of the
/// document), or `null` for the others.
fn current_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    use utoipa::openapi::{Ref, RefOr};
    OneOfBuilder::new()
        .item(RefOr::Ref(Ref::from_schema_name("Project")))
        .item(RefOr::Ref(Ref::from_schema_name("Post")))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The resource as the query API serves it at `current_version` (`Project` or \
             `Post`), read from the event stream; `null` for other resources",
        ))
        .build()
        .into()
}

/// The machine-readable reason of a 409 (`code`): stable, unlike `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictCode {
    /// A create named an id that is taken (also by a deleted resource).
    AlreadyExists,
    /// The resource is archived: restore it first.
    Archived,
    /// The resource was deleted and takes nothing more.
    Deleted,
    /// The lifecycle has no move from `from` to `to`.
    InvalidTransition,
    /// The first request with this `Idempotency-Key` still runs: retry after `Retry-After`.
    IdempotencyInFlight,
    /// Concurrent writers won every retry: retry.
    Contention,
    /// Accounts: another tab just rotated this refresh token; retry with the cookie now held.
    RefreshRaced,
    /// Accounts: the change would leave no enabled admin.
    LastAdmin,
    /// Accounts: TOTP is on; disable it before setting it up again.
    TotpAlreadyEnabled,
    /// Accounts: no live pending TOTP secret to enable, or TOTP is off.
    NoPendingTotp,
}

impl ConflictCode {
    /// The code as the body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyExists => "already_exists",
            Self::Archived => "archived",
            Self::Deleted => "deleted",
            Self::InvalidTransition => "invalid_transition",
            Self::IdempotencyInFlight => "idempotency_in_flight",
            Self::Contention => "contention",
            Self::RefreshRaced => "refresh_raced",
            Self::LastAdmin => "last_admin",
            Self::TotpAlreadyEnabled => "totp_already_enabled",
            Self::NoPendingTotp => "no_pending_totp",
        }
    }
}

/// Why two documents cannot be merged into one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A document is not a JSON object with the OpenAPI members where expected.
    #[error("not an OpenAPI document: {0}")]
    Malformed(String),
    /// Two documents declare one component name (`components/schemas/Project`) differently.
    #[error(
        "`components/{kind}/{name}` is declared twice with different contents; rename one \
         (`#[schema(as = ...)]`) or declare it once in service-kit"
    )]
    DuplicateComponent {
        /// `schemas`, `responses`, `securitySchemes`, ...
        kind: String,
        /// The component's name.
        name: String,
    },
    /// Two documents describe one operation.
    #[error("`{method} {path}` is described twice")]
    DuplicateOperation {
        /// The method, lowercase.
        method: String,
        /// The path.
        path: String,
    },
    /// Two documents describe one tag differently.
    #[error("tag `{0}` is described twice with different descriptions")]
    DuplicateTag(String),
}

/// Merges `parts` (each API's document, as JSON) under `frame`'s `openapi` and `info`: every
/// path's operations, every component and every tag. A component or tag declared in several
/// parts must be declared identically (the shared ones come from this module); an operation
/// may be described once only.
///
/// # Errors
///
/// [`MergeError`] names the first name declared twice with two meanings.
pub fn merge(frame: Value, parts: &[Value]) -> Result<Value, MergeError> {
    let mut document = match frame {
        Value::Object(frame) => frame,
        _ => return Err(MergeError::Malformed("the frame".to_owned())),
    };
    let mut paths = Map::new();
    let mut components: Map<String, Value> = Map::new();
    let mut tags: Vec<Value> = Vec::new();
    for part in parts {
        for (path, item) in members(part, "paths")? {
            let merged = paths
                .entry(path.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let (Value::Object(merged), Value::Object(item)) = (merged, item) else {
                return Err(MergeError::Malformed(format!("paths/{path}")));
            };
            for (method, operation) in item {
                if merged.contains_key(method) {
                    return Err(MergeError::DuplicateOperation {
                        method: method.clone(),
                        path: path.clone(),
                    });
                }
                merged.insert(method.clone(), operation.clone());
            }
        }
        for (kind, declared) in members(part, "components")? {
            let merged = components
                .entry(kind.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let (Value::Object(merged), Value::Object(declared)) = (merged, declared) else {
                return Err(MergeError::Malformed(format!("components/{kind}")));
            };
            for (name, value) in declared {
                match merged.get(name) {
                    Some(existing) if existing != value => {
                        return Err(MergeError::DuplicateComponent {
                            kind: kind.clone(),
                            name: name.clone(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        merged.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        for tag in part
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match tags.iter().find(|known| known["name"] == tag["name"]) {
                Some(known) if known != tag => {
                    return Err(MergeError::DuplicateTag(
                        tag["name"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                Some(_) => {}
                None => tags.push(tag.clone()),
            }
        }
    }
    document.insert("paths".to_owned(), Value::Object(paths));
    document.insert("components".to_owned(), Value::Object(components));
    if !tags.is_empty() {
        document.insert("tags".to_owned(), Value::Array(tags));
    }
    Ok(Value::Object(document))
}

/// The members of `part[name]`, an object (none when absent).
fn members<'a>(part: &'a Value, name: &str) -> Result<Vec<(&'a String, &'a Value)>, MergeError> {
    match part.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Object(members)) => Ok(members.iter().collect()),
        Some(_) => Err(MergeError::Malformed(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn frame() -> Value {
        json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}})
    }

    #[test]
    fn two_parts_merge_their_operations_components_and_tags() {
        let commands = json!({
            "paths": {"/p": {"post": {"operationId": "create"}}},
            "components": {"schemas": {"Problem": {"type": "object"}, "Create": {}}},
            "tags": [{"name": "projects"}],
        });
        let queries = json!({
            "paths": {"/p": {"get": {"operationId": "list"}}},
            "components": {"schemas": {"Problem": {"type": "object"}, "Page": {}}},
            "tags": [{"name": "projects"}, {"name": "audit"}],
        });
        let merged = merge(frame(), &[commands, queries]).expect("merges");
        assert_eq!(merged["paths"]["/p"]["post"]["operationId"], "create");
        assert_eq!(merged["paths"]["/p"]["get"]["operationId"], "list");
        let schemas = merged["components"]["schemas"]
            .as_object()
            .expect("schemas");
        assert_eq!(schemas.len(), 3);
        assert_eq!(merged["tags"].as_array().map(Vec::len), Some(2));
        assert_eq!(merged["info"]["title"], "t");
    }

    #[test]
    fn two_schemas_with_one_name_are_an_error_not_a_silent_drop() {
        let one = json!({"components": {"schemas": {"Project": {"type": "object"}}}});
        let other = json!({"components": {"schemas": {"Project": {"type": "string"}}}});
        assert_eq!(
            merge(frame(), &[one, other]),
            Err(MergeError::DuplicateComponent {
                kind: "schemas".to_owned(),
                name: "Project".to_owned(),
            })
        );
    }

    #[test]
    fn one_operation_described_twice_is_an_error() {
        let one = json!({"paths": {"/p": {"get": {"operationId": "a"}}}});
        let other = json!({"paths": {"/p": {"get": {"operationId": "b"}}}});
        assert!(matches!(
            merge(frame(), &[one, other]),
            Err(MergeError::DuplicateOperation { .. })
        ));
    }

    #[test]
    fn one_tag_described_twice_differently_is_an_error() {
        let one = json!({"tags": [{"name": "x", "description": "a"}]});
        let other = json!({"tags": [{"name": "x", "description": "b"}]});
        assert_eq!(
            merge(frame(), &[one, other]),
            Err(MergeError::DuplicateTag("x".to_owned()))
        );
    }

    #[test]
    fn the_served_document_is_the_committed_file() {
        let parsed: Value = serde_json::from_str(PUBLISHED).expect("the committed file is JSON");
        assert_eq!(parsed["openapi"], "3.1.0");
    }
}
