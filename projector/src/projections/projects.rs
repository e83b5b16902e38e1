//! The `projects` read model: one row per project with its current name, description, owner,
//! archived flag, timestamps and the stream revision it reflects (for ETags).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent as _;
use events::RecordedEvent;
use events::project::{self, ProjectEvent};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError};

/// Projects `Project` streams into the `projects` table.
///
/// Exactly-once comes from the engine's checkpoint; the `version < $v` guards additionally make
/// a replayed event a no-op, since they cost nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjectsProjection;

impl ProjectsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = "projects";
}

#[async_trait]
impl Projection for ProjectsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[project::AGGREGATE_TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["projects"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if project::current_version(&event.event_type) != Some(event.event_version.as_str()) {
            // The log upcasts every version it knows to the current one (events::upcast);
            // guessing at any other schema would corrupt the model.
            return Err(ProjectionError::poison(format!(
                "unsupported event version {:?} of {}",
                event.event_version, event.event_type
            )));
        }
        let decoded: ProjectEvent = serde_json::from_value(event.payload.clone())
            .map_err(|error| ProjectionError::poison(format!("undecodable payload: {error}")))?;
        if decoded.event_type() != event.event_type {
            return Err(ProjectionError::poison(format!(
                "event type {:?} does not match its payload {:?}",
                event.event_type,
                decoded.event_type()
            )));
        }
        let id = Uuid::parse_str(&event.aggregate_id).map_err(|error| {
            ProjectionError::poison(format!(
                "aggregate id {:?} is not a uuid: {error}",
                event.aggregate_id
            ))
        })?;
        let at = event.recorded_at;
        let version = event.version;

        match decoded {
            ProjectEvent::ProjectCreated {
                name,
                description,
                owner_id,
                ..
            } => {
                // A create is revision 1 of its stream; a conflict can only be a replay.
                sqlx::query(
                    "INSERT INTO projects \
                         (id, name, description, owner_id, archived, created_at, updated_at, \
                          version) \
                     VALUES ($1, $2, $3, $4, false, $5, $5, $6) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(name)
                .bind(description)
                .bind(owner_id)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            ProjectEvent::ProjectUpdated { name, description } => {
                let updated = sqlx::query(
                    "UPDATE projects \
                        SET name = COALESCE($2, name), \
                            description = COALESCE($3, description), \
                            updated_at = $4, version = $5 \
                      WHERE id = $1 AND version < $5",
                )
                .bind(id)
                .bind(name)
                .bind(description)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                ensure_applied(tx, id, version, updated.rows_affected()).await
            }
            ProjectEvent::ProjectArchived {} => set_archived(tx, id, true, at, version).await,
            ProjectEvent::ProjectRestored {} => set_archived(tx, id, false, at, version).await,
        }
    }
}

async fn set_archived(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    archived: bool,
    at: DateTime<Utc>,
    version: i64,
) -> Result<(), ProjectionError> {
    let updated = sqlx::query(
        "UPDATE projects SET archived = $2, updated_at = $3, version = $4 \
          WHERE id = $1 AND version < $4",
    )
    .bind(id)
    .bind(archived)
    .bind(at)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    ensure_applied(tx, id, version, updated.rows_affected()).await
}

/// An update that touched no row is fine when the row already reflects this revision (a
/// replay); when the project has no row at all, its stream contradicts the model, which must
/// stop the projection rather than be skipped.
async fn ensure_applied(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    version: i64,
    rows_affected: u64,
) -> Result<(), ProjectionError> {
    if rows_affected > 0 {
        return Ok(());
    }
    let current: Option<i64> = sqlx::query_scalar("SELECT version FROM projects WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    match current {
        Some(_) => Ok(()),
        None => Err(ProjectionError::poison(format!(
            "project {id} has no row to apply revision {version} to"
        ))),
    }
}
