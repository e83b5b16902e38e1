//! The `projects` read model: one row per project with its current name, description, owner,
//! archived flag, timestamps and the stream revision it reflects (for ETags).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events::RecordedEvent;
use events::project::{self, ProjectEvent};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::decode::{RowPerStream, decode, uuid_id};
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

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
    pub const NAME: &'static str = catalogue::PROJECTS.name;
}

#[async_trait]
impl Projection for ProjectsProjection {
    fn model(&self) -> ReadModel {
        catalogue::PROJECTS
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

    /// Two statements per batch, whatever its size: the projects it creates, inserted in
    /// their final state, and the changes to the others, folded per project. Exact for the
    /// exactly-once delivery the engine guarantees; a replay makes the update fail, and the
    /// engine then applies event by event with the per-event guards.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let folded = fold(batch)?;
        let (created, existing): (Vec<&Folded>, Vec<&Folded>) =
            folded.iter().partition(|row| row.created.is_some());
        insert_created(tx, &created).await?;
        update_existing(tx, &existing).await
    }
}

/// What a batch does to one project, folded in log order.
struct Folded {
    id: Uuid,
    /// Set when the batch creates the project: its owner and creation time.
    created: Option<(Option<Uuid>, DateTime<Utc>)>,
    name: Option<String>,
    description: Option<String>,
    archived: Option<bool>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// Folds `batch` per project, in order of first appearance; decoding as [`Projection::apply`]
/// does, so an event it would refuse fails the fold too.
fn fold(batch: &[RecordedEvent]) -> Result<Vec<Folded>, ProjectionError> {
    let mut folded: Vec<Folded> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for event in batch {
        let decoded: ProjectEvent = decode(event, project::current_version(&event.event_type))?;
        let id = uuid_id(event)?;
        let slot = *index.entry(id).or_insert_with(|| {
            folded.push(Folded {
                id,
                created: None,
                name: None,
                description: None,
                archived: None,
                updated_at: event.recorded_at,
                version: event.version,
            });
            folded.len() - 1
        });
        let row = &mut folded[slot];
        row.updated_at = event.recorded_at;
        row.version = event.version;
        match decoded {
            ProjectEvent::ProjectCreated {
                name,
                description,
                owner_id,
                ..
            } => {
                row.created = Some((owner_id, event.recorded_at));
                row.name = Some(name);
                row.description = Some(description);
                row.archived = Some(false);
            }
            ProjectEvent::ProjectUpdated { name, description } => {
                row.name = name.or(row.name.take());
                row.description = description.or(row.description.take());
            }
            ProjectEvent::ProjectArchived {} => row.archived = Some(true),
            ProjectEvent::ProjectRestored {} => row.archived = Some(false),
        }
    }
    Ok(folded)
}

/// Inserts the projects a batch created, in their state at the end of the batch.
async fn insert_created(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&Folded],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|row| row.name.as_deref().unwrap_or_default())
        .collect();
    let descriptions: Vec<&str> = rows
        .iter()
        .map(|row| row.description.as_deref().unwrap_or_default())
        .collect();
    let owners: Vec<Option<Uuid>> = rows
        .iter()
        .map(|row| row.created.and_then(|c| c.0))
        .collect();
    let archived: Vec<bool> = rows
        .iter()
        .map(|row| row.archived.unwrap_or(false))
        .collect();
    let created_at: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|row| row.created.map_or(row.updated_at, |c| c.1))
        .collect();
    let updated_at: Vec<DateTime<Utc>> = rows.iter().map(|row| row.updated_at).collect();
    let versions: Vec<i64> = rows.iter().map(|row| row.version).collect();
    // A conflict can only be a replay: then the guarded update does what the per-event
    // updates would have done.
    sqlx::query(
        "INSERT INTO projects \
             (id, name, description, owner_id, archived, created_at, updated_at, version) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bool[], \
                              $6::timestamptz[], $7::timestamptz[], $8::bigint[]) \
         ON CONFLICT (id) DO UPDATE \
            SET name = EXCLUDED.name, description = EXCLUDED.description, \
                archived = EXCLUDED.archived, updated_at = EXCLUDED.updated_at, \
                version = EXCLUDED.version \
          WHERE projects.version < EXCLUDED.version",
    )
    .bind(ids)
    .bind(names)
    .bind(descriptions)
    .bind(owners)
    .bind(archived)
    .bind(created_at)
    .bind(updated_at)
    .bind(versions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the batch's changes to projects created before it; fails when one has no row, or
/// already reflects a later revision (a replay), so that the engine re-applies event by event.
async fn update_existing(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&Folded],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let names: Vec<Option<&str>> = rows.iter().map(|row| row.name.as_deref()).collect();
    let descriptions: Vec<Option<&str>> =
        rows.iter().map(|row| row.description.as_deref()).collect();
    let archived: Vec<Option<bool>> = rows.iter().map(|row| row.archived).collect();
    let updated_at: Vec<DateTime<Utc>> = rows.iter().map(|row| row.updated_at).collect();
    let versions: Vec<i64> = rows.iter().map(|row| row.version).collect();
    let updated = sqlx::query(
        "UPDATE projects AS p \
            SET name = COALESCE(u.name, p.name), \
                description = COALESCE(u.description, p.description), \
                archived = COALESCE(u.archived, p.archived), \
                updated_at = u.updated_at, version = u.version \
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[], \
                       $6::bigint[]) AS u(id, name, description, archived, updated_at, version) \
          WHERE p.id = u.id AND p.version < u.version",
    )
    .bind(ids)
    .bind(names)
    .bind(descriptions)
    .bind(archived)
    .bind(updated_at)
    .bind(versions)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == rows.len() as u64 {
        Ok(())
    } else {
        Err(ProjectionError::poison(
            "a project in the batch has no row, or is ahead of it",
        ))
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
