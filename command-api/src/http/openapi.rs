//! The answer sets every command operation shares in the OpenAPI document, declared once:
//! each route lists its success answer and these sets instead of repeating the error list.

use utoipa::IntoResponses;

pub use service_kit::openapi::{ConflictCode, FieldErrorDoc, PreconditionFailedDoc, ProblemDoc};

/// The errors any command may answer, whatever it does.
#[derive(IntoResponses)]
pub enum CommandErrors {
    /// Malformed JSON, or a malformed `If-Match` (a quoted version, e.g. `"3"`).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// A rule of the aggregate forbids the command in its current state, a create names an id
    /// that exists, the request's `Idempotency-Key` is still in flight (with `Retry-After`),
    /// or concurrent writers kept winning every retry; `code` says which (`already_exists`,
    /// `archived`, `deleted`, `invalid_transition` with `from` and `to`,
    /// `idempotency_in_flight`, `contention`).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
    /// `If-Match` does not name the aggregate's version (a weak tag never matches); the body
    /// carries `current_version` and `current`, the resource as the query API would serve it
    /// now (read from the event stream).
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
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying, equal to the body's `retry_after`")))]
    Unavailable(ProblemDoc),
}

/// The error of a command addressing an aggregate by id.
#[derive(IntoResponses)]
pub enum UnknownId {
    /// No aggregate has this id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

/// `Idempotency-Key` as the server checks it: 1 to 255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7e]{1,255}$";

/// `If-Match` as the server reads it: `*`, a quoted version (`"3"`), a bare one (`3`), or a
/// weak tag (`W/"3"`, which never matches: 412). At most 18 digits, so every version fits.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|"[0-9]{1,18}"|[0-9]{1,18}|W/"[0-9]{1,18}")$"#;

fn header(name: &str, description: &str, pattern: &str) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        ))
        .build()
}

fn idempotency_key() -> utoipa::openapi::path::Parameter {
    header(
        "Idempotency-Key",
        "1-255 visible ASCII characters; a retry with the same key and request replays the \
         first answer, the same key with another request is a 422",
        IDEMPOTENCY_KEY_PATTERN,
    )
}

/// The headers of a command that creates (`params(CreateHeaders)`): `Idempotency-Key`.
pub struct CreateHeaders;

impl utoipa::IntoParams for CreateHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![idempotency_key()]
    }
}

/// The headers of a command on an existing stream (`params(ChangeHeaders)`): `If-Match` and
/// `Idempotency-Key`.
pub struct ChangeHeaders;

impl utoipa::IntoParams for ChangeHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![
            header(
                "If-Match",
                "The version the change is based on: `\"3\"` (or `3`); `*` or absent means \
                 any version; a weak tag never matches",
                IF_MATCH_PATTERN,
            ),
            idempotency_key(),
        ]
    }
}

/// Exact schemas of request text: what the derive cannot state (trimming, control
/// characters), written as patterns both JSON Schema validators and generators understand.
pub mod text {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    use utoipa::openapi::{Object, RefOr};

    /// The characters `str::trim` removes (Unicode `White_Space`), spelled out: `\s` means
    /// other sets in ECMAScript (adds U+FEFF) and Python (adds U+001C-U+001F).
    const SPACE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    /// Control characters (`char::is_control`).
    const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
    /// Control characters less tab and line breaks, which multi-line text may hold.
    const CONTROL_MULTILINE: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";

    /// The pattern of text that, trimmed, is `min` (0 or 1) to `max` characters without
    /// control characters (but tabs and line breaks when `multiline`); any white space around
    /// it is trimmed, so it is not counted.
    pub fn pattern(min: usize, max: usize, multiline: bool) -> String {
        let control = if multiline {
            CONTROL_MULTILINE
        } else {
            CONTROL
        };
        let edge = format!("[^{SPACE}{CONTROL}]");
        // A first and a last character that are not white space, and up to `max - 2` between.
        let core = match max {
            0 | 1 => edge.clone(),
            _ => format!("{edge}(?:[^{control}]{{0,{}}}{edge})?", max - 2),
        };
        if min == 0 {
            format!("^[{SPACE}]*(?:{core}[{SPACE}]*)?$")
        } else {
            format!("^[{SPACE}]*{core}[{SPACE}]*$")
        }
    }

