//! The command extractor: body, idempotency key, `If-Match` and audit metadata of a request.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use events::EventMetadata;
use serde::de::DeserializeOwned;
use service_kit::http::{RequestId, client_ip, is_safe_id};
use service_kit::problem::FieldError;
use service_kit::{Caller, Problem};
use uuid::Uuid;

use crate::execute::IfMatch;
use crate::idempotency;
use crate::state::AppState;

/// The principal of a request without a token.
pub use service_kit::caller::ANONYMOUS;

/// Everything a command handler needs from the request besides its path.
#[derive(Debug)]
pub struct CommandInput {
    body: Bytes,
    is_json: bool,
    /// Hash of method, path and body: what an idempotency key is bound to. Computed only for
    /// a request with a key (`Some` exactly when `idempotency_key` is).
    pub fingerprint: Option<Vec<u8>>,
    /// `Idempotency-Key`, validated.
    pub idempotency_key: Option<String>,
    /// `If-Match`, as a precondition on the version.
    pub if_match: Option<IfMatch>,
    /// Audit metadata for the events this command appends.
    pub metadata: EventMetadata,
    /// Who is asking; scopes idempotency keys (the account id, or `anonymous`).
    pub principal: String,
    /// Who is asking, as the authentication layer found it.
    pub caller: Caller,
    /// When the request gives up (`REQUEST_TIMEOUT_MS` after it arrived), short of an append
    /// already under way.
    pub deadline: tokio::time::Instant,
}

impl CommandInput {
    /// Whether the request sent no body (the routes whose body is optional).
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Parses the JSON body: malformed JSON is a 400, a body of the wrong shape a 422.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.is_json {
            return Err(Problem::unsupported_media_type());
        }
        Json::<T>::from_bytes(&self.body)
            .map(|Json(value)| value)
            .map_err(|rejection| match rejection {
                JsonRejection::JsonSyntaxError(error) => {
                    Problem::bad_request(format!("malformed JSON: {}", error.body_text()))
                }
                other => Problem::invalid_body(other.body_text()),
            })
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Parses `If-Match: "7"` (a bare `7` is taken too; `*` means "any version"), exactly as
/// the document's pattern states it (`openapi::IF_MATCH_PATTERN`). A weak tag `W/"7"` is
/// well-formed but never matches (strong comparison), so it is kept as [`IfMatch::Weak`] to
/// answer 412 with the current version rather than 400.
fn parse_if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, Problem> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let malformed = || Problem::bad_request("If-Match must be a quoted version, e.g. \"3\"");
    let raw = raw.to_str().map_err(|_| malformed())?.trim();
    if raw == "*" {
        return Ok(None);
    }
    let (weak, digits) = match raw.strip_prefix("W/") {
        Some(tag) => (true, unquote(tag)),
        None => (false, Some(unquote(raw).unwrap_or(raw))),
    };
    let version = digits
        .filter(|digits| {
            (1..=MAX_VERSION_DIGITS).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|digits| digits.parse::<i64>().ok())
        .ok_or_else(malformed)?;
    Ok(Some(if weak {
        IfMatch::Weak
    } else {
        IfMatch::Version(version)
    }))
}

fn unquote(tag: &str) -> Option<&str> {
    tag.strip_prefix('"')?.strip_suffix('"')
}

/// The most digits a version in `If-Match` may have: every such number fits an `i64`.
const MAX_VERSION_DIGITS: usize = 18;

fn is_json(headers: &HeaderMap) -> bool {
    header_str(headers, header::CONTENT_TYPE.as_str()).is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

impl FromRequest<AppState> for CommandInput {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let deadline = tokio::time::Instant::now() + state.settings.request_timeout;
        let (parts, body) = request.into_parts();
        // The authentication layer put it there (a bad token never gets this far); a router
        // without that layer has only anonymous callers.
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous);
        let headers = &parts.headers;
        let idempotency_key = match header_str(headers, "idempotency-key") {
            None if headers.contains_key("idempotency-key") => {
                return Err(key_problem());
            }
            None => None,
            Some(key) if idempotency::is_valid_key(key) => Some(key.to_owned()),
            Some(_) => return Err(key_problem()),
        };
        let if_match = parse_if_match(headers)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| Uuid::now_v7().to_string(), |id| id.0.clone());
        let correlation_id = header_str(headers, "x-correlation-id")
            .filter(|id| is_safe_id(id))
            .map_or_else(|| request_id.clone(), str::to_owned);
        // The server span's context (which continues the caller's `traceparent`), never the
        // client's header as it came: a consumer of the events continues our trace. A command
        // run through `CommandBus` stores its command span's context in its place. With the SDK
        // disabled we have no span context, and pass the caller's (re-written) through.
        let traceparent = service_kit::otel::current_traceparent()
            .or_else(|| service_kit::otel::caller_traceparent(headers));
        let user_agent = header_str(headers, header::USER_AGENT.as_str())
            .map(|agent| agent.chars().take(512).collect::<String>());
        let metadata = EventMetadata {
            actor: caller.actor(),
            session_id: caller.session_id(),
            ip: request_ip(state.settings.trust_forwarded_for, &parts),
            user_agent,
            request_id,
            correlation_id,
            causation_id: Uuid::now_v7().to_string(),
            idempotency_key: idempotency_key.clone(),
            traceparent,
        };
        let method = parts.method.to_string();
        let path = parts.uri.path().to_owned();
        let json = is_json(headers);
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection: BytesRejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::payload_too_large()
                } else {
                    Problem::bad_request(rejection.body_text())
                }
            })?;
        if !body.is_empty() && !json {
            return Err(Problem::unsupported_media_type());
        }
        Ok(Self {
            fingerprint: idempotency_key
                .is_some()
                .then(|| idempotency::fingerprint(&method, &path, &body)),
            body,
            is_json: json,
            idempotency_key,
            if_match,
            metadata,
            principal: caller.actor(),
            caller,
            deadline,
        })
    }
}

