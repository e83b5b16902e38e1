//! Helpers shared by the tests: building events, reading checkpoints and rows, catching up.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use event_store::append::NewEvent;
use events::project::{AGGREGATE_TYPE, ProjectEvent};
use projector::EngineError;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use test_support::metadata;
use uuid::Uuid;

/// A project event as the command side would append it, at stream revision `sequence`.
pub fn project_event(id: Uuid, sequence: i64, event: &ProjectEvent) -> NewEvent {
    NewEvent::of(
        AGGREGATE_TYPE,
        &id.to_string(),
        sequence,
        event,
        metadata::json(metadata::ACTOR),
    )
    .expect("project events serialize")
}

/// Any domain event as the command side would append it, at stream revision `sequence`.
pub fn domain_event<E: cqrs_es::DomainEvent>(
    aggregate_type: &str,
    id: &str,
    sequence: i64,
    event: &E,
) -> NewEvent {
    NewEvent::of(
        aggregate_type,
        id,
        sequence,
        event,
        metadata::json(metadata::ACTOR),
    )
    .expect("events serialize")
}

/// Catches `projection` up until nothing committed is held back (bounded); returns how many
/// events it applied.
pub async fn settle_projection(pool: &PgPool, projection: &dyn projector::Projection) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut applied = 0;
    loop {
        let round = projector::catch_up(pool, projection, 100).await.unwrap();
        applied += round.applied;
        if !round.held_back {
            return applied;
        }
        assert!(Instant::now() < deadline, "events stayed held back for 15s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A checkpoint's position and how many events it counts.
pub async fn checkpoint_position(pool: &PgPool, name: &str) -> (i64, i64) {
    sqlx::query_as("SELECT position, events_applied FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub fn created(name: &str) -> ProjectEvent {
    ProjectEvent::ProjectCreated {
        name: name.to_owned(),
        description: String::new(),
        owner_id: None,
        created_by: "tester".to_owned(),
    }
}

pub fn renamed(name: &str) -> ProjectEvent {
    ProjectEvent::ProjectUpdated {
        name: Some(name.to_owned()),
        description: None,
    }
}

/// The `projects` checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    pub tx_id: i64,
    pub position: i64,
    pub events_applied: i64,
    pub state: String,
    pub last_error: Option<String>,
}

pub async fn checkpoint(pool: &PgPool) -> Checkpoint {
    sqlx::query_as(
        "SELECT tx_id, position, events_applied, state, last_error \
           FROM projection_checkpoints WHERE name = $1",
    )
    .bind(ProjectsProjection::NAME)
    .fetch_one(pool)
    .await
    .expect("the checkpoint row exists")
}

/// A `projects` row, every column.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

/// Deletes the projects model and every checkpoint row: what rebuilding in place starts with.
pub async fn wipe_projects_model(pool: &PgPool) {
    for statement in ["DELETE FROM projects", "DELETE FROM projection_checkpoints"] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .expect("the projects model can be wiped");
    }
}

pub async fn project_rows(pool: &PgPool) -> Vec<ProjectRow> {
    sqlx::query_as("SELECT * FROM projects ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("projects are readable")
}

pub async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("events are countable")
}

/// Catches the projects projection up until no committed event is left, waiting (bounded)
/// while transactions elsewhere in the cluster hold the commit-safe horizon back.
pub async fn settle(pool: &PgPool, batch_size: i64) -> u64 {
    try_settle(pool, batch_size)
        .await
        .expect("catch-up succeeds")
}

/// [`settle`], returning the engine's error instead of panicking on it.
pub async fn try_settle(pool: &PgPool, batch_size: i64) -> Result<u64, EngineError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut applied = 0;
    loop {
        let round = projector::catch_up(pool, &ProjectsProjection, batch_size).await?;
        applied += round.applied;
        if !round.held_back {
            return Ok(applied);
        }
        assert!(
            Instant::now() < deadline,
            "committed events stayed held back for 15s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A seeded linear congruential generator: reproducible "randomness" without a dependency.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        // Knuth's MMIX constants; the high bits are the well-mixed ones.
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }
}