    fn string(pattern: String, description: String, nullable: bool) -> Object {
        let kind = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::Type(Type::String)
        };
        ObjectBuilder::new()
            .schema_type(kind)
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
    }

    fn describe(min: usize, max: usize, multiline: bool) -> String {
        let lines = if multiline {
            "; may span lines"
        } else {
            "; one line"
        };
        format!(
            "{min} to {max} characters after trimming white space, no control characters{lines}"
        )
    }

    /// A required text field: trimmed, 1 to `max` characters.
    pub fn required(max: usize, multiline: bool) -> RefOr<Schema> {
        RefOr::T(Schema::Object(string(
            pattern(1, max, multiline),
            describe(1, max, multiline),
            false,
        )))
    }

    /// An optional text field of a create (`null` means absent): trimmed, `min` to `max`.
    pub fn optional(min: usize, max: usize, multiline: bool) -> RefOr<Schema> {
        RefOr::T(Schema::Object(string(
            pattern(min, max, multiline),
            describe(min, max, multiline),
            true,
        )))
    }

    /// A field of a partial update: absent or a string (`null` is refused), `min` to `max`.
    pub fn patch(min: usize, max: usize, multiline: bool) -> RefOr<Schema> {
        RefOr::T(Schema::Object(string(
            pattern(min, max, multiline),
            describe(min, max, multiline),
            false,
        )))
    }

    /// An email address as the server takes it, in the form the document promises: a local
    /// part of one or two dot-atoms (at most 64 characters) and a domain of two or three DNS
    /// labels of at most 60 characters, white space around it trimmed. The server also takes
    /// longer dot-atom chains and more labels (local part 1-64, labels 1-63, 254 in all); the
    /// pattern is the subset it can state without counting across atoms.
    pub fn email() -> RefOr<Schema> {
        let atext = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";
        let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,58}[A-Za-z0-9])?";
        let pattern = format!(
            "^[{SPACE}]*{atext}{{1,32}}(?:\\.{atext}{{1,31}})?@{label}(?:\\.{label}){{1,2}}[{SPACE}]*$"
        );
        RefOr::T(Schema::Object(string(
            pattern,
            "An email address, `local@example.com`, at most 254 characters".to_owned(),
            false,
        )))
    }

    /// A passkey's label (`null` or absent means the default).
    pub fn passkey_label() -> RefOr<Schema> {
        optional(1, 64, false)
    }

    /// A session or user id of an analytics event (`null` means absent).
    pub fn client_id() -> RefOr<Schema> {
        optional(1, 128, false)
    }

    /// A project name.
    pub fn project_name() -> RefOr<Schema> {
        required(120, false)
    }

    /// A project name in an update.
    pub fn project_name_patch() -> RefOr<Schema> {
        patch(1, 120, false)
    }

    /// Why an admin disabled an account (`null` or blank means none given).
    pub fn reason() -> RefOr<Schema> {
        optional(0, 500, true)
    }

    /// A project (or status) description (`null` means absent).
    pub fn description() -> RefOr<Schema> {
        optional(0, 2000, true)
    }

    /// A project description in an update.
    pub fn description_patch() -> RefOr<Schema> {
        patch(0, 2000, true)
    }

    /// A ticket's subject or a post's title.
    pub fn subject() -> RefOr<Schema> {
        required(200, false)
    }

    /// A post's title in an edit.
    pub fn title_patch() -> RefOr<Schema> {
        patch(1, 200, false)
    }

    /// A ticket's message.
    pub fn message() -> RefOr<Schema> {
        required(10_000, true)
    }

    /// A post's content.
    pub fn content() -> RefOr<Schema> {
        required(20_000, true)
    }

    /// A post's content in an edit.
    pub fn content_patch() -> RefOr<Schema> {
        patch(1, 20_000, true)
    }

    /// A post's author.
    pub fn author() -> RefOr<Schema> {
        required(80, false)
    }
}