/// The client's IP as event metadata records it and per-IP rate limits count it: the address
/// the trusted proxy appended when `TRUST_FORWARDED_FOR` is on, else the peer's.
pub fn request_ip(trust_forwarded_for: bool, parts: &axum::http::request::Parts) -> Option<String> {
    if trust_forwarded_for {
        forwarded_client(&parts.headers).or_else(|| client_ip(&parts.extensions))
    } else {
        client_ip(&parts.extensions)
    }
}

/// The address the trusted proxy appended to `X-Forwarded-For`: the last one, since earlier
/// entries were written by whoever sent the request and prove nothing.
fn forwarded_client(headers: &HeaderMap) -> Option<String> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()?;
    last.trim()
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

fn key_problem() -> Problem {
    Problem::validation(vec![FieldError::new(
        "Idempotency-Key",
        "must be 1 to 255 visible ASCII characters",
    )])
}

/// Parses a path id as a UUID: a malformed one is a 422 naming `id`.
pub fn parse_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw)
        .map_err(|_| Problem::validation(vec![FieldError::new("id", "must be a UUID")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_match(value: &str) -> Result<Option<IfMatch>, Problem> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value.parse().expect("header value"));
        parse_if_match(&headers)
    }

    #[test]
    fn if_match_takes_quoted_and_bare_versions_and_keeps_weak_tags_apart() {
        assert_eq!(if_match("\"7\"").ok(), Some(Some(IfMatch::Version(7))));
        assert_eq!(if_match("7").ok(), Some(Some(IfMatch::Version(7))));
        assert_eq!(if_match("*").ok(), Some(None));
        let weak = if_match("W/\"7\"").ok().flatten();
        assert_eq!(weak, Some(IfMatch::Weak));
        assert!(weak.is_some_and(|weak| !weak.matches(7)));
    }

    #[test]
    fn the_forwarded_client_is_the_address_the_proxy_appended() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "198.51.100.1, 10.0.0.7".parse().expect("value"),
        );
        headers.append("x-forwarded-for", "203.0.113.9".parse().expect("value"));
        assert_eq!(forwarded_client(&headers).as_deref(), Some("203.0.113.9"));
        let mut forged = HeaderMap::new();
        forged.insert(
            "x-forwarded-for",
            "1.2.3.4, not-an-ip".parse().expect("value"),
        );
        assert_eq!(forwarded_client(&forged), None);
        assert_eq!(forwarded_client(&HeaderMap::new()), None);
    }

    #[test]
    fn if_match_refuses_what_is_not_a_version() {
        assert!(if_match("\"abc\"").is_err());
        assert!(if_match("\"-1\"").is_err());
        assert!(if_match("W/\"abc\"").is_err());
    }

    #[test]
    fn if_match_takes_exactly_what_the_document_states() {
        for refused in [
            "+7",
            "\"+7\"",
            "\"7",
            "7\"",
            "\"\"7\"\"",
            "W/7",
            "\"\"",
            "",
            "1234567890123456789",
        ] {
            assert!(if_match(refused).is_err(), "{refused:?}");
        }
        let longest = if_match("\"123456789012345678\"").ok().flatten();
        assert_eq!(longest, Some(IfMatch::Version(123_456_789_012_345_678)));
    }
}
