//! The `projects` read model: one row per project with its current name, description, owner,
//! archived flag, timestamps and the stream revision it reflects (for ETags).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events::RecordedEvent;
use events::project::{self, ProjectEvent};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{RowPerStream, decode, uuid_id};
use crate::engine::{Projection, ProjectionError};

const ROWS: RowPerStream = RowPerStream {
    table: "projects",
    noun: "project",
};

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
        // Project event types have versions of their own (ProjectCreated is at 2).
        let decoded: ProjectEvent = decode(event, project::current_version(&event.event_type))?;
        let id = uuid_id(event)?;
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
                ROWS.ensure_applied(tx, id, version, updated.rows_affected())
                    .await
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
    ROWS.ensure_applied(tx, id, version, updated.rows_affected())
        .await
}
