//! Driving the command API in-process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use command_api::{AppState, Hooks, Settings};
use http_body_util::BodyExt as _;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt as _;

/// Settings for tests: small limits where a test needs them.
pub fn settings() -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        body_limit: 256 * 1024,
        idempotency_ttl: Duration::from_secs(24 * 3600),
        idempotency_lease: Duration::from_secs(30),
        max_retries: 50,
        request_timeout: Duration::from_secs(30),
        trust_forwarded_for: false,
        // Tests fire up to 16 commands at once at a 5-connection pool; the bound has its own
        // tests (service-kit, faults).
        admission: service_kit::shed::AdmissionSettings::unbounded(),
    }
}

/// The app on `pool` with default settings.
pub fn app(pool: &PgPool) -> Router {
    app_with(pool, settings(), Hooks::default())
}

/// The app on `pool` with the given settings and hooks.
pub fn app_with(pool: &PgPool, settings: Settings, hooks: Hooks) -> Router {
    service_kit::telemetry::init_tracing();
    command_api::router(AppState::new(pool.clone(), settings, hooks))
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes as sent.
    pub raw: axum::body::Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A request to send.
pub struct Call {
    request: axum::http::request::Builder,
    body: Body,
}

impl Call {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            request: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path)
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.request = self.request.header("content-type", "application/json");
        self.body = Body::from(body.to_string());
        self
    }

    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.request = self.request.header("content-type", content_type);
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub async fn send(self, app: &Router) -> Answer {
        let request = self.request.body(self.body).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
            raw: bytes,
        }
    }
}

/// Creates a project and returns its id.
pub async fn create_project(app: &Router, name: &str) -> String {
    let answer = Call::post("/api/v1/projects")
        .json(&serde_json::json!({ "name": name }))
        .send(app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// How many events the store holds.
pub async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The versions stored for one project stream, in order.
pub async fn stream_versions(pool: &PgPool, id: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'Project' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Hooks whose `after_commit` panics, as a process dying right after its append would.
pub fn dying_after_commit() -> Hooks {
    Hooks {
        after_commit: Arc::new(|| panic!("simulated crash after the append committed")),
    }
}

/// Asserts a problem+json answer of `status`.
pub fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.body["status"], status.as_u16());
}

/// Asserts a 422 naming `field` among its errors.
pub fn assert_invalid_field(answer: &Answer, field: &str) {
    assert_problem(answer, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = answer.body["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|error| error["field"] == field),
        "no error names {field}: {:?}",
        answer.body
    );
}

/// Asserts that neither events nor idempotency records exist beyond `events_before`.
pub async fn nothing_written(pool: &PgPool, events_before: i64) {
    assert_eq!(
        event_count(pool).await,
        events_before,
        "events were written"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "idempotency records were written");
}

/// The event types of one stream, in revision order.
pub async fn stream(pool: &PgPool, aggregate_type: &str, id: &str) -> Vec<(i64, String, Value)> {
    sqlx::query_as(
        "SELECT sequence, event_type, payload::jsonb FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}
