//! Driving the command API in-process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use command_api::{AppState, Hooks, Settings};
use serde_json::Value;
use sqlx::PgPool;
pub use test_support::{Answer, Call, TestAccount};

/// The one browser origin the test app allows (CORS).
pub const TEST_ORIGIN: &str = "http://localhost:5173";

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
        auth: test_support::auth::settings(),
        cors: service_kit::frontend::CorsSettings::parse(TEST_ORIGIN).expect("an origin"),
    }
}

/// The account every call of [`app`] acts as unless it names another or is anonymous.
pub use test_support::auth::tester;

/// The app on `pool` with default settings.
pub fn app(pool: &PgPool) -> Router {
    app_with(pool, settings(), Hooks::default())
}

/// The app on `pool` with the given settings and hooks, acting as [`tester`].
pub fn app_with(pool: &PgPool, settings: Settings, hooks: Hooks) -> Router {
    test_support::acting_as(bare_app_with(pool, settings, hooks), tester())
}

/// The app on `pool` as a client sees it: each call sends its own token, or none.
pub fn bare_app(pool: &PgPool) -> Router {
    bare_app_with(pool, settings(), Hooks::default())
}

/// [`bare_app`] with the given settings and hooks.
pub fn bare_app_with(pool: &PgPool, settings: Settings, hooks: Hooks) -> Router {
    test_support::init_logging();
    command_api::router(AppState::new(pool.clone(), settings, hooks).expect("test keys load"))
}

/// Creates a project and returns its id.
pub async fn create_project(app: &Router, name: &str) -> String {
    create(
        app,
        "/api/v1/projects",
        &serde_json::json!({ "name": name }),
    )
    .await
}

/// Posts `body` to the collection at `path`, asserts 201 and returns the new id.
pub async fn create(app: &Router, path: &str, body: &serde_json::Value) -> String {
    let answer = Call::post(path).json(body).send(app).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    answer.value()["id"].as_str().unwrap().to_owned()
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
    assert_eq!(answer.status, status, "{:?}", answer.value());
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.value()["status"], status.as_u16());
}

/// Asserts a 422 naming `field` among its errors.
pub fn assert_invalid_field(answer: &Answer, field: &str) {
    assert_problem(answer, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = answer.value()["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|error| error["field"] == field),
        "no error names {field}: {:?}",
        answer.value()
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
