//! Building the app, sending requests, and writing read-model rows, checkpoints and events the
//! way the projector and the command side would.

use std::time::Duration;

use axum::Router;
use chrono::{DateTime, TimeZone as _, Utc};
use event_store::append::NewEvent;
use event_store::wake::CheckpointMoved;
use events::LogPosition;
use query_api::{AppState, Settings};
use sqlx::PgPool;
use test_support::Call;
pub use test_support::{Answer, send};
use uuid::Uuid;

/// The app with default settings.
pub async fn app(pool: &PgPool) -> Router {
    app_with(pool, Settings::default()).await
}

/// The app with `settings`.
pub async fn app_with(pool: &PgPool, settings: Settings) -> Router {
    app_and_state(pool, settings).await.0
}

/// The app with `settings`, and its state, to look into.
pub async fn app_and_state(pool: &PgPool, settings: Settings) -> (Router, AppState) {
    let (app, state) = bare_app_and_state(pool, settings).await;
    (test_support::acting_as(app, tester()), state)
}

/// The account every call of [`app`] acts as unless it names another or is anonymous.
pub use test_support::auth::tester;

/// The app on `pool` as a client sees it: each call sends its own token, or none.
pub async fn bare_app(pool: &PgPool) -> Router {
    bare_app_and_state(pool, Settings::default()).await.0
}

/// [`bare_app`] with `settings`, and its state; the test keys when `settings` names none.
pub async fn bare_app_and_state(pool: &PgPool, mut settings: Settings) -> (Router, AppState) {
    if settings.auth.signing_keys_pem.is_empty() {
        settings.auth = test_support::auth::settings();
    }
    let state = query_api::app_state(pool.clone(), settings)
        .await
        .expect("test keys load");
    // The listener reports a gap once its LISTEN is in place; announcements sent before that
    // would be lost, so tests that announce start after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.announced().plain_wakes() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (query_api::router(state.clone()), state)
}

/// Announces `moved` on the checkpoints channel, as the projector does after each batch.
pub async fn announce(pool: &PgPool, moved: &CheckpointMoved) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(event_store::wake::CHECKPOINTS_CHANNEL)
        .bind(moved.to_payload())
        .execute(pool)
        .await
        .expect("announced");
}

/// Settings whose consistency wait is `wait`.
pub fn waiting(wait: Duration) -> Settings {
    Settings {
        consistency_wait: wait,
        ..Settings::default()
    }
}

/// A page answer's item ids.
pub trait ItemIds {
    /// The ids of a page's items, in order.
    fn item_ids(&self) -> Vec<Uuid>;
}

impl ItemIds for Answer {
    fn item_ids(&self) -> Vec<Uuid> {
        self.json()["items"]
            .as_array()
            .expect("items is an array")
            .iter()
            .map(|item| item["id"].as_str().expect("id").parse().expect("uuid"))
            .collect()
    }
}

/// `GET uri` with `headers`.
pub async fn get_with(router: &Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut call = Call::get(uri);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    call.send(router).await
}

/// `GET uri`.
pub async fn get(router: &Router, uri: &str) -> Answer {
    get_with(router, uri, &[]).await
}

/// A `projects` row to insert.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub owner_id: Option<Uuid>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A fixed instant plus `minutes`, so orderings are known.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("valid time")
        + chrono::Duration::minutes(minutes)
}

/// An active, ownerless project named `name`, created and updated at `at(0)`, version 1.
pub fn project(name: &str) -> ProjectRow {
    ProjectRow {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        description: String::new(),
        owner_id: None,
        archived: false,
        created_at: at(0),
        updated_at: at(0),
        version: 1,
    }
}

/// Inserts `row` into `projects` on `executor`.
pub async fn insert_project<'e>(executor: impl sqlx::PgExecutor<'e>, row: &ProjectRow) {
    sqlx::query(
        "INSERT INTO projects (id, name, description, owner_id, archived, created_at, \
                               updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(row.owner_id)
    .bind(row.archived)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.version)
    .execute(executor)
    .await
    .expect("project inserted");
}

/// Waits (at most 10 s) until `state` has applied an announcement of `projection` at or past
/// `at`; panics otherwise.
pub async fn until_announced(state: &AppState, projection: &str, at: LogPosition) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state
        .announced()
        .seen(projection)
        .is_none_or(|seen| seen.position < at)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "announcement of {projection} at {at:?} not received"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sets projection `name`'s checkpoint to `position` on `executor`, as the projector does.
pub async fn set_checkpoint<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    name: &str,
    position: LogPosition,
) {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, tx_id, position, events_applied, updated_at) \
         VALUES ($1, $2, $3, 1, now()) \
         ON CONFLICT (name) DO UPDATE \
            SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, \
                events_applied = projection_checkpoints.events_applied + 1, \
                updated_at = now()",
    )
    .bind(name)
    .bind(position.tx_id)
    .bind(position.position)
    .execute(executor)
    .await
    .expect("checkpoint written");
}

/// Announces checkpoint moves, as the projector does after each batch.
pub async fn notify_checkpoint(pool: &PgPool, name: &str) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(event_store::wake::CHECKPOINTS_CHANNEL)
        .bind(name)
        .execute(pool)
        .await
        .expect("notified");
}

/// Appends one event to stream (`aggregate_type`, `aggregate_id`) at `sequence`, in its own
/// transaction, and returns its log position.
pub async fn append_event(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> LogPosition {
    // What the event says does not matter to these tests, only where it lands in the log.
    let event = events::project::ProjectEvent::ProjectArchived {};
    append_project_event(pool, aggregate_type, aggregate_id, sequence, &event).await
}

/// Appends `event` to stream (`aggregate_type`, `aggregate_id`) at `sequence`, in its own
/// transaction, and returns its log position.
pub async fn append_project_event(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event: &events::project::ProjectEvent,
) -> LogPosition {
    let event = NewEvent::of(
        aggregate_type,
        aggregate_id,
        sequence,
        event,
        serde_json::json!({"actor": "test"}),
    )
    .expect("event serializes");
    event_store::append::append(pool, &[event], None)
        .await
        .expect("appended")
        .last
}
