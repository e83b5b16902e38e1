//! In-process HTTP: a request goes through a clone of the router with `oneshot`, no socket,
//! and the answer comes back whole (status, headers, body).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, request};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// Every header.
    pub headers: HeaderMap,
    /// The body's bytes.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON; the message shows it.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as JSON when it is, `null` when it is empty, and a JSON string of its text
    /// otherwise: one value to assert on for any answer.
    pub fn value(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts a problem+json answer of `status` carrying the request id of the answer's
    /// `X-Request-ID`, and returns its body.
    ///
    /// # Panics
    ///
    /// When the answer is anything else.
    pub fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert_eq!(
            body["request_id"].as_str(),
            self.header("x-request-id"),
            "{body}"
        );
        body
    }
}

/// A request being built; [`Call::send`] sends it.
#[derive(Debug)]
pub struct Call {
    request: request::Builder,
    body: Body,
}

impl Call {
    /// `method path`, no body.
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            request: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }

    /// `PATCH path`.
    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// `PUT path`.
    pub fn put(path: &str) -> Self {
        Self::new(Method::PUT, path)
    }

    /// `DELETE path`.
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Sends `Authorization: Bearer` with the account's token.
    pub fn as_account(self, account: &crate::auth::TestAccount) -> Self {
        self.header("authorization", &account.bearer())
    }

    /// Sends no token, even through a router made by [`acting_as`].
    pub fn anonymous(self) -> Self {
        self.header(ANONYMOUS_MARK, "1")
    }

    /// Adds the header when there is a value.
    pub fn header_opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.header(name, value),
            None => self,
        }
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.raw("application/json", body.to_string())
    }

    /// Any body, with the given `Content-Type`.
    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.request = self.request.header("content-type", content_type);
        self.body = body.into();
        self
    }

    /// Sends the request through a clone of `app` and reads the answer whole.
    ///
    /// # Panics
    ///
    /// When the request is malformed (a bad header name or value) or the body cannot be read.
    pub async fn send(self, app: &Router) -> Answer {
        let request = self.request.body(self.body).expect("a well-formed request");
        send(app, request).await
    }
}

/// The header by which [`Call::anonymous`] asks [`acting_as`] to add no token.
const ANONYMOUS_MARK: &str = "x-test-anonymous";

/// `app`, with every request that has no `Authorization` header sent as `account` (unless
/// it was built with [`Call::anonymous`]): existing tests run as an account unchanged.
pub fn acting_as(app: Router, account: &crate::auth::TestAccount) -> Router {
    let bearer = axum::http::HeaderValue::from_str(&account.bearer()).expect("a token is ASCII");
    app.layer(axum::middleware::from_fn(
        move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            let bearer = bearer.clone();
            async move {
                let headers = request.headers_mut();
                if headers.remove(ANONYMOUS_MARK).is_none()
                    && !headers.contains_key(axum::http::header::AUTHORIZATION)
                {
                    headers.insert(axum::http::header::AUTHORIZATION, bearer);
                }
                next.run(request).await
            }
        },
    ))
}

/// Sends `request` through a clone of `app` and reads the answer whole.
///
/// # Panics
///
/// When the body cannot be read.
pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body reads").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
